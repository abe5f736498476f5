"""Issue 30, reliability round four: paths whose targets are written, not replaced; inputs that exist are read; errors
that name their cause in one line; reports that do not mix data sets; "not measured" is n/a; quieter output; and an
OpenMP default that holds beside a busy process."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers.utils import logging as hf_logging

import scd
from scd.cli import apply_threads, write_status
from scd.config import validate
from scd.evaluation.answers import counterfactual_consistency, perturbed_consistency
from scd.io import atomic_write_text, publish_directory
from scd.loggers import quiet_library_noise
from scd.predict import PredictError, main as predict_main, read_questions
from scd.progress import StepProgressLog
from scd.report import collect_runs, group_cells, main as report_main, write_report
from scd.student.train import AtomicCheckpointIO
from scd.task import build_task
from scd.teacher.jobs import RationaleJob
from scd.teacher.stage import check_prompts
from scd.teacher.strategies.contrast_text import ContrastText
from scd.toyworld.task import settings
from scd.toyworld.world import WorldConfig
from tests.conftest import ROOT
from tests.test_predict import student_dir  # noqa: F401 - the fixture: a tiny saved student, seq2seq and causal

QUESTION = {"question": "can birds fly ?", "choices": ["yes", "no"]}


# ------------------------------------------------------------ 2. never replace what a path points to


def test_an_atomic_write_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    # Before: the link itself was replaced by a regular file, and its target kept the old text.
    target = tmp_path / "store" / "metrics.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "metrics.json"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no temp file left beside it


def test_an_atomic_write_to_a_character_device_writes_it_and_keeps_the_link(tmp_path):
    # A link to /dev/null stands in for /dev/stdout: before, the link was replaced by a file holding the text.
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    atomic_write_text(link, "discarded")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_an_atomic_write_to_a_fifo_writes_into_it(tmp_path):
    # Before: a regular file was renamed onto the FIFO; its reader never got a byte.
    fifo = tmp_path / "answers"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    writer = threading.Thread(target=atomic_write_text, args=(fifo, "line\n"), daemon=True)
    writer.start()
    writer.join(timeout=10)
    reader.join(timeout=10)
    if reader.is_alive() and stat.S_ISFIFO(os.stat(fifo).st_mode):
        # Nothing was written into the FIFO (the old code replaced it): release the reader. Decided on the reader, not
        # on `received`, which it fills a moment after the writer closes: a reader that has gone leaves an open for
        # writing waiting forever.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received == ["line\n"]


def test_dev_stdout_as_an_output_writes_to_standard_output(tmp_path):
    # The case, on a link in tmp_path to /dev/stdout so that the old code cannot harm the system's.
    link = tmp_path / "stdout"
    link.symlink_to("/dev/stdout")
    code = f"from scd.io import atomic_write_text; atomic_write_text({str(link)!r}, 'through the link\\n')"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "through the link\n"
    assert link.is_symlink()


@pytest.mark.parametrize("writer", ["status", "checkpoint", "published directory"])
def test_every_atomic_writer_keeps_a_symlinked_path(tmp_path, writer):
    """The run's status.json (scd.cli), a checkpoint (scd.student.train) and a published directory (rationales/,
    student/, the tokenizer cache: scd.io.publish_directory) written through a link land in its target."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if writer == "status":
        (elsewhere / "status.json").write_text("{}")
        (run_dir / "status.json").symlink_to(elsewhere / "status.json")
        write_status(run_dir, "completed")
        written = elsewhere / "status.json"
        assert json.loads(written.read_text()) == {"status": "completed"}
    elif writer == "checkpoint":
        (elsewhere / "last.ckpt").write_bytes(b"old")
        (run_dir / "last.ckpt").symlink_to(elsewhere / "last.ckpt")
        AtomicCheckpointIO().save_checkpoint({"global_step": 7}, run_dir / "last.ckpt")
        written = elsewhere / "last.ckpt"
        assert written.stat().st_size > 3
    else:
        (elsewhere / "rationales").mkdir()
        (elsewhere / "rationales" / "stale.jsonl").write_text("old")
        (run_dir / "rationales").symlink_to(elsewhere / "rationales")
        publish_directory(lambda tmp: (tmp / "test.jsonl").write_text("new"), run_dir / "rationales")
        written = elsewhere / "rationales"
        assert sorted(p.name for p in written.iterdir()) == ["test.jsonl"]
    assert os.readlink(run_dir / written.name) == str(written)


def test_predict_writes_json_lines_to_stdout_with_dash_and_dev_stdout(student_dir, tmp_path):  # noqa: F811
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps(QUESTION) + "\n")
    link = tmp_path / "stdout"
    link.symlink_to("/dev/stdout")
    for output in ("-", str(link)):
        result = subprocess.run(
            [sys.executable, "-m", "scd.predict", str(student_dir), "--input", str(questions), "--output", output,
             "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        # stdout holds the JSON line only; the one-line description goes to stderr.
        [row] = [json.loads(line) for line in result.stdout.splitlines()]
        assert row["question"] == "can birds fly ?" and "can birds fly ?" in result.stderr
        assert "Loading weights" not in result.stderr  # --no-progress hides transformers' bar too
    assert link.is_symlink()


# ------------------------------------------------------------ 3. inputs that exist are read


def test_questions_are_read_from_a_fifo_and_from_standard_input(tmp_path, monkeypatch):
    fifo = tmp_path / "questions"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(json.dumps(QUESTION) + "\n"), daemon=True)
    writer.start()
    try:
        [question] = read_questions(fifo)
    finally:
        writer.join(timeout=10)
        if writer.is_alive():  # the old code refused the FIFO unread: release the writer
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    assert question.choices == ["yes", "no"]
    stdin = tmp_path / "stdin.jsonl"
    stdin.write_text(json.dumps(QUESTION) + "\n")
    with stdin.open("rb") as handle:
        monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=handle))
        [question] = read_questions(Path("-"))
    assert question.question == "can birds fly ?"


def test_dev_stdin_is_read(tmp_path):
    code = ("from pathlib import Path; from scd.predict import read_questions; "
            "print(len(read_questions(Path('/dev/stdin'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, input=json.dumps(QUESTION) + "\n",
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1"


def test_a_directory_as_input_is_refused_as_a_directory(tmp_path, capsys):
    with pytest.raises(PredictError, match=rf"^{tmp_path}: is a directory, not a JSON-lines file of questions$"):
        read_questions(tmp_path)
    with pytest.raises(SystemExit):
        predict_main([str(tmp_path), "--input", str(tmp_path)])
    assert capsys.readouterr().err == f"scd: error: {tmp_path}: is a directory, not a JSON-lines file of questions\n"


# ------------------------------------------------------------ 4. no traceback, and the cause named


def make_run(root: Path, job: str, *, dataset: str = "smoke", seed: int = 0, overrides: tuple[str, ...] = (),
             accuracy: float = 0.5) -> Path:  # fmt: skip
    run_dir = root / job
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"seed: {seed}\ndataset:\n  name: {dataset}\ndecoding:\n  name: greedy\ntraining:\n  mode: standard\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text(
        "".join(f"- {item}\n" for item in ["decoding=greedy", f"seed={seed}", *overrides]))
    (run_dir / "metrics.json").write_text(json.dumps({"student/accuracy": accuracy}))
    return run_dir


def test_a_report_into_a_directory_it_cannot_write_is_one_line(tmp_path, capsys):
    # Root writes through permissions: a directory in table.md's place stands in for an unwritable directory.
    make_run(tmp_path, "0")
    (tmp_path / "table.md").mkdir()
    with pytest.raises(SystemExit) as exit_:
        report_main([str(tmp_path)])
    assert str(exit_.value.code) == f"scd: error: could not write {tmp_path / 'table.md'}: Is a directory"


def test_report_errors_use_the_scd_error_prefix(tmp_path):
    with pytest.raises(SystemExit) as exit_:
        report_main([str(tmp_path / "missing")])
    assert str(exit_.value.code) == f"scd: error: {tmp_path / 'missing'} is not a directory"


def test_a_too_long_decoding_text_is_named_before_decoding():
    # Before: "question too long for the teacher: test example 'q0' ...", advising to shorten the question.
    strategy = ContrastText(name="contrast_text", text="I am not sure at all. " * 250)
    # The question's own prompt is 20 tokens; the contrast prompt, with the text as its answer, 2000.
    module = SimpleNamespace(settings=SimpleNamespace(max_new_tokens=8), prefix_ids=[1, 2], strategy=strategy,
                             prompts=lambda jobs: [[[5] * 20, [5] * 2000] for _ in jobs])  # fmt: skip
    job = RationaleJob("test", SimpleNamespace(id="q0"), 1, 0)
    with pytest.raises(ValueError) as error:
        check_prompts(module, [job], None, 1024)
    assert str(error.value).startswith("decoding.text is too long for the teacher: the contrast prompt answering it "
                                       "has 2000 tokens after the demonstrations > teacher.max_prompt_tokens=1024")
    assert str(error.value).endswith("shorten decoding.text (5500 characters)")


@pytest.mark.parametrize("value,message", [
    ("high", "dataset.task.world.shortcut_strength = 'high': expected a number"),
    (2, "dataset.task.world.shortcut_strength = 2: must be between 0 and 1"),
])
def test_world_errors_name_the_key_the_user_typed_and_its_type(make_config, value, message):
    # Before: "'<=' not supported between instances of 'float' and 'str'", and "WorldConfig.shortcut_strength".
    with pytest.raises(ValueError) as error:
        build_task(validate(make_config("dataset=toyworld", "teacher=toyworld", "student=toyworld",
                                        "simulator=toyworld", f"dataset.task.world.shortcut_strength={value}")))
    assert str(error.value) == message
    with pytest.raises(ValueError, match=r"^dataset.task.world.n_train = True: expected an integer$"):
        settings(WorldConfig, {"n_train": True}, "dataset.task.world")


@pytest.mark.slow
def test_cfg_job_resolve_prints_the_config(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "run.py"), "experiment=smoke", "--cfg", "job", "--resolve"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "  output_dir: null\n" in result.stdout and "scd: error" not in result.stderr


@pytest.mark.slow
def test_a_relative_dataset_path_is_the_launch_directorys_under_hydra_job_chdir(tmp_path):
    # Before: "scd: error: data/train.json: no such file" (the path read from the job's own directory).
    shutil.copytree(ROOT / "scd" / "data" / "samples" / "creak", tmp_path / "data")
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "experiment=smoke", "threads=1", "hydra.job.chdir=true",
         "dataset.path=data", "stages=[teacher]", f"paths.cache_dir={tmp_path / 'cache'}",
         f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "rationales" / "test.jsonl").stat().st_size > 0


# ------------------------------------------------------------ 1. threads


def test_threads_above_the_allowed_cores_are_refused_naming_them(monkeypatch):
    # Before: threads=1000 on 2 cores was accepted without a word.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3})
    with pytest.raises(ValueError, match=r"^threads=1000 is more than the 2 cores this process may use \(cores 0, 3\)"):
        apply_threads(1000)


@pytest.mark.parametrize("environment,expected", [
    ({}, scd.OPENMP_SPIN),
    ({"GOMP_SPINCOUNT": "5"}, "5"),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
])
def test_openmp_spin_is_bounded_before_torch_loads_unless_the_user_chose(environment, expected):
    # run.py's imports: scd (setting the spin) comes before anything that loads torch.
    code = ("import json, os, sys; import hydra; import scd; loaded = 'torch' in sys.modules; import scd.cli; "
            "print(json.dumps([loaded, os.environ.get('GOMP_SPINCOUNT')]))")
    env = {key: value for key, value in os.environ.items() if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**env, **environment})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [False, expected]
    assert int(scd.OPENMP_SPIN) < 300_000  # below libgomp's own spin, which collapses beside a busy process


# ------------------------------------------------------------ 5. reports that do not mix data sets


def test_runs_of_two_data_sets_are_split_with_one_line_saying_so(tmp_path):
    # Before: the smoke and toyworld runs were pooled as two seeds of one cell (accuracy 0.600 ± 0.141).
    make_run(tmp_path, "0", dataset="smoke", seed=0, accuracy=0.5)
    make_run(tmp_path, "1", dataset="toyworld", seed=1, accuracy=0.7)
    lines = write_report(tmp_path).splitlines()
    assert lines[0] == ("these runs are of 2 data sets (smoke, toyworld): each row is of one, named in the dataset "
                        "column; compare rows of the same data set only")
    assert lines[2].startswith("| decoding | training | dataset | seeds | student/accuracy |")
    assert lines[4].startswith("| greedy | standard | smoke | 1 | 0.500 |")
    assert lines[5].startswith("| greedy | standard | toyworld | 1 | 0.700 |")


def test_speed_only_overrides_never_split_cells(tmp_path):
    # Before: threads=1 and threads=2, and two cache directories, made two cells of one seed each.
    make_run(tmp_path, "0", seed=0, overrides=("threads=1", "paths.cache_dir=/a"), accuracy=0.5)
    make_run(tmp_path, "1", seed=1, overrides=("threads=2", "paths.cache_dir=/b"), accuracy=0.7)
    [cell] = group_cells(collect_runs(tmp_path))
    assert cell.settings == {} and cell.n_seeds == 2
    assert write_report(tmp_path).splitlines()[2].startswith("| greedy | standard | 2 | 0.600 ± 0.141 |")


# ------------------------------------------------------------ 6. "not measured" is n/a


def test_a_consistency_of_no_parsable_answer_is_not_measured():
    # Before: 0.0, printed "answer kept under a perturbed rationale 0.000" as if measured.
    rows = [{"predicted": None, "perturbed_rationale_predicted": None, "counterfactual_predicted": None,
             "counterfactual_rationale_for": 1} for _ in range(3)]  # fmt: skip
    assert math.isnan(perturbed_consistency(rows)) and math.isnan(counterfactual_consistency(rows))
    rows[0].update(predicted=0, perturbed_rationale_predicted=0, counterfactual_predicted=1)
    assert perturbed_consistency(rows) == pytest.approx(1 / 3)
    assert counterfactual_consistency(rows) == pytest.approx(1 / 3)


# ------------------------------------------------------------ 7. quieter output


def test_lightnings_unnamed_fit_stopped_line_is_dropped(caplog):
    quiet_library_noise()
    lightning = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        lightning.info("`Trainer.fit` stopped: `max_steps=4` reached.")
        lightning.info("kept")
    assert [record.getMessage() for record in caplog.records] == ["kept"]


def fit_lines(periodic: bool, steps: int, caplog) -> list[str]:
    progress = StepProgressLog("simulator", periodic=periodic, clock=lambda: 0.0)
    trainer = SimpleNamespace(global_step=0, estimated_stepping_batches=steps, num_training_batches=7,
                              strategy=SimpleNamespace(root_device="cpu"), progress_bar_metrics={"loss": 0.5})
    with caplog.at_level(logging.INFO, logger="scd.progress"):
        progress.on_train_start(trainer, None)
        for step in range(1, steps + 1):
            trainer.global_step = step
            progress.on_train_batch_end(trainer, None, None, None, step - 1)
        progress.on_train_end(trainer, None)
    return [record.getMessage() for record in caplog.records]


def test_each_stage_closes_with_one_line_naming_it(caplog):
    # With a bar (not periodic) the stage's end is one named line; in plain lines the last step's is not repeated.
    assert fit_lines(False, 4, caplog)[1:] == ["simulator: step 4/4 (100%), loss 0.5, 0 s elapsed"]
    caplog.clear()
    assert fit_lines(True, 4, caplog)[1:] == [f"simulator: step {k}/4 ({k * 25}%), loss 0.5, 0 s elapsed"
                                              + (", ~0 s left" if k < 4 else "") for k in range(1, 5)]  # fmt: skip


def test_predict_no_progress_turns_transformers_bars_off(student_dir, tmp_path):  # noqa: F811
    try:
        predict_main([str(student_dir), "--question", "can birds fly ?", "--choices", "yes", "no", "--no-progress"])
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()


@pytest.mark.slow
def test_the_thread_benchmark_measures_beside_a_busy_neighbour():
    result = subprocess.run([sys.executable, "benchmarks/threads.py", "--processes", "--neighbours", "matmul", "none",
                             "--settings", "1", "default", "--steps", "2", "--warmup", "1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["steps_per_s_all_processes"] == {}
    assert {kind: sorted(row) for kind, row in measured["beside"].items()} == {"matmul": ["1", "default"],
                                                                              "none": ["1", "default"]}
    assert all(cell["steps_per_s"] > 0 for row in measured["beside"].values() for cell in row.values())
    assert f"| scd default (its share of the free cores, GOMP_SPINCOUNT={scd.OPENMP_SPIN}) | load average |" in \
        result.stdout
    # The default decides its threads beside each neighbour: one where the matmul loop keeps a core busy.
    assert measured["beside"]["matmul"]["default"]["threads"] == 1


@pytest.mark.parametrize(("usage", "launcher_share", "expected"), [
    ([3.0, 2.0], 2, 2),     # idle cores: a thread per core, as before
    ([100.0, 4.0], 2, 1),   # a neighbour keeps core 0 busy: one thread, which does not wait for its turn there
    ([97.0, 99.0], 2, 1),   # both busy: still one thread
    ([0.0, 0.0], 1, 1),     # two joblib jobs on two cores: their share
])
def test_the_default_thread_count_leaves_out_cores_other_processes_keep_busy(monkeypatch, usage, launcher_share,
                                                                              expected):  # fmt: skip
    # Before: two threads beside any busy process, which ran a teacher build at 4 steps/s against 11 with one thread.
    import scd.cli as cli

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(cli.psutil, "cpu_percent", lambda interval, percpu: usage)
    monkeypatch.setattr(cli, "parallel_jobs", lambda launcher, cores: cores // launcher_share)
    monkeypatch.setattr(cli, "is_multirun", lambda: False)
    try:
        assert cli.apply_threads(None) == expected == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
