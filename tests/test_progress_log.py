"""A run says what it is doing: a start line per stage, and where output is not a terminal, plain progress lines at a
steady rate (every 30 s or every tenth of the steps) instead of bars; Lightning's per-Trainer device report and tips,
the model summary and transformers' weight bars are off."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from pytorch_lightning.callbacks import ModelSummary

import scd.progress as progress_module
import scd.student.stage as student_stage
from scd.progress import StepProgressBar, StepProgressLog
from tests.conftest import ROOT, validated


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def logged_steps(total: int, seconds_per_step: float, caplog) -> list[str]:
    """The lines a fit of ``total`` steps at ``seconds_per_step`` logs, train/loss 0.42 throughout."""
    clock = FakeClock()
    progress = StepProgressLog("student", clock=clock)
    trainer = SimpleNamespace(global_step=0, estimated_stepping_batches=total, num_training_batches=7,
                              strategy=SimpleNamespace(root_device="cpu"), progress_bar_metrics={"train/loss": 0.42})
    with caplog.at_level(logging.INFO, logger="scd.progress"):
        progress.on_train_start(trainer, None)
        for step in range(1, total + 1):
            clock.now += seconds_per_step
            trainer.global_step = step
            progress.on_train_batch_end(trainer, None, None, None, step - 1)
    return [record.getMessage() for record in caplog.records]


def test_a_fast_loop_logs_every_tenth(caplog):
    lines = logged_steps(100, 1.0, caplog)
    assert lines[0] == "student: training 100 steps (7 batches per epoch) on cpu"
    assert [line.split(",")[0] for line in lines[1:]] == [f"student: step {k}/100 ({k}%)" for k in range(10, 101, 10)]
    assert lines[3] == "student: step 30/100 (30%), train/loss 0.42, 30 s elapsed, ~70 s left"
    assert lines[-1] == "student: step 100/100 (100%), train/loss 0.42, 100 s elapsed"


def test_a_slow_loop_logs_every_30_seconds(caplog):
    lines = logged_steps(1000, 10.0, caplog)[1:]
    steps = [int(line.split()[2].split("/")[0]) for line in lines]
    assert steps[:4] == [3, 6, 9, 12]  # 30 s apart
    assert max(b - a for a, b in zip(steps, steps[1:])) == 3 and set(range(100, 1001, 100)) <= set(steps)
    assert lines[0] == "student: step 3/1000 (0%), train/loss 0.42, 30 s elapsed, ~2.8 h left"


@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.parametrize("enable_progress_bar", [True, False])
def test_the_student_gets_a_bar_on_a_terminal_only(terminal, enable_progress_bar, make_config, monkeypatch,
                                                   tmp_path):  # fmt: skip
    monkeypatch.setattr(student_stage, "output_is_terminal", lambda: terminal)
    cfg, components = validated(make_config(f"trainer.enable_progress_bar={enable_progress_bar}"))
    trainer = student_stage.student_trainer(cfg, components.training, tmp_path, False)
    bar = terminal and enable_progress_bar
    assert any(isinstance(c, StepProgressBar) for c in trainer.callbacks) == bar
    (log,) = [c for c in trainer.callbacks if isinstance(c, StepProgressLog)]
    assert log.periodic == (not bar)  # with trainer.enable_progress_bar=false the plain lines still appear


@pytest.mark.parametrize("terminal, bar_allowed", [(True, True), (True, False), (False, True)])
def test_every_loop_gets_a_named_bar_on_a_terminal_else_lines(terminal, bar_allowed, monkeypatch):
    monkeypatch.setattr(progress_module, "output_is_terminal", lambda: terminal)
    progress, enable_progress_bar = progress_module.progress_callbacks("simulator", bar_allowed)
    bar = terminal and bar_allowed
    assert enable_progress_bar == bar
    assert [type(c) for c in progress] == ([StepProgressBar, StepProgressLog] if bar else [StepProgressLog])
    assert progress[-1].name == "simulator" and progress[-1].periodic == (not bar)
    assert not bar or progress[0].name == "simulator"


@pytest.mark.parametrize("override, summary", [((), False), (("trainer.enable_model_summary=true",), True)])
def test_the_model_summary_is_off_unless_asked_for(override, summary, make_config, tmp_path):
    cfg, components = validated(make_config(*override))
    trainer = student_stage.student_trainer(cfg, components.training, tmp_path, False)
    assert any(isinstance(c, ModelSummary) for c in trainer.callbacks) == summary


@pytest.mark.slow
def test_a_run_logged_to_a_file_says_what_it_is_doing(tmp_path):
    """``python run.py > log.txt 2>&1``: a start line per stage, plain progress lines, none of the noise."""
    log_file = tmp_path / "log.txt"
    env = {**os.environ, "WANDB_MODE": "offline", "SCD_CACHE_DIR": str(tmp_path / "cache")}
    with open(log_file, "w") as handle:
        result = subprocess.run([sys.executable, str(ROOT / "run.py"), "experiment=smoke", "threads=1",
                                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env, stdout=handle,
                                stderr=subprocess.STDOUT, timeout=600)  # fmt: skip
    log = log_file.read_text()
    assert result.returncode == 0, log[-3000:]
    for line in ("Teacher: 36 of 36 rationales to generate", "teacher: 5 batches to predict on cpu",
                 "teacher: batch 5/5 (100%)", "Teacher: measuring the rationale set",
                 "simulator: training 5 steps", "simulator: step 5/5 (100%), simulator/train_loss",
                 "student: training 4 steps (2 batches per epoch) on cpu", "student: step 4/4 (100%), train/loss",
                 "evaluate: the student answers 6 test questions"):  # fmt: skip
        assert line in log, line
    for noise in ("GPU available", "TPU available", "Tip:", "Trainable params", "Loading weights",
                  "Writing model shards", "\r"):  # fmt: skip
        assert noise not in log, noise
