"""SHA-256 of what a refactor must leave unchanged, for the run directories given: every ``rationales/*.jsonl``,
``metrics.json`` without its ``time/*`` keys, the student's weights, its predictions, the simulator's answers and the
logged losses (``csv/metrics.csv`` without timing columns). Prints ``<run>\\t<file>\\t<sha256>`` lines.

    python hash_runs.py before/smoke-greedy before/toyworld ...
"""

import hashlib
import json
import sys
from pathlib import Path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


for run_dir in map(Path, sys.argv[1:]):
    for path in sorted((run_dir / "rationales").glob("*.jsonl")):
        print(f"{run_dir.name}\trationales/{path.name}\t{sha(path.read_bytes())}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    kept = {key: value for key, value in metrics.items() if not key.startswith("time/")}
    print(f"{run_dir.name}\tmetrics.json-minus-time\t{sha(json.dumps(kept, sort_keys=True).encode())}")
    for name in ("student/model.safetensors", "predictions/test.jsonl", "predictions/simulator.jsonl"):
        if (run_dir / name).is_file():
            print(f"{run_dir.name}\textra:{name}\t{sha((run_dir / name).read_bytes())}")
    if (run_dir / "csv/metrics.csv").is_file():
        rows = [line.split(",") for line in (run_dir / "csv/metrics.csv").read_text().splitlines()]
        timed = {i for i, name in enumerate(rows[0]) if name.startswith("time/")}
        losses = [[value for i, value in enumerate(row) if i not in timed] for row in rows]
        print(f"{run_dir.name}\textra:csv/metrics.csv\t{sha(repr(losses).encode())}")
