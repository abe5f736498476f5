"""Study tooling: paired seeds pair (each stage seeds its own generators; a resumed student restores its random
state), a killed sweep rerun keeps, resumes and adds jobs, every run records its provenance and a per-item file, and
the simulator follows the run's seed."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import scd.pipeline as pipeline
from scd.config import validate
from scd.evaluation.items import read_items
from scd.pipeline import run
from scd.provenance import COMPARED_FIELDS, differing_fields
from tests.conftest import ROOT, compose_config, validated


def student_bytes(run_dir: Path) -> bytes:
    return (run_dir / "student" / "model.safetensors").read_bytes()


def without_times(run_dir: Path) -> dict:
    return {k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if not k.startswith("time/")}


@pytest.mark.slow
def test_what_the_teacher_stage_draws_does_not_move_the_student(tmp_path, monkeypatch):
    """A teacher stage that generates draws from the global generators; one that reads the cache does not. Either
    way the student must be the same: before, the student's data order followed whatever the teacher had drawn."""
    real_stage = pipeline.run_teacher_stage

    def run_pair(name: str, draws: bool) -> Path:
        def teacher_stage(*args, **kwargs):
            result = real_stage(*args, **kwargs)
            if draws:  # what generation (or a judge trained with the rationale set) does to the global state
                torch.rand(17), np.random.rand(5), random.random()
            return result

        monkeypatch.setattr(pipeline, "run_teacher_stage", teacher_stage)
        raw = compose_config(["experiment=smoke", "trainer.max_steps=12", "threads=1"], tmp_path / name,
                             tmp_path / f"cache-{name}")  # fmt: skip
        (tmp_path / name).mkdir()
        run(*validated(raw), raw, tmp_path / name)
        return tmp_path / name

    quiet, noisy = run_pair("quiet", draws=False), run_pair("noisy", draws=True)
    assert student_bytes(quiet) == student_bytes(noisy)
    assert without_times(quiet) == without_times(noisy)


@pytest.mark.slow
def test_a_cold_and_a_warm_rationale_cache_give_the_same_student(tmp_path):
    def cli(run_dir: Path) -> None:
        subprocess.run([sys.executable, str(ROOT / "run.py"), "experiment=smoke", "threads=1", "trainer.max_steps=12",
                        f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}"], check=True,
                       capture_output=True, cwd=tmp_path)  # fmt: skip

    cli(tmp_path / "cold")
    cli(tmp_path / "warm")
    assert student_bytes(tmp_path / "cold") == student_bytes(tmp_path / "warm")
    assert without_times(tmp_path / "cold") == without_times(tmp_path / "warm")


SWEEP = ["experiment=smoke", "threads=1", "trainer.max_steps=160", "trainer.val_check_interval=40",
         "trainer.check_val_every_n_epoch=null", "decoding=greedy,contrast_empty,contrast_wrong"]


def sweep_command(sweep_dir: Path, cache: Path) -> list[str]:
    return [sys.executable, str(ROOT / "run.py"), "-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}",
            f"paths.cache_dir={cache}"]


def file_hashes(directory: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name not in skip}


@pytest.mark.slow
def test_a_sweep_killed_in_job_1_and_rerun_keeps_job_0_and_ends_as_an_uninterrupted_sweep(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    process = subprocess.Popen(sweep_command(killed, tmp_path / "cache-k"), cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    log = killed / "1" / "run.log"
    deadline = time.time() + 300
    # Kill job 1 in its student, after its step-80 checkpoint.
    while time.time() < deadline and not (log.exists() and "student: step 9" in log.read_text()):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    first, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, first
    assert json.loads((killed / "1" / "status.json").read_text())["status"] == "interrupted"
    assert not (killed / "2").exists()
    job0 = file_hashes(killed / "0")

    rerun = subprocess.run(sweep_command(killed, tmp_path / "cache-k"), cwd=tmp_path, env=env, capture_output=True,
                           text=True)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert f"scd: sweep {killed}: all 3 jobs completed (1 kept, 1 resumed, 1 new)" in rerun.stdout
    assert "job 0 (decoding=greedy" in rerun.stderr + rerun.stdout and "kept, completed" in rerun.stderr + rerun.stdout
    assert "resuming from" in (killed / "1" / "run.log").read_text()
    # Job 0 was not recomputed: every file is as it was, but for the line its log gained.
    assert file_hashes(killed / "0", skip=("run.log",)) == {k: v for k, v in job0.items() if k != "run.log"}
    assert json.loads((killed / "1" / "status.json").read_text())["start"] == "resumed"

    subprocess.run(sweep_command(whole, tmp_path / "cache-w"), cwd=tmp_path, env=env, capture_output=True, check=True)
    for job in ("0", "1", "2"):
        assert student_bytes(killed / job) == student_bytes(whole / job), job
        assert without_times(killed / job) == without_times(whole / job), job
        assert read_items(killed / job / "predictions" / "items.jsonl.gz") == \
            read_items(whole / job / "predictions" / "items.jsonl.gz")


@pytest.mark.slow
def test_a_run_records_provenance_and_a_compact_per_item_file(make_config, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "run.py"), "experiment=smoke", "threads=1",
                             f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"],
                            capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "completed" and status["start"] == "new"
    assert status["started"] <= status["ended"] and status["ended"].endswith("+00:00")
    provenance = status["provenance"]
    assert set(COMPARED_FIELDS) <= set(provenance)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert provenance["git_commit"] == (head or "not a git checkout")
    assert provenance["threads"] == 1 and provenance["torch"] == torch.__version__
    items = read_items(tmp_path / "run" / "predictions" / "items.jsonl.gz")
    predictions = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "test.jsonl").read_text().splitlines()]
    assert [row["id"] for row in items] == [p["id"] for p in predictions]
    for row, p in zip(items, predictions):
        assert row["correct"] == int(p["predicted"] == p["answer"]) and row["gold"] == p["answer"]
        assert row["perturbed"] == p["perturbed_answer"] and row["cluster"] == row["id"]
        assert {"sim_xe", "sim_x", "sim_e", "counterfactual_followed", "perturbed_kept"} <= set(row)
    # The teacher's per-item file: a row per test rationale, for a teacher study (scd.compare, items: rationales).
    teacher_items = read_items(tmp_path / "run" / "rationales" / "items.jsonl.gz")
    assert [(row["id"], row["cluster"], row["gold"]) for row in teacher_items] == [
        (p["id"], p["id"], p["answer"]) for p in predictions]
    # Gzipped with a fixed header time: equal rows give equal bytes.
    data = (tmp_path / "run" / "predictions" / "items.jsonl.gz").read_bytes()
    assert gzip.decompress(data) and data[4:8] == b"\0\0\0\0"


def test_differing_provenance_names_the_cells():
    base = {field: "x" for field in COMPARED_FIELDS}
    assert differing_fields({"a": base, "b": dict(base)}) == []
    lines = differing_fields({"a": base, "b": {**base, "threads": 2, "cpu": "y"}, "c": None})
    assert lines == ["no provenance recorded for c", "cells ran with different threads ('x': a; 2: b)",
                     "cells ran with different cpu ('x': a; 'y': b)"]


def test_the_simulator_follows_the_run_seed(tmp_path):
    seeds = {s: validate(compose_config([f"seed={s}"], tmp_path, tmp_path)).simulator.seed for s in (0, 3)}
    assert seeds == {0: 0, 3: 3}
    pinned = validate(compose_config(["seed=3", "simulator.seed=11"], tmp_path, tmp_path)).simulator.seed
    assert pinned == 11


@pytest.mark.slow
def test_two_seeds_give_two_simulators(tmp_path):
    from scd.evaluation.simulator import SimulatorRow, fit_simulator

    rows = [SimulatorRow(f"question {k} ?", ("yes", "no"), "because", k % 2, str(k)) for k in range(16)]
    weights = []
    for seed in (0, 1):
        cfg = validate(compose_config(["experiment=smoke", f"seed={seed}"], tmp_path / str(seed), tmp_path / "c"))
        teacher_tokenizer = cfg.teacher.tokenizer or cfg.teacher.name_or_path
        simulator, _ = fit_simulator(cfg.simulator, cfg.trainer, rows, teacher_tokenizer)
        weights.append(torch.cat([p.detach().flatten() for p in simulator.parameters()]))
    assert not torch.equal(weights[0], weights[1])


@pytest.mark.slow
def test_the_report_warns_when_the_runs_of_a_sweep_ran_from_different_commits(tmp_path):
    from scd.report.cli import write_report

    sweep = tmp_path / "sweep"
    subprocess.run([sys.executable, str(ROOT / "run.py"), "-m", "experiment=smoke", "threads=1", "seed=0,1",
                    f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}"], check=True,
                   capture_output=True, cwd=tmp_path)  # fmt: skip
    assert "runs of this report" not in write_report(sweep)
    status_path = sweep / "1" / "status.json"
    status = json.loads(status_path.read_text())
    commit = status["provenance"]["git_commit"]
    status["provenance"]["git_commit"] = "0123abc"
    status_path.write_text(json.dumps(status))
    table = write_report(sweep)
    assert f"runs of this report ran with different git_commit ('0123abc': 1; {commit!r}: 0)" in table


@pytest.mark.slow
def test_collected_job_records_copied_into_a_new_sweep_directory_are_kept_by_a_rerun(tmp_path):
    """experiments/toyworld/collect_study.sh copies what a study commits; copied back on a machine without the sweep,
    a rerun keeps those jobs instead of computing them again (how a study continues elsewhere)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "run.py"), "-m", "experiment=smoke", "threads=1", "trainer.max_steps=4",
               "decoding=greedy,contrast_wrong", f"paths.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    subprocess.run([*command, f"hydra.sweep.dir={tmp_path / 'study' / 'main'}"], cwd=tmp_path, env=env,
                   capture_output=True, check=True)  # fmt: skip
    collect = subprocess.run(["bash", str(ROOT / "experiments" / "toyworld" / "collect_study.sh"),
                              str(tmp_path / "study"), str(tmp_path / "records")], capture_output=True, text=True)
    assert collect.returncode == 0 and "2 job records copied" in collect.stdout, collect.stderr
    assert sorted(p.name for p in (tmp_path / "records" / "main" / "0").rglob("*") if p.is_file()) == [
        "config.yaml", "hydra.yaml", "items.jsonl.gz", "items.jsonl.gz", "metrics.json", "overrides.yaml",
        "run_config.json", "status.json"]
    shutil.copytree(tmp_path / "records" / "main", tmp_path / "elsewhere" / "main")
    rerun = subprocess.run([*command, f"hydra.sweep.dir={tmp_path / 'elsewhere' / 'main'}"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert "all 2 jobs completed (2 kept, 0 resumed, 0 new)" in rerun.stdout
    missing = subprocess.run(["bash", str(ROOT / "experiments" / "toyworld" / "collect_study.sh"),
                              str(tmp_path / "no-such-study"), str(tmp_path / "x")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "collect_study.sh: error: usage" in missing.stderr
    assert not (tmp_path / "elsewhere" / "main" / "0" / "student").exists()  # nothing was trained again
