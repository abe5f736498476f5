"""Scale-out: a smoke run with two CPU processes (Lightning DDP over gloo, ``trainer=ddp_cpu``) against one process.

The teacher's jobs are split across the ranks, so the merged rationales must be byte-identical to one process's and
hold each id once. The student trains on both ranks (a global batch twice as large), so its metrics may differ a
little; everything computed from the rationales alone must match exactly. Only rank 0 writes the run's files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scd.data.records import RATIONALE_SPLITS
from scd.pipeline import run
from scd.teacher.store import PROMPT_PREFIX_FILE
from tests.conftest import ROOT, validated


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_match_one(make_config, tmp_path):
    ddp_dir = tmp_path / "ddp"
    env = {**os.environ, "SCD_CACHE_DIR": str(tmp_path / "ddp_cache"), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "experiment=smoke", "trainer=ddp_cpu", "trainer.max_steps=4",
         f"hydra.run.dir={ddp_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    raw = make_config(run="single")
    single_dir = Path(raw.paths.output_dir)
    single_dir.mkdir(parents=True)
    single = run(*validated(raw), raw, single_dir)

    # The teacher: both ranks decoded a share, and the merged files are the one-process files, each id once.
    (store,) = (tmp_path / "ddp_cache" / "rationales").iterdir()
    shares = [{(r["split"], r["id"]) for r in jsonl(store / f"shard-rank{rank}.jsonl")} for rank in (0, 1)]
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert len(shares[0] | shares[1]) == 36
    for split in RATIONALE_SPLITS:
        ids = [record["id"] for record in jsonl(ddp_dir / "rationales" / f"{split}.jsonl")]
        assert len(ids) == len(set(ids)) and {(split, i) for i in ids} <= shares[0] | shares[1]
    for name in [f"{split}.jsonl" for split in RATIONALE_SPLITS] + [PROMPT_PREFIX_FILE]:
        assert (ddp_dir / "rationales" / name).read_bytes() == (single_dir / "rationales" / name).read_bytes(), name

    # The student trained 4 steps on both ranks; rank 0 alone exported it and evaluated.
    assert torch.load(ddp_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    metrics = json.loads((ddp_dir / "metrics.json").read_text())
    assert {k for k in metrics if not k.startswith("time/")} == {k for k in single if not k.startswith("time/")}
    for key, value in metrics.items():
        if key.startswith("teacher/"):
            assert value == pytest.approx(single[key], rel=1e-6), key
        elif key.startswith("student/"):
            # At most one of the 6 test answers may differ.
            assert value == pytest.approx(single[key], abs=0.17, nan_ok=True), key

    # One run directory for both ranks: rank 1 logged into it (Lightning passes hydra.run.dir on) and wrote nothing
    # else; the summary was printed once.
    status = json.loads((ddp_dir / "status.json").read_text())
    assert status["status"] == "completed" and "error" not in status
    assert sorted(path.name for path in ddp_dir.iterdir()) == [
        ".hydra", "checkpoints", "csv", "metrics.json", "predictions", "rationales", "run.log", "run_config.json",
        "status.json", "student", "train_ddp_process_1.log",
    ]
    assert result.stdout.count(f"scd: smoke | decoding=contrast_wrong training=counterfactual -> {ddp_dir}") == 1
