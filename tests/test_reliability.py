"""Reliability: kill -9 and resume (teacher and student), artifacts that are whole or absent, sweep isolation, and no
environment secret in any file a run writes.

The kill tests run the real command line (``python run.py ...``), SIGKILL it at points chosen by a seeded RNG, and
rerun the same config in process.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from scd.data.records import RATIONALE_SPLITS
from scd.io import atomic_write_text, exclusive, publish_directory
from scd.cli import main_task
from scd.report import write_report
from scd.student.train import AtomicCheckpointIO
from scd.teacher.stage import run_teacher_stage
from scd.teacher.store import PROMPT_PREFIX_FILE
from scd.task import build_task
from scd.teacher.store import COMPLETE_MARKER
from tests.conftest import ROOT, compose_config, validated
from tests.helpers import N_RATIONALES, SLOW_TEACHER, cli_env, complete_lines, start

RATIONALE_FILES = [f"{split}.jsonl" for split in RATIONALE_SPLITS] + [PROMPT_PREFIX_FILE]


def kill_when(process: subprocess.Popen, condition: Callable[[], bool], timeout: float = 600) -> None:
    """SIGKILL ``process`` as soon as ``condition()`` holds; fail if it ends on its own first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended (status {process.returncode}) before the kill point"
        assert time.monotonic() < deadline, "kill point not reached in time"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


@pytest.mark.slow
def test_teacher_killed_three_times_gives_the_uninterrupted_files(make_config, tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cli_cache"
    env = cli_env(tmp_path)

    def shard() -> Path:
        found = list((cache / "rationales").glob("*/shard-rank0.jsonl"))
        return found[0] if found else cache / "none"

    kill_points = sorted(random.Random(6).sample(range(2, N_RATIONALES - 2), 3))
    for attempt, lines in enumerate(kill_points):
        process = start([*SLOW_TEACHER, f"hydra.run.dir={run_dir}"], tmp_path, f"killed{attempt}.log", env)
        kill_when(process, lambda: complete_lines(shard()) >= lines)
        # Nothing unfinished may look finished: no completion marker, no rationales in the run directory.
        assert not (shard().parent / COMPLETE_MARKER).exists()
        assert not (run_dir / "rationales").exists()
    # The rerun: the same config, in process (a fourth interpreter start would only add import time).
    assert main_task(compose_config(SLOW_TEACHER, run_dir, cache)) is not None
    # Each rationale was decoded once over the four runs: a resumed run skips what the killed ones wrote.
    assert len(shard().read_text().splitlines()) == N_RATIONALES

    reference = make_config(*SLOW_TEACHER[1:], run="reference")
    cfg, components = validated(reference)
    task = build_task(cfg, components.decoding)
    expected = run_teacher_stage(cfg, components.decoding, task, task.splits(), tmp_path / "reference")
    for name in RATIONALE_FILES:
        assert (run_dir / "rationales" / name).read_bytes() == (expected / name).read_bytes(), name


@pytest.mark.slow
def test_student_killed_after_a_checkpoint_resumes_from_it(tmp_path, caplog):
    run_dir, cache = tmp_path / "run", tmp_path / "cli_cache"
    last = run_dir / "checkpoints" / "last.ckpt"
    # Validation (and with it last.ckpt) every 2 steps; max_steps out of reach, so the kill lands mid-training.
    first = start(["experiment=smoke", "stages=[teacher,student]", "trainer.max_steps=100000",
                   "trainer.val_check_interval=2", f"hydra.run.dir={run_dir}"], tmp_path, "killed.log", cli_env(tmp_path))
    kill_when(first, last.exists)
    # The checkpoint is whole (written beside its name, then renamed) and loads without unpickling code.
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert killed_at >= 2
    assert not (run_dir / "student").exists()

    # The rerun, in process: the same run directory, ckpt_path=last, 3 more steps.
    caplog.set_level(logging.INFO, logger="scd.student.train")
    resumed = compose_config(["experiment=smoke", "stages=[student]", "ckpt_path=last",
                              f"trainer.max_steps={killed_at + 3}"], run_dir, cache)
    assert main_task(resumed) is not None
    assert f"resuming from {last}" in caplog.messages
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == killed_at + 3
    # The resumed run trained 3 steps, from where the killed one stopped; the CSV log holds the killed run's steps
    # before them (it is appended, and written at every logged step).
    with open(run_dir / "csv" / "metrics.csv") as handle:
        header = handle.readline().strip().split(",")
        rows = [dict(zip(header, line.strip().split(","))) for line in handle]
    trained = [int(row["step"]) for row in rows if row.get("train/loss")]
    assert trained[-3:] == [killed_at, killed_at + 1, killed_at + 2]
    assert set(range(killed_at)) <= set(trained[:-3])
    assert (run_dir / "student" / "model.safetensors").exists()


# ---------------------------------------------------------------- artifacts are whole or absent


def test_publish_directory_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "student"

    def write(files: dict[str, str]) -> Callable[[Path], None]:
        def fill(directory: Path) -> None:
            for name, text in files.items():
                if text is None:
                    raise OSError(28, "No space left on device")
                (directory / name).write_text(text)

        return fill

    publish_directory(write({"a": "1", "b": "2"}), target)
    with pytest.raises(OSError, match=f"could not write {target}: No space left on device"):
        publish_directory(write({"a": "new", "b": None}), target)
    # The failed write left the old directory as it was, and no temporary directory behind.
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a": "1", "b": "2"}
    assert [p.name for p in tmp_path.iterdir()] == ["student"]
    publish_directory(write({"c": "3"}), target)
    assert [p.name for p in target.iterdir()] == ["c"]


def test_atomic_writers_leave_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    path.write_text("old")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="could not write .*metrics.json: No space left on device"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_checkpoint_cut_by_a_failure_leaves_the_last_one(tmp_path, monkeypatch):
    last = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 2}, last)
    real_save = torch.save

    def save_half(obj, handle):
        real_save(obj, handle)
        handle.truncate(handle.tell() // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_half)
    with pytest.raises(OSError):
        io.save_checkpoint({"global_step": 4}, last)
    assert torch.load(last, weights_only=True) == {"global_step": 2}
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]


def test_a_second_job_waits_for_the_store_lock(tmp_path):
    # Sweep jobs with one teacher config: the second waits while the first generates, then finds its files.
    order = []

    def second_job() -> None:
        with exclusive(tmp_path):
            order.append("second")

    with exclusive(tmp_path):
        waiting = threading.Thread(target=second_job)
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive()
        order.append("first")
    waiting.join(timeout=10)
    assert order == ["first", "second"]


# ---------------------------------------------------------------- a sweep with a failing job, and secrets


FAKE_SECRETS = {"WANDB_API_KEY": "fakewandbkey0123456789abcdef0123456789abc", "HF_TOKEN": "hf_FakeTokenQwErTy0123456789"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """``decoding.lam=0.5,7`` with W&B (offline): job 0 runs, job 1 is invalid. Fake secrets in the environment."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    sweep_dir, wandb_home = tmp_path / "sweep", tmp_path / "wandb_home"
    env = cli_env(tmp_path, **FAKE_SECRETS, **{f"WANDB_{name}_DIR": str(wandb_home / name.lower())
                                              for name in ("CONFIG", "CACHE", "DATA", "ARTIFACT")})
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", "experiment=smoke", "logger=wandb", "decoding.lam=0.5,7",
         f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    return sweep_dir, wandb_home, result


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep(sweep):
    sweep_dir, _, result = sweep
    status = {job: json.loads((sweep_dir / job / "status.json").read_text()) for job in ("0", "1")}
    assert status["0"]["status"] == "completed" and "error" not in status["0"]
    assert (status["1"]["status"], status["1"]["error"]) == ("failed", "ValueError: decoding.lam must be in [0, 1], got 7.0")
    assert "student/accuracy" in json.loads((sweep_dir / "0" / "metrics.json").read_text())
    # Every job ran; then the sweep exits 1 with one summary line naming the failed job.
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"scd: error: sweep {sweep_dir}: 1 of 2 jobs failed: job 1 (ValueError: decoding.lam must be in [0, 1], "
        f"got 7.0) (0 kept, 0 resumed, 2 new); python -m scd.report {sweep_dir} tabulates them"
    )
    table = write_report(sweep_dir)
    # decoding.lam varies, so each value is its own row: the failed job's row is all failed, the other reports.
    assert "| contrast_wrong | counterfactual | 7 | 0 (+1 failed) | failed |" in table
    assert "| contrast_wrong | counterfactual | 0.5 | 1 | 0.000 |" in table
    assert "- job `1` (contrast_wrong / counterfactual · decoding.lam=7, seed 0): ValueError: decoding.lam must be in [0, 1]" in table


@pytest.mark.slow
def test_no_environment_secret_reaches_any_file(sweep):
    sweep_dir, wandb_home, result = sweep
    files = [path for root in (sweep_dir, wandb_home) for path in root.rglob("*") if path.is_file()]
    # The W&B run (offline) and Hydra's config dumps are among the files searched.
    assert list(sweep_dir.glob("0/wandb/offline-run-*/run-*.wandb"))
    assert (sweep_dir / "0" / ".hydra" / "config.yaml").exists()
    for secret in FAKE_SECRETS.values():
        assert secret not in result.stdout + result.stderr
        leaks = [path for path in files if secret.encode() in path.read_bytes()]
        assert not leaks, f"{secret} found in {leaks}"
