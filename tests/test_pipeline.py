"""The config tree and the pipeline end to end: every option composes, a smoke run writes every artifact, the
six-cell sweep runs (rationales generated once per decoding), bad config fails with one line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import scd.teacher.stage as stage
from scd.cli import main_task
from scd.data.records import RATIONALE_SPLITS
from scd.evaluation.teacher_metrics import RationaleSetMetrics
from scd.pipeline import run
from scd.teacher.store import TEACHER_METRICS_FILE
from tests.conftest import CONF, ROOT, compose_config, validated

GROUPS = ["dataset", "teacher", "decoding", "training", "student", "optimizer", "lr_schedule", "simulator", "trainer",
          "callbacks", "logger", "experiment", "arm"]
# Options that compose only with another choice than the default's (decoding=human has no counterfactual rationales).
NEEDS = {("decoding", "human"): ["training=standard"]}


@pytest.mark.parametrize(
    "group,option",
    [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))],
)
def test_every_group_option_composes_and_validates(group, option, tmp_path):
    cfg = compose_config([f"{group}={option}", *NEEDS.get((group, option), [])], tmp_path / "run", tmp_path / "cache")
    typed, components = validated(cfg)
    if group in ("dataset", "teacher", "student", "simulator"):
        assert getattr(typed, group).name == option
    if group == "decoding":
        assert components.decoding.name == option


def test_decoding_options_build_their_strategy(tmp_path):
    from scd.teacher.strategies import ContrastEmpty, ContrastWrong, Greedy

    built = {}
    for option in ("greedy", "contrast_empty", "contrast_wrong"):
        built[option] = validated(compose_config([f"decoding={option}"], tmp_path, tmp_path))[1].decoding
    assert built == {"greedy": Greedy(name="greedy"), "contrast_empty": ContrastEmpty(lam=0.5, name="contrast_empty"),
                     "contrast_wrong": ContrastWrong(lam=0.5, name="contrast_wrong")}


@pytest.mark.slow
def test_smoke_run_writes_every_artifact(make_config, tmp_path):
    raw = make_config("training=counterfactual", "decoding=contrast_empty")
    run_dir = Path(raw.paths.output_dir)
    run_dir.mkdir(parents=True)
    metrics = run(*validated(raw), raw, run_dir)
    for split in RATIONALE_SPLITS:
        assert (run_dir / "rationales" / f"{split}.jsonl").stat().st_size > 0
    test_ids = [json.loads(line)["id"] for line in (run_dir / "rationales" / "test.jsonl").read_text().splitlines()]
    predictions = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == test_ids
    assert (run_dir / "student" / "config.json").exists()
    # Compared as JSON text: a metric not measured is NaN, which equals nothing, itself included.
    assert json.dumps(json.loads((run_dir / "metrics.json").read_text()), sort_keys=True) == json.dumps(
        metrics, sort_keys=True)
    for key in ("student/accuracy", "student/unparsable", "student/oracle_accuracy", "teacher/new_info",
                "teacher/vacuity", "teacher/supports_answer"):
        assert 0.0 <= metrics[key] <= 1.0, key
    # The random-init student's answers rarely parse: a consistency of none parsed is not measured (NaN).
    for key in ("student/perturbed_consistency", "student/counterfactual_consistency"):
        assert 0.0 <= metrics[key] <= 1.0 or (math.isnan(metrics[key]) and metrics["student/unparsable"] > 0), key
    assert metrics["teacher/fluency"] > 1.0


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "SCD_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_six_cell_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "experiment=smoke", "decoding=greedy,contrast_empty,contrast_wrong",
                     "training=standard,counterfactual", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    cells = set()
    for job in sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()):
        assert json.loads((job / "status.json").read_text())["status"] == "completed"
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        cells.add((cfg.decoding.name, cfg.training.mode))
        assert "student/accuracy" in json.loads((job / "metrics.json").read_text())
    assert len(cells) == 6
    # Training modes share the teacher's rationales, and their metrics: one generation and one judge per decoding.
    stores = list((tmp_path / "cache" / "rationales").iterdir())
    assert len(stores) == 3
    assert [len(list(store.glob("judge-*.json"))) for store in stores] == [1, 1, 1]


@pytest.mark.parametrize("override,message", [("decoding.lamda=0.5", "lamda"), ("decoding=beam", "beam")])
def test_unknown_key_or_option_fails_at_start_with_one_line(tmp_path, override, message):
    result = run_cli("experiment=smoke", override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if message in line], result.stderr[-2000:]


@pytest.mark.parametrize(
    "override,message",
    [
        ("decoding.lam=1.5", "decoding.lam must be in [0, 1], got 1.5"),
        ("training.alpha=2", "training.alpha must be in [0, 1], got 2.0"),
        ("student.perturb_share=-0.1", "student.perturb_share must be in [0, 1], got -0.1"),
        ("student.arch=rnn", "student.arch must be one of ['seq2seq', 'causal'], got 'rnn'"),
        ("teacher.name_or_path=gpt2", "teacher: set exactly one of name_or_path, random_init and trained"),
        ("student.name_or_path=t5-small", "student: set exactly one of name_or_path and random_init"),
        ("simulator.name_or_path=t5-small", "simulator: set exactly one of name_or_path and random_init"),
    ],
)
def test_out_of_range_value_exits_with_one_error_line(make_config, capsys, override, message):
    raw = make_config(override)
    with pytest.raises(SystemExit) as exit_info:
        main_task(raw)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"scd: error: {message}"]
    status = json.loads((Path(raw.paths.output_dir) / "status.json").read_text())
    assert status["status"] == "failed" and message in status["error"]


@pytest.mark.slow
def test_teacher_loaded_and_judge_trained_once_per_rationale_set(make_config, monkeypatch):
    """Two runs sharing a rationale set (training modes): the teacher is loaded once, to generate and to measure;
    the evaluate stage loads none. A third run with another simulator trains its own judge, still without it."""
    loads, judges = [], []
    load_teacher_model = stage.load_teacher_model
    monkeypatch.setattr(stage, "load_teacher_model", lambda *args: loads.append(1) or load_teacher_model(*args))
    with_judge = RationaleSetMetrics.with_judge
    monkeypatch.setattr(RationaleSetMetrics, "with_judge", lambda self, store: judges.append(1) or with_judge(self, store))
    runs = {}
    for name, overrides in [("standard", ["training=standard"]), ("counterfactual", ["training=counterfactual"]),
                            ("other_judge", ["training=standard", "simulator.max_steps=3"])]:
        raw = make_config(*overrides, run=name)
        run_dir = Path(raw.paths.output_dir)
        run_dir.mkdir(parents=True)
        runs[name] = run(*validated(raw), raw, run_dir)
        assert (len(loads), len(judges)) == {"standard": (1, 1), "counterfactual": (1, 1), "other_judge": (1, 2)}[name]
    (store,) = (Path(raw.paths.cache_dir) / "rationales").iterdir()
    stored = json.loads((store / TEACHER_METRICS_FILE).read_text())["metrics"]
    assert {"teacher/fluency", "teacher/new_info", "teacher/vacuity"} <= set(stored)
    assert len(list(store.glob("judge-*.json"))) == 2
    for metrics in runs.values():
        assert {key: metrics[key] for key in stored} == stored
    # Each run reports the score its judge stored: one judge per simulator config (max_steps 3 is other_judge's).
    judges = {}
    for path in store.glob("judge-*.json"):
        judged = json.loads(path.read_text())
        judges[judged["config"]["simulator"]["max_steps"]] = judged["metrics"]["teacher/supports_answer"]
    assert runs["other_judge"]["teacher/supports_answer"] == judges.pop(3)
    (default_judge,) = judges.values()
    assert runs["standard"]["teacher/supports_answer"] == runs["counterfactual"]["teacher/supports_answer"] == default_judge


def test_pipeline_and_evaluation_do_not_name_a_task():
    """Data sets plug in through scd.task: the generic stages never name one."""
    for path in [ROOT / "scd" / "pipeline.py", *(ROOT / "scd" / "evaluation").glob("*.py")]:
        assert "toyworld" not in path.read_text().lower(), path
