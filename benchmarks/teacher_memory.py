"""Peak memory of the teacher stage when one question is long (issue 12, case 10c).

Runs ``run.py experiment=smoke stages=[teacher]`` (the tiny random-init teacher, batches of 8 questions, contrast_wrong)
in a fresh process on the shipped CREAK sample, once as shipped and once with the first test claim replaced by one of
``--chars`` characters, and reports each process's peak resident memory (``ru_maxrss`` from ``wait4``). ``--repo``
runs another checkout's code, so the same measurement compares two versions:

    python benchmarks/teacher_memory.py                                   # this checkout
    python benchmarks/teacher_memory.py --repo /path/to/other/checkout    # another one
    python benchmarks/teacher_memory.py teacher.max_prompt_tokens=null    # extra overrides for both runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "scd" / "data" / "samples" / "creak"


def long_claim(chars: int) -> str:
    words = "The river that runs past the old mill and under the stone bridge is longer than the road beside it"
    text = ""
    while len(text) < chars:
        text += words + ", and "
    return text[:chars].rstrip() + "."


def data_with_long_question(directory: Path, chars: int) -> Path:
    directory.mkdir(parents=True)
    (directory / "train.json").write_text((SAMPLE / "train.json").read_text())
    rows = [json.loads(line) for line in (SAMPLE / "dev.json").read_text().splitlines()]
    rows[0]["sentence"] = long_claim(chars)
    (directory / "dev.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return directory


def peak_rss_mb(repo: Path, work: Path, data: Path, overrides: list[str]) -> tuple[float, int, str]:
    """Peak RSS of one teacher-stage run, its exit status and its last error line."""
    command = [sys.executable, str(repo / "run.py"), "experiment=smoke", "stages=[teacher]", "logger=none",
               "decoding=contrast_wrong", f"dataset.path={data}", f"hydra.run.dir={work / 'run'}", *overrides]
    env = {**os.environ, "PYTHONPATH": str(repo), "SCD_CACHE_DIR": str(work / "cache"), "OMP_NUM_THREADS": "1"}
    with open(work / "log.txt", "w") as log:
        process = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    lines = (work / "log.txt").read_text().splitlines()
    return usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), next(
        (line for line in reversed(lines) if "error" in line.lower()), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--chars", type=int, default=3500)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"shipped questions": SAMPLE,
                 f"one {args.chars}-character question": data_with_long_question(Path(tmp) / "data", args.chars)}
        for name, data in cases.items():
            work = Path(tmp) / name.replace(" ", "_")
            work.mkdir()
            peak, code, error = peak_rss_mb(args.repo.resolve(), work, data, args.overrides)
            print(f"{name}: peak RSS {peak:.0f} MB, exit {code}" + (f" ({error})" if code else ""), flush=True)


if __name__ == "__main__":
    main()
