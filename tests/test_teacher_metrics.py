"""The metrics of a rationale set live in its cache entry: computed once, reused, checked, and never touching the
run's random state."""

from __future__ import annotations

import builtins
import errno
import json
import os
from pathlib import Path

import pytest
import torch

import scd.io
import scd.evaluation.teacher_metrics as teacher_metrics
import scd.teacher.stage as stage
from scd.evaluation.teacher_metrics import TEACHER_METRICS_VERSION, RationaleSetMetrics
from scd.models import CACHED_TRAINING_THREADS, load_tokenizer
from scd.task import build_task
from scd.teacher.stage import run_teacher_stage
from scd.teacher.store import TEACHER_METRICS_FILE, is_complete
from tests.conftest import validated


@pytest.fixture
def smoke(make_config):
    cfg, components = validated(make_config("stages=[teacher]"))
    task = build_task(cfg, components.decoding)
    return cfg, task, task.splits()


def test_a_complete_entry_without_metrics_gets_them_on_reuse(smoke, tmp_path, monkeypatch):
    cfg, task, splits = smoke
    run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "a")  # no measure: as if killed before its metrics were written
    (store,) = (tmp_path / "cache" / "rationales").iterdir()
    assert is_complete(store) and not (store / TEACHER_METRICS_FILE).exists()
    loads = []
    load_teacher_model = stage.load_teacher_model
    monkeypatch.setattr(stage, "load_teacher_model", lambda *args: loads.append(1) or load_teacher_model(*args))
    measure = RationaleSetMetrics(cfg, task, task.shared_tokenizer())
    rng = torch.get_rng_state()
    published = run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "b", measure)
    assert torch.equal(torch.get_rng_state(), rng)  # the judge trained on its own random state
    assert len(loads) == 1  # for fluency only: the rationales were reused
    metrics = json.loads((published / TEACHER_METRICS_FILE).read_text())
    (judge_file,) = store.glob("judge-*.json")
    judged = json.loads(judge_file.read_text())
    assert metrics == {**json.loads((store / TEACHER_METRICS_FILE).read_text())["metrics"], **judged["metrics"]}
    assert set(metrics) == {"teacher/fluency", "teacher/new_info", "teacher/vacuity", "teacher/supports_answer"}
    # Measured again (another run of the sweep): the same values, with no teacher and no judge.
    monkeypatch.setattr(RationaleSetMetrics, "with_judge", lambda *args: pytest.fail("the judge was trained again"))
    assert run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "c", measure) and len(loads) == 1
    assert json.loads((tmp_path / "c" / "rationales" / TEACHER_METRICS_FILE).read_text()) == metrics


def test_metrics_measured_by_an_earlier_version_are_measured_again(smoke, tmp_path, monkeypatch):
    """A metric added after a rationale set was cached reaches it: the entry records the versions that measured it,
    and one measured by others (or by none, as before versions) is measured again; the same versions are reused."""
    cfg, task, splits = smoke
    measure = RationaleSetMetrics(cfg, task, task.shared_tokenizer())
    run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "a", measure)
    (store,) = (tmp_path / "cache" / "rationales").iterdir()
    entry = json.loads((store / TEACHER_METRICS_FILE).read_text())
    assert entry["version"] == {"scd": TEACHER_METRICS_VERSION, "DatasetTask": 0}
    loads = []
    load_teacher_model = stage.load_teacher_model
    monkeypatch.setattr(stage, "load_teacher_model", lambda *args: loads.append(1) or load_teacher_model(*args))
    older = {"version": {"scd": TEACHER_METRICS_VERSION - 1, "DatasetTask": 0},
             "metrics": {k: v for k, v in entry["metrics"].items() if k != "teacher/vacuity"}}  # fmt: skip
    # An earlier version; the flat file written before versions; a damaged file.
    for earlier in (json.dumps(older), json.dumps(older["metrics"]), '{"version": {"scd"'):
        (store / TEACHER_METRICS_FILE).write_text(earlier)
        published = run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / f"b{len(loads)}", measure)
        assert json.loads((store / TEACHER_METRICS_FILE).read_text()) == entry
        assert "teacher/vacuity" in json.loads((published / TEACHER_METRICS_FILE).read_text())
    assert len(loads) == 3
    run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "c", measure)
    assert len(loads) == 3  # the same versions: reused, no teacher loaded
    # A task that raises its own version gets its entries measured again too.
    monkeypatch.setattr(type(task), "teacher_metrics_version", 1)
    run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "d", RationaleSetMetrics(cfg, task, task.shared_tokenizer()))
    assert len(loads) == 4
    assert json.loads((store / TEACHER_METRICS_FILE).read_text())["version"]["DatasetTask"] == 1


def test_a_judge_stored_for_another_config_is_refused(smoke, tmp_path):
    cfg, task, splits = smoke
    measure = RationaleSetMetrics(cfg, task, task.shared_tokenizer())
    run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "a", measure)
    (judge_file,) = (tmp_path / "cache" / "rationales").glob("*/judge-*.json")
    judged = json.loads(judge_file.read_text())
    judged["config"]["simulator"]["max_steps"] += 1
    judge_file.write_text(json.dumps(judged))
    with pytest.raises(ValueError, match=rf"{judge_file}: written for another judge config"):
        run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "b", measure)


def test_a_read_only_cache_gives_the_metrics_it_lacks_without_storing_them(smoke, tmp_path, monkeypatch):
    cfg, task, splits = smoke
    run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "a")  # a complete entry without metrics
    cache = (tmp_path / "cache").resolve()
    (store,) = (cache / "rationales").iterdir()
    files = sorted(path.name for path in store.iterdir())

    def read_only_open(file, mode="r", *args, **kwargs):
        if Path(file).resolve().is_relative_to(cache) and any(flag in mode for flag in "wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(scd.io, "open", read_only_open, raising=False)
    measure = RationaleSetMetrics(cfg, task, task.shared_tokenizer())
    published = run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "b", measure)
    assert sorted(path.name for path in store.iterdir()) == files
    metrics = json.loads((published / TEACHER_METRICS_FILE).read_text())
    assert set(metrics) == {"teacher/fluency", "teacher/new_info", "teacher/vacuity", "teacher/supports_answer"}


def test_a_judge_is_keyed_by_its_tokenizers_vocabulary_and_trains_on_fixed_threads(smoke, tmp_path, monkeypatch):
    """A cache copied elsewhere keeps its judges (the key once held the tokenizer's path); another vocabulary is
    another judge; the judge trains on CACHED_TRAINING_THREADS whatever the run's threads."""
    cfg, task, splits = smoke
    tokenizer = load_tokenizer("byt5")
    for name in ("a", "b"):
        tokenizer.save_pretrained(tmp_path / name)
    tokenizer.add_tokens(["[extra]"])
    tokenizer.save_pretrained(tmp_path / "c")
    key_a, key_b, key_c = (RationaleSetMetrics(cfg, task, str(tmp_path / name)).judge_config for name in "abc")
    assert key_a == key_b != key_c
    seen = []
    monkeypatch.setattr(teacher_metrics, "fit_simulator", lambda *args: seen.append(torch.get_num_threads()) or 1 / 0)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(ZeroDivisionError):
            RationaleSetMetrics(cfg, task, None).with_judge(_a_stored_rationale_set(cfg, task, splits, tmp_path))
        assert seen == [CACHED_TRAINING_THREADS] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def _a_stored_rationale_set(cfg, task, splits, tmp_path: Path) -> Path:
    run_teacher_stage(cfg, task.decoding, task, splits, tmp_path / "run")
    (store,) = (tmp_path / "cache" / "rationales").iterdir()
    return store
