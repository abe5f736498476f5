"""``benchmarks/gpu_check.py`` where no GPU is: one line and exit 0; the runs it would start are valid configs; its
table reports each check's figures."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scd.config import validate
from tests.conftest import ROOT, compose_config

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    result = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=120)  # fmt: skip
    assert result.returncode == 0
    [line] = result.stdout.splitlines()
    assert line.startswith("gpu_check: no CUDA device here (torch ") and line.endswith("nothing to check")


@pytest.mark.parametrize("name", gpu_check.RUNS)
def test_the_runs_it_starts_are_valid_configs(tmp_path, name):
    cfg = validate(compose_config(gpu_check.RUNS[name], tmp_path, tmp_path))
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.teacher.device_map == ("auto" if name == "smoke_device_map" else None)
    assert cfg.trainer.devices == (2 if name == "smoke_ddp" else 1)


def test_the_summary_has_a_row_of_figures_per_check():
    results = {
        "decoding": {"status": "ok", "seconds": 80.5, "ratios": {"cd_vs_hf_cfg": 3.1, "cd_vs_loop": None}},
        "toyworld": {"status": "ok", "seconds": 900.0, "metrics": {"student/accuracy": 0.8125}},
        "smoke_ddp": {"status": "skipped", "reason": "1 GPU"},
        "lora_step": {"status": "ok", "seconds": 40.0, "size": "t5-3b", "trainable": 23592960,
                      "parameters": 2875191296, "step_s": 0.41, "batch": "8x256", "peak_gpu_mb": 12000},
        "smoke_device_map": {"status": "failed", "seconds": 3.0, "error": "scd: error: boom"},
    }
    assert gpu_check.summary("1 x H100", results).splitlines()[2:] == [
        "| check | status | seconds | figures |",
        "| --- | --- | --- | --- |",
        "| decoding | ok | 80.5 | cd_vs_hf_cfg 3.1 |",
        "| toyworld | ok | 900.0 | student/accuracy 0.812 |",
        "| smoke_ddp | skipped | - | 1 GPU |",
        "| lora_step | ok | 40.0 | t5-3b: 23,592,960 trainable of 2,875,191,296, 0.41 s/step (8x256), peak 12,000 MB |",
        "| smoke_device_map | failed | 3.0 | scd: error: boom |",
    ]


def test_the_lora_step_sizes_run_from_the_largest_down():
    sizes = list(gpu_check.T5_SIZES.values())
    weights = [s["num_layers"] * (s["d_ff"] * s["d_model"] + s["num_heads"] * s["d_kv"] * s["d_model"]) for s in sizes]
    assert weights == sorted(weights, reverse=True)
