"""Reliability, round two (issue 12): caches that notice stale or damaged data, run directories that hold one run,
signals that end a run as interrupted, locks for every shared cache build, and the bad inputs and data formats that
round one missed. Each test names its case; each failed on the code before these changes.

The data is the smoke set (CREAK format, shipped with the package) copied to a temporary directory, so a test can
edit it in place. The signal tests run the real command line and signal it at a point it has reached.
"""

from __future__ import annotations

import builtins
import errno
import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import hydra.core.utils
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import scd.io
import scd.teacher.stage as stage
import scd.teacher.store as store_module
from scd.cli import main_task, one_line
from scd.data.formats import DataFormatError, get_format
from scd.data.sources import load_splits
from scd.task import build_task
from scd.report import collect_runs
from scd.teacher.prompt import pick_demonstrations
from scd.teacher.stage import run_teacher_stage
from scd.teacher.store import COMPLETE_MARKER
from scd.toyworld import teacher as toyworld_teacher
from scd.toyworld.corpus import CorpusConfig
from tests.conftest import CONF, ROOT, TOYWORLD_PROMPT, compose_config, validated
from tests.helpers import N_RATIONALES, SLOW_TEACHER, cli_env, complete_lines, start

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = ROOT / "scd" / "data" / "samples" / "creak"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A copy of the smoke data set (CREAK format) that a test may edit."""
    return Path(shutil.copytree(SAMPLES, tmp_path / "data"))


@pytest.fixture
def config(make_config, data):
    """``config(*overrides, run=...)``: the smoke config on the copied data, teacher stage only unless overridden."""

    def make(*overrides: str, run: str = "run"):
        return make_config(f"dataset.path={data}", "stages=[teacher]", *overrides, run=run)

    return make


@pytest.fixture
def fails(capsys):
    """``fails(raw)``: run main_task, expect exit status 1 and one ``scd: error:`` line; return that line."""

    def run(raw) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main_task(raw)
        assert exit_info.value.code == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("scd: error: "), lines
        return lines[0]

    return run


def teacher_run(raw, run_dir: Path) -> Path:
    cfg, components = validated(raw)
    task = build_task(cfg, components.decoding)
    return run_teacher_stage(cfg, components.decoding, task, task.splits(), run_dir)


def records(directory: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (directory / f"{split}.jsonl").read_text().splitlines()]


def entries(cache: Path) -> list[Path]:
    return sorted(path for path in (cache / "rationales").iterdir() if path.is_dir())


def no_teacher(*args, **kwargs):
    raise AssertionError("the teacher was loaded although its rationales are cached")


# ---------------------------------------------------------------- case 1: the cache is keyed by the data's content


def test_case1_data_edited_in_place_is_regenerated(config, data, tmp_path):
    first = teacher_run(config(), tmp_path / "a")
    test_file = data / "dev.json"  # the official dev file serves as test
    rows = [json.loads(line) for line in test_file.read_text().splitlines()]
    rows[0]["label"] = {"true": "false", "false": "true"}[rows[0]["label"]]
    rows[1]["sentence"] = "An edited claim."
    test_file.write_text("".join(json.dumps(row) + "\n" for row in rows))

    second = teacher_run(config(run="b"), tmp_path / "b")
    before, after = records(first, "test"), records(second, "test")
    assert after[0]["answer"] == 1 - before[0]["answer"]
    assert after[1]["question"] == "An edited claim." != before[1]["question"]
    assert len(entries(tmp_path / "cache")) == 2


def test_case1_moved_data_reuses_the_cache(config, data, tmp_path, monkeypatch):
    first = teacher_run(config(), tmp_path / "a")
    moved = Path(shutil.move(data, tmp_path / "moved"))
    monkeypatch.setattr(stage, "load_teacher_module", no_teacher)
    second = teacher_run(config(f"dataset.path={moved}", run="b"), tmp_path / "b")
    assert (second / "train.jsonl").read_bytes() == (first / "train.jsonl").read_bytes()


# ---------------------------------------------------------------- case 2: a damaged cache entry is never reused


@pytest.mark.parametrize("damage", ["lost_line", "cut_line", "changed_byte"])
def test_case2_damaged_cache_entry_is_reported_at_the_cache_file(config, tmp_path, fails, damage):
    teacher_run(config(), tmp_path / "a")
    (entry,) = entries(tmp_path / "cache")
    path = entry / "train.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    if damage == "lost_line":
        path.write_text("".join(lines[:-1]))
    elif damage == "cut_line":
        path.write_text("".join(lines[:-1]) + lines[-1][:40])
    else:
        path.write_text("".join(lines[:-1]) + lines[-1].replace('"', "'", 1))
    regenerate = f"delete {entry} to regenerate this cache entry"
    if damage == "changed_byte":
        expected = f"train.jsonl does not match the checksum its manifest records; {regenerate}"
    else:
        expected = f"train.jsonl has {len(lines) - 1} rows, its manifest records {len(lines)}; {regenerate}"
    assert fails(config(run="b")) == f"scd: error: cache entry {entry}: {expected}"
    assert not (tmp_path / "b" / "rationales").exists()
    # Following the advice regenerates the same files.
    shutil.rmtree(entry)
    assert main_task(config(run="c")) is not None
    assert (tmp_path / "c" / "rationales" / "train.jsonl").read_text() == "".join(lines)


def test_case12_damaged_shard_names_its_file_and_line(config, tmp_path, fails):
    teacher_run(config(), tmp_path / "a")
    (entry,) = entries(tmp_path / "cache")
    shard = entry / "shard-rank0.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:50] + "\n"  # a line damaged in the middle of the shard, not one cut by a kill at its end
    shard.write_text("".join(lines))
    for path in entry.glob("*.jsonl"):
        if path != shard:
            path.unlink()
    (entry / COMPLETE_MARKER).unlink()
    line = fails(config(run="b"))
    assert line.startswith(f"scd: error: {shard}, line 3: damaged record (Unterminated string starting at: column ")
    assert line.endswith(f"; delete {entry} to regenerate this cache entry")


# ---------------------------------------------------------------- case 3: runs started in the same second


def test_case3_runs_started_in_the_same_second_get_their_own_directories(monkeypatch):
    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5, 678901)

    monkeypatch.setattr(hydra.core.utils, "datetime", FrozenClock)
    run_dirs = []
    for pid in (4001, 4002):  # two processes, started in the same microsecond
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", return_hydra_config=True)
        run_dirs.append((cfg.hydra.run.dir, cfg.hydra.sweep.dir))
    assert run_dirs[0][0] != run_dirs[1][0] and run_dirs[0][1] != run_dirs[1][1]
    assert run_dirs[0][0].startswith("outputs/2026-01-02/03-04-05-678901")


# ---------------------------------------------------------------- case 4: one run per run directory


def test_case4_a_run_with_another_config_is_refused(config, tmp_path, fails):
    run_dir = tmp_path / "run"
    assert main_task(config("decoding=greedy")) is not None
    line = fails(config("decoding=contrast_wrong", "stages=[student,evaluate]"))
    assert line == (f"scd: error: run directory {run_dir} holds another run (decoding: greedy there, contrast_wrong "
                    "now); "
                    "use another hydra.run.dir, or overwrite=true to replace that run")
    # Refused before anything was touched: the greedy rationales are still there.
    assert {r["decoding"] for r in records(run_dir / "rationales", "test")} == {"greedy"}
    # overwrite=true replaces that run.
    assert main_task(config("decoding=contrast_wrong", "overwrite=true")) is not None
    assert {r["decoding"] for r in records(run_dir / "rationales", "test")} == {"contrast_wrong"}
    assert json.loads((run_dir / "run_config.json").read_text())["config"]["decoding.name"] == "contrast_wrong"


@pytest.mark.slow
def test_case4_a_refused_command_leaves_the_runs_hydra_config(tmp_path):
    run_dir = tmp_path / "run"
    env = cli_env(tmp_path)
    base = ["experiment=smoke", "stages=[teacher]", f"hydra.run.dir={run_dir}"]
    assert start([*base, "decoding=greedy"], tmp_path, "first.log", env).wait() == 0
    assert start([*base, "decoding=contrast_wrong"], tmp_path, "second.log", env).wait() == 1
    assert last_line(tmp_path / "second.log").startswith(f"scd: error: run directory {run_dir} holds another run")
    # Hydra rewrote .hydra/ for the refused command; it is put back, so the report still sees the greedy run.
    assert "name: greedy" in (run_dir / ".hydra" / "config.yaml").read_text()
    assert "decoding=greedy" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert status(run_dir) == {"status": "completed"}


def test_case4_resuming_with_another_config_is_refused(config, tmp_path, fails):
    run_dir = tmp_path / "run"
    assert main_task(config()) is not None
    line = fails(config("stages=[student]", "ckpt_path=last", "training=standard"))
    assert line == (f"scd: error: run directory {run_dir} holds another run (training: counterfactual there, standard "
                    "now); "
                    "use another hydra.run.dir, or overwrite=true to replace that run")
    # A resumable key may change only where the student trains again.
    line = fails(config("stages=[evaluate]", "trainer.max_steps=8"))
    assert line == (f"scd: error: run directory {run_dir}: its student was trained with trainer.max_steps=4, not 8; "
                    "run the student stage too (ckpt_path=last resumes it) or use another hydra.run.dir")


@pytest.mark.slow
def test_case4_stages_that_run_remove_the_stale_outputs_of_later_stages(config, tmp_path):
    run_dir = tmp_path / "run"
    assert main_task(config()) is not None
    # What an earlier full run left: predictions and metrics of its student, and a checkpoint of its training.
    for name in ("predictions/test.jsonl", "metrics.json", "checkpoints/best-step999.ckpt"):
        (run_dir / name).parent.mkdir(exist_ok=True)
        (run_dir / name).write_text('{"student/accuracy": 0.9}\n')
    assert main_task(config("stages=[teacher,student]")) is not None
    # metrics.json now holds this invocation's metrics (stage times) only.
    assert not (run_dir / "predictions").exists()
    assert "student/accuracy" not in json.loads((run_dir / "metrics.json").read_text())
    assert not (run_dir / "checkpoints" / "best-step999.ckpt").exists()
    assert (run_dir / "student" / "model.safetensors").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()


# ---------------------------------------------------------------- case 5: duplicate choices


def test_case5_duplicate_choices_are_refused_at_load_time(tmp_path):
    row = {"id": "q1", "answerKey": "C", "question": {"stem": "What causes pain in the head?", "choices": [
        {"label": "A", "text": "headache"}, {"label": "B", "text": "laziness"}, {"label": "C", "text": "Headache"}]}}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataFormatError) as info:
        get_format("commonsenseqa").read(path)
    assert str(info.value) == (f"{path}, line 1, field 'question.choices[2].text': duplicate choice 'Headache' "
                               "(same as 'headache' in question.choices[0].text once case, punctuation and spacing "
                               "are ignored, as answers are parsed)")
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("id,question,choice_0,choice_1,choice_2,label,human_exp\n"
                        "c1,Q?,a,b,c,0,e\nc2,Q?,rock,bird, rock ,1,e\n")
    with pytest.raises(DataFormatError, match=r"train\.csv, line 3, field 'choice_2': duplicate choice 'rock' "
                                              r"\(same as 'rock' in choice_0 once case"):
        get_format("cose").read(csv_path)


# ---------------------------------------------------------------- case 8: SIGTERM and SIGINT


def test_case8_a_signal_outside_lightning_raises_interrupted_and_handlers_are_restored():
    from scd.signals import Interrupted, interrupt_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="interrupted by SIGTERM"):
        with interrupt_on_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_case8_inside_lightning_the_signal_waits_for_its_loop():
    from scd.signals import Interrupted, interrupt_on_signals, raise_if_interrupted

    lightning_calls = []

    def lightning(signum, frame):  # what Lightning's signal connector installs, calling ours after its own
        lightning_calls.append(signum)
        ours(signum, frame)

    with pytest.raises(Interrupted, match="interrupted by SIGTERM"):
        with interrupt_on_signals():
            ours = signal.signal(signal.SIGTERM, lightning)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # not interrupted here: Lightning's loop stops at its next step
            signal.signal(signal.SIGTERM, ours)
            assert lightning_calls == [signal.SIGTERM]
            raise_if_interrupted()  # the next stage boundary


def signal_when(process: subprocess.Popen, condition, signum: int, timeout: float = 600) -> int:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended (status {process.returncode}) before the signal point"
        assert time.monotonic() < deadline, "signal point not reached in time"
        time.sleep(0.01)
    process.send_signal(signum)
    return process.wait(timeout=300)


def status(run_dir: Path) -> dict:
    """The run's outcome in its status.json (status and error; its provenance and times: tests/test_study_tooling.py)."""
    recorded = json.loads((run_dir / "status.json").read_text())
    return {key: recorded[key] for key in ("status", "error") if key in recorded}


def last_line(log: Path) -> str:
    return log.read_text().strip().splitlines()[-1]


def shard_lines(cache: Path) -> int:
    return sum(complete_lines(path) for path in (cache / "rationales").glob("*/shard-rank0.jsonl"))


@pytest.mark.slow
def test_case8_sigterm_during_the_teacher_stage(tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cli_cache"
    process = start([*SLOW_TEACHER, f"hydra.run.dir={run_dir}"], tmp_path, "teacher.log", cli_env(tmp_path))
    assert signal_when(process, lambda: shard_lines(cache) >= 3, signal.SIGTERM) == 128 + signal.SIGTERM
    assert status(run_dir) == {"status": "interrupted", "error": "interrupted by SIGTERM"}
    assert last_line(tmp_path / "teacher.log") == (
        f"scd: error: {run_dir}: interrupted by SIGTERM; what finished is kept: rerun the same command to resume")
    decoded = shard_lines(cache)
    assert 3 <= decoded < N_RATIONALES
    assert not list((cache / "rationales").glob(f"*/{COMPLETE_MARKER}"))
    # The same command resumes: each rationale is decoded once over both runs.
    assert main_task(compose_config(SLOW_TEACHER, run_dir, cache)) is not None
    assert shard_lines(cache) == N_RATIONALES and status(run_dir) == {"status": "completed"}


@pytest.mark.slow
def test_case8_sigterm_during_student_training_keeps_lightnings_handling(tmp_path, caplog):
    run_dir, cache = tmp_path / "run", tmp_path / "cli_cache"
    last = run_dir / "checkpoints" / "last.ckpt"
    command = ["experiment=smoke", "stages=[teacher,student]", "trainer.max_steps=100000",
               "trainer.val_check_interval=2", "ckpt_path=last"]
    process = start([*command, f"hydra.run.dir={run_dir}"], tmp_path, "student.log", cli_env(tmp_path))
    assert signal_when(process, last.exists, signal.SIGTERM) == 128 + signal.SIGTERM
    assert status(run_dir) == {"status": "interrupted", "error": "interrupted by SIGTERM"}
    log = (tmp_path / "student.log").read_text()
    assert "Received SIGTERM" in log  # Lightning's own handler ran, and its fit loop stopped the training
    assert last_line(tmp_path / "student.log").endswith("interrupted by SIGTERM; what finished is kept: "
                                                        "rerun the same command to resume")
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    caplog.set_level(logging.INFO, logger="scd.student.train")
    resumed = compose_config([*command[:2], "ckpt_path=last", f"trainer.max_steps={step + 2}",
                              "trainer.val_check_interval=2"], run_dir, cache)
    assert main_task(resumed) is not None
    assert f"resuming from {last}" in caplog.messages
    assert status(run_dir) == {"status": "completed"}


@pytest.mark.slow
def test_case8_sigint_during_evaluation(tmp_path):
    run_dir = tmp_path / "run"
    # The student generates far longer than the signal takes to arrive (the simulator now trains in the teacher stage).
    process = start(["experiment=smoke", "student.max_new_tokens=100000", f"hydra.run.dir={run_dir}"], tmp_path,
                    "evaluate.log", cli_env(tmp_path))
    assert signal_when(process, (run_dir / "student").exists, signal.SIGINT) == 128 + signal.SIGINT
    assert status(run_dir) == {"status": "interrupted", "error": "interrupted by SIGINT"}
    assert (run_dir / "student" / "model.safetensors").exists() and not (run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_case8_an_interrupted_sweep_exits_non_zero_with_its_summary(tmp_path):
    sweep_dir, cache = tmp_path / "sweep", tmp_path / "cli_cache"
    process = start(["-m", *SLOW_TEACHER, "decoding.lam=0.5,0.6", f"hydra.sweep.dir={sweep_dir}"], tmp_path,
                    "sweep.log", cli_env(tmp_path))
    assert signal_when(process, lambda: shard_lines(cache) >= 3, signal.SIGTERM) == 128 + signal.SIGTERM
    assert status(sweep_dir / "0") == {"status": "interrupted", "error": "interrupted by SIGTERM"}
    assert not (sweep_dir / "1").exists()
    assert last_line(tmp_path / "sweep.log") == (
        f"scd: error: sweep {sweep_dir}: interrupted by SIGTERM: 1 of 2 jobs started, 1 did not complete: job 0 "
        f"(interrupted by SIGTERM); later jobs not started; rerun the same command (with hydra.sweep.dir={sweep_dir}) "
        f"to resume (0 kept, 0 resumed, 1 new); python -m scd.report {sweep_dir} tabulates them")


# ---------------------------------------------------------------- case 9: locks, and a read-only cache


TINY_WORLD = toyworld_teacher.WorldConfig(n_categories=2, n_mc_choices=2, entities_per_category=3, n_properties=6, n_train=20,
                                          n_dev=4, n_test=4)
TINY_TEACHER = toyworld_teacher.TeacherConfig(n_layers=1, d_model=16, n_heads=2, block_size=16, batch_size=4,
                                              max_steps=5, probe_size=2, probe_threshold=0.0)


def build_in_child(cache: Path) -> None:
    toyworld_teacher.ensure_teacher(TINY_WORLD, CorpusConfig(), TINY_TEACHER, TOYWORLD_PROMPT, cache, progress=False)


def test_case9_two_processes_building_one_toyworld_teacher(tmp_path, monkeypatch):
    cache, builds = tmp_path / "cache", tmp_path / "builds"
    real_train = toyworld_teacher.train_teacher

    def slow_train(*args, **kwargs):
        with open(builds, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(2)  # both processes are past the "is it built?" check before either finishes
        return real_train(*args, **kwargs)

    monkeypatch.setattr(toyworld_teacher, "train_teacher", slow_train)
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=build_in_child, args=(cache,)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=300)
    assert [child.exitcode for child in children] == [0, 0]
    assert len(builds.read_text().splitlines()) == 1  # one built, the other waited and reused it
    (teacher_dir,) = cache.glob("toyworld-teacher-*")
    assert (teacher_dir / toyworld_teacher.REPORT_FILE).exists()


def test_case9_a_read_only_cache_serves_complete_entries(config, tmp_path, monkeypatch):
    first = teacher_run(config(), tmp_path / "a")
    cache = (tmp_path / "cache").resolve()

    def read_only_open(file, mode="r", *args, **kwargs):
        if Path(file).resolve().is_relative_to(cache) and any(flag in mode for flag in "wax+"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(file))
        return builtins.open(file, mode, *args, **kwargs)

    # The cache's writers: the store's manifest and shards, and scd.io's lock and atomic files.
    for module in (store_module, scd.io):
        monkeypatch.setattr(module, "open", read_only_open, raising=False)
    monkeypatch.setattr(stage, "load_teacher_module", no_teacher)
    second = teacher_run(config(run="b"), tmp_path / "b")
    assert (second / "test.jsonl").read_bytes() == (first / "test.jsonl").read_bytes()


# ---------------------------------------------------------------- case 12: messages


def test_case12_one_bad_hydra_config_marks_its_job_only(tmp_path):
    for job, config_text in (("0", "decoding: {name: greedy}\ntraining: {mode: standard}\nseed: 0\n"),
                             ("1", "decoding: {name: greedy\n")):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "config.yaml").write_text(config_text)
        (tmp_path / job / "metrics.json").write_text('{"student/accuracy": 0.5}')
    good, bad = collect_runs(tmp_path)
    assert good.status == "completed" and bad.status == "failed"
    assert bad.error.startswith(f"{tmp_path / '1' / '.hydra' / 'config.yaml'}: cannot parse: ")


def test_case12_the_one_line_keeps_hydras_hint_to_quote_the_value():
    with pytest.raises(ConfigCompositionException) as info:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            compose(config_name="config", overrides=["teacher.instruction=a,b"])
    line = one_line(info.value)
    assert line.startswith("Ambiguous value for argument 'teacher.instruction=a,b'; 1. To use it as a list")
    assert "; 2. To use it as string, quote the value: " in line and "\n" not in line


@pytest.mark.parametrize("override,message", [
    ("seed=-1", "seed must be in [0, 4294967295], got -1"),
    ("dataset.seed=-1", "dataset.seed must be in [0, 4294967295], got -1"),
    ("stages=[]", "stages must name at least one of ['teacher', 'student', 'evaluate'], got []"),
])
def test_case12_bad_values_name_their_key(config, fails, override, message):
    assert fails(config(override)) == f"scd: error: {message}"


# ---------------------------------------------------------------- case 13: data formats


def test_case13_cose_csv_in_the_las_authors_form(caplog):
    caplog.set_level(logging.INFO, logger="scd.data.formats")
    splits = load_splits("cose", FIXTURES / "cose_las", splits={"train": "train.csv", "dev": None, "test": "test.csv"},
                         dev_size=1, seed=0)
    train = splits["train"] + splits["dev"]
    explained = {example.id: example.rationale for example in train}
    assert explained == {"t1": "ice is frozen water", "t2": "birds have wings", "t3": None,
                         "t4": "a clock shows the time"}  # t3's explanation is "n/a"
    assert [(example.id, example.answer_text, example.rationale) for example in splits["test"]] == [
        ("e1", "bed", None), ("e2", "ocean", None)]
    assert f"{FIXTURES / 'cose_las' / 'test.csv'}: 2 of 2 examples have no explanation" in caplog.text
    assert f"{FIXTURES / 'cose_las' / 'train.csv'}: 1 of 4 examples have no explanation" in caplog.text


def test_case13_creak_placeholder_explanations_are_missing(caplog):
    caplog.set_level(logging.INFO, logger="scd.data.formats")
    examples = get_format("creak").read(FIXTURES / "creak" / "contrast_set.json")
    assert len(examples) == 4 and {example.rationale for example in examples} == {None}
    assert "contrast_set.json: 4 of 4 examples have no explanation" in caplog.text
    # Never demonstration text: as a train split it offers no demonstrations at all.
    with pytest.raises(ValueError, match="only 0 examples with a human rationale"):
        pick_demonstrations(examples, 1, seed=0)
