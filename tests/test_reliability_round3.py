"""Issue 20, reliability round three: each case as the user met it, and what they get now."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch
from omegaconf import OmegaConf

from scd.cli import apply_threads, main_task, parallel_jobs
from scd.config import validate
from scd.data.formats import DataFormatError, get_format
from scd.data.records import RationaleRecord
from scd.evaluation.simulator import SimulatorRow, score_choices
from scd.models import InputLimit, InputTooLongError, load_model, load_tokenizer
from scd.predict import PredictError, main as predict_main, make_question
from scd.student.data import IGNORE_INDEX, encode_row
from scd.student.evaluate import predict_rationales
from scd.student.formatting import parse_answer
from scd.student.objectives import Standard
from scd.student.stage import check_student_trainer, check_validation_interval
from tests.conftest import ROOT, TINY_STUDENTS, validated


def error_line(capsys, run, *args) -> str:
    """Run ``run(*args)``, expect exit status 1 and return its one stderr line."""
    with pytest.raises(SystemExit) as exit_info:
        run(*args)
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ---------------------------------------------------------------- near-duplicate choices


def csqa_row(texts: list[str]) -> dict:
    return {"id": "q1", "answerKey": "B", "question": {"stem": "Where?", "choices": [
        {"label": label, "text": text} for label, text in zip("ABC", texts)]}}


@pytest.mark.parametrize(("texts", "first", "second"), [
    (["new-york", "New York", "boston"], "new-york", "New York"),
    (["yes", "no", "yes!"], "yes", "yes!"),
])
def test_choices_the_parser_cannot_tell_apart_are_refused_at_load(tmp_path, texts, first, second):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(csqa_row(texts)) + "\n")
    with pytest.raises(DataFormatError) as info:
        get_format("commonsenseqa").read(path)
    index = texts.index(second)
    assert str(info.value) == (
        f"{path}, line 1, field 'question.choices[{index}].text': duplicate choice {second!r} (same as {first!r} in "
        f"question.choices[{texts.index(first)}].text once case, punctuation and spacing are ignored, as answers "
        "are parsed)")
    # What the parser would have done with them: the first, whichever was meant.
    assert parse_answer(f"So the answer is {second.upper()}", texts) == texts.index(first)


def test_choices_the_parser_tells_apart_still_load(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(csqa_row(["can't", "cant", "new york city"])) + "\n")
    assert get_format("commonsenseqa").read(path)[0].choices == ("can't", "cant", "new york city")


def test_predict_refuses_near_duplicate_choices():
    with pytest.raises(PredictError) as info:
        make_question({"question": "q?", "choices": ["yes", "Yes"]}, "q.jsonl, line 3", default_id="3")
    assert str(info.value) == ("q.jsonl, line 3: field 'choices': duplicate choice 'Yes' (same as 'yes' once case, "
                               "punctuation and spacing are ignored, as answers are parsed)")


# ---------------------------------------------------------------- scd.predict's input and output


def test_predict_refuses_to_write_its_answers_over_its_questions(tmp_path, capsys, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "q?", "choices": ["a", "b"]}\n')
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, predict_main, [str(tmp_path / "run"), "--input", "q.jsonl", "--output", "./q.jsonl"])
    assert line == ("scd: error: --output q.jsonl is the --input file: the answers would replace the questions; "
                    "write them to another file")
    assert questions.read_text() == '{"question": "q?", "choices": ["a", "b"]}\n'


def test_predict_names_the_file_and_line_of_bytes_that_are_not_utf8(tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(b'{"question": "q?", "choices": ["a", "b"]}\n\x8c{"question": 1}\n')
    line = error_line(capsys, predict_main, [str(tmp_path / "run"), "--input", str(questions)])
    assert line == f"scd: error: {questions}, line 2: file is not UTF-8 (invalid start byte at byte 42)"


def test_predict_answer_takes_an_index_as_its_message_offers():
    fields = {"question": "q?", "choices": ["yes", "no"], "answer": "1", "rationale": "r", "rationale_for": "0"}
    question = make_question(fields, "command line", default_id="1")
    assert (question.gold, question.rationale_for) == (1, 0)
    # A choice whose text is a number is matched as text first.
    assert make_question({"question": "q?", "choices": ["2", "1"], "answer": "1"}, "command line", "1").gold == 1
    with pytest.raises(PredictError, match=r"field 'answer' must be one of the choices \(index or text\), got '2'"):
        make_question({"question": "q?", "choices": ["yes", "no"], "answer": "2"}, "command line", "1")


# ---------------------------------------------------------------- keys that reached nothing, errors that came late


@pytest.fixture
def refused(make_config, capsys):
    """``refused(*overrides)``: the smoke run ends at start in one error line, before the teacher stage wrote
    anything; returns that line."""

    def run(*overrides: str) -> str:
        raw = make_config(*overrides)
        line = error_line(capsys, main_task, raw)
        run_dir = Path(raw.paths.output_dir)
        assert not (run_dir / "rationales").exists() and not Path(raw.paths.cache_dir).exists()
        return line

    return run


@pytest.mark.parametrize(("override", "message"), [
    ("+trainer.bogus_arg=1", "unknown key trainer.bogus_arg (not an argument of pytorch_lightning.Trainer)"),
    ("+trainer.max_step=10", "unknown key trainer.max_step (not an argument of pytorch_lightning.Trainer); did you "
                             "mean trainer.max_steps?"),
    ("+student.lrr=5", "unknown key student.lrr (not in StudentConfig); did you mean student.lr?"),
    ("+decoding.lamda=0.5", "decoding: unknown key 'lamda' for scd.teacher.strategies.ContrastWrong; known: lam, "
                            "plausibility, name; did you mean decoding.lam?"),
    ("+seeed=1", "unknown key seeed (not in Config); did you mean seed?"),
    ("+callbacks.extra._target_=builtins.dict",
     "callbacks.extra._target_: builtins.dict has no signature to check its arguments against; name a Python class"),
    ("callbacks.checkpoint.monitor=val/bogus",
     "callbacks.checkpoint.monitor: the student logs no 'val/bogus'; with training=counterfactual it logs val/loss, "
     "val/factual_loss, val/counterfactual_loss, train/loss, train/factual_loss, train/counterfactual_loss"),
    ("+callbacks.stop._target_=pytorch_lightning.callbacks.EarlyStopping",
     "callbacks.stop.monitor: the student logs no 'val/loss'"),
])
def test_a_key_that_would_reach_nothing_is_refused_at_start(refused, override, message):
    overrides = [override]
    if "callbacks.stop" in override:  # EarlyStopping's monitor is required: one the standard objective lacks
        overrides = [override, "+callbacks.stop.monitor=val/counterfactual_loss", "training=standard"]
        message = ("callbacks.stop.monitor: the student logs no 'val/counterfactual_loss'; with training=standard it "
                   "logs val/loss, val/factual_loss, train/loss, train/factual_loss")
    assert refused(*overrides) == f"scd: error: {message}"


def test_a_validation_interval_longer_than_an_epoch_is_refused_before_the_teacher(refused):
    # Smoke: 8 training questions in batches of 4. Lightning refused this only at fit, after the teacher stage.
    assert refused("trainer.val_check_interval=50") == (
        "scd: error: trainer.val_check_interval=50: an epoch has at most 2 training batches (8 training questions in "
        "batches of student.batch_size=4); use at most 2, a share of an epoch (e.g. 0.5), or "
        "trainer.check_val_every_n_epoch=null to count batches across epochs")


def test_validation_intervals_lightning_accepts_pass_the_check(make_config):
    for overrides, questions in [(["trainer.val_check_interval=2"], 8), (["trainer.val_check_interval=50",
                                  "trainer.check_val_every_n_epoch=null"], 8), (["trainer.val_check_interval=0.5"], 1)]:
        cfg, components = validated(make_config(*overrides))
        check_validation_interval(check_student_trainer(cfg, components.training, Path(cfg.paths.output_dir)),
                                  questions, 4)  # fmt: skip
    cfg, components = validated(make_config("trainer.val_check_interval=3"))
    with pytest.raises(ValueError, match=r"at most 2 training batches \(8 training questions in batches of "
                                         r"student.batch_size=4\); use at most 2"):
        check_validation_interval(check_student_trainer(cfg, components.training, Path(cfg.paths.output_dir)), 8, 4)


# ---------------------------------------------------------------- model input length caps


LONG_QUESTION = "why " * 5000 + "?"


def tiny_model(arch: str):
    tokenizer = load_tokenizer("byt5")
    return load_model(arch, tokenizer, random_init=TINY_STUDENTS[arch]).eval(), tokenizer


def long_record(question: str = LONG_QUESTION) -> RationaleRecord:
    return RationaleRecord("long-1", question, ["yes", "no"], 0, 1, 0, "because .", "greedy")


def test_an_input_over_the_limit_is_refused_naming_the_example_or_cut_when_asked():
    with pytest.raises(InputTooLongError) as info:
        InputLimit(4, group="simulator").apply([1, 2, 3, 4, 5, 9], "q7")
    assert str(info.value) == ("example 'q7': the simulator's input is 6 tokens, more than "
                               "simulator.max_input_tokens=4; raise it, or set simulator.truncate_inputs=true to cut "
                               "longer inputs")
    assert InputLimit(4, truncate=True).apply([1, 2, 3, 4, 5, 9], "q7") == [1, 2, 3, 9]  # the final token stays
    assert InputLimit(4).apply([1, 2, 3], "q7") == [1, 2, 3]


@pytest.mark.parametrize("arch", ["seq2seq", "causal"])
def test_the_students_training_and_evaluation_inputs_are_capped(arch):
    model, tokenizer = tiny_model(arch)
    row = Standard().factual_row(long_record())
    start = 0 if arch == "seq2seq" else None
    message = r"example 'long-1': the student's input is \d+ tokens, more than student.max_input_tokens=512"
    with pytest.raises(InputTooLongError, match=message):
        encode_row(row, tokenizer, arch, decoder_start_token_id=start)
    with pytest.raises(InputTooLongError, match=message):
        predict_rationales(model, tokenizer, arch, [long_record()], show_progress=False)
    cut = encode_row(row, tokenizer, arch, decoder_start_token_id=start, input_limit=InputLimit(64, truncate=True))
    prompt = cut.input_ids if arch == "seq2seq" else cut.input_ids[: cut.labels.count(IGNORE_INDEX)]
    assert len(prompt) == 64 and prompt[-1] == (tokenizer.eos_token_id if arch == "seq2seq" else tokenizer("\n",
                                                add_special_tokens=False)["input_ids"][-1])
    short = long_record("is it ?")
    assert encode_row(Standard().factual_row(short), tokenizer, arch, decoder_start_token_id=start) == encode_row(
        Standard().factual_row(short), tokenizer, arch, decoder_start_token_id=start, input_limit=InputLimit(10**6))


def test_a_training_question_over_the_limit_is_refused_before_the_teacher_stage(make_config):
    from pathlib import Path

    from scd.pipeline import run

    raw = make_config("student.max_input_tokens=40")
    run_dir = Path(raw.paths.output_dir)
    run_dir.mkdir(parents=True)
    with pytest.raises(InputTooLongError, match=r"example '(train|dev) [^']+': the student's input is \d+ tokens, more "
                                                r"than student.max_input_tokens=40"):
        run(*validated(raw), raw, run_dir)
    assert not (run_dir / "rationales").exists()  # the teacher wrote nothing


def test_the_simulators_inputs_are_capped():
    model, tokenizer = tiny_model("seq2seq")
    rows = [SimulatorRow("is it ?", ("yes", "no"), "because " * 600, 0, id="t3")]
    with pytest.raises(InputTooLongError, match=r"example 't3': the simulator's input is \d+ tokens, more than "
                                                r"simulator.max_input_tokens=512"):
        score_choices(model, tokenizer, rows, "e")
    assert len(score_choices(model, tokenizer, rows, "e", input_limit=InputLimit(512, True, "simulator"))[0]) == 2


def test_predict_refuses_a_question_over_the_limit_in_one_line(tmp_path, capsys):
    model, tokenizer = tiny_model("seq2seq")
    model.save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "huge", "question": LONG_QUESTION, "choices": ["yes", "no"]}) + "\n")
    capsys.readouterr()
    # Before: T5's position bias over the whole question, 80 GB asked of the allocator, a traceback.
    with pytest.raises(SystemExit) as exit_info:
        predict_main([str(tmp_path), "--input", str(questions), "--no-progress"])
    assert exit_info.value.code == 1
    # Loading the weights shows transformers' own progress bar: the error is the last line.
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "scd: error: example 'huge': the student's input is 20030 tokens, more than "
                    "student.max_input_tokens=512; raise it, or set student.truncate_inputs=true to cut longer inputs")
    predict_main([str(tmp_path), "--input", str(questions), "--no-progress", "--truncate-inputs",
                  "--max-input-tokens", "32"])
    assert capsys.readouterr().out.startswith("huge: why why")


def test_the_limits_are_settings_with_defaults_that_leave_existing_runs_alone(make_config):
    cfg = validate(make_config())
    assert cfg.student.input_limit() == InputLimit(512, False, "student")
    assert cfg.simulator.input_limit() == InputLimit(512, False, "simulator")
    cfg = validate(make_config("student.max_input_tokens=64", "student.truncate_inputs=true"))
    assert cfg.student.input_limit() == InputLimit(64, True, "student")


# ---------------------------------------------------------------- W&B online without a network


@pytest.fixture
def wandb_logger_built(monkeypatch, tmp_path):
    """``build(reachable)``: the W&B logger build_logger makes with WANDB_MODE=online, the server answering or not;
    no W&B run is started."""
    import requests
    from pytorch_lightning.loggers import WandbLogger

    import scd.loggers as loggers

    monkeypatch.setattr(WandbLogger, "log_hyperparams", lambda self, params: None)
    monkeypatch.setenv("WANDB_MODE", "online")

    def build(reachable: bool) -> WandbLogger:
        def head(url, timeout):
            if not reachable:
                raise requests.ConnectionError("no route to host")

        monkeypatch.setattr(loggers.requests, "head", head)
        return loggers.build_logger(loggers.wandb_logger, tmp_path, {}, None)

    return build


def test_wandb_online_without_a_network_logs_offline_with_one_warning(wandb_logger_built, caplog):
    # Before: about 2 minutes of retries, then a 24-line CommError traceback.
    logger = wandb_logger_built(reachable=False)
    assert logger._wandb_init["mode"] == "offline"
    [warning] = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warning.startswith("W&B online mode: https://") and "does not answer (ConnectionError); logging offline " \
        "instead (`wandb sync " in warning
    # W&B warned on every run that Lightning's anonymous=None is a deprecated setting.
    assert "anonymous" not in logger._wandb_init


def test_wandb_online_with_a_network_stays_online(wandb_logger_built, caplog):
    assert wandb_logger_built(reachable=True)._wandb_init["mode"] == "online"
    assert not [record for record in caplog.records if record.levelname == "WARNING"]


# ---------------------------------------------------------------- threads


JOBLIB = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}


@pytest.mark.parametrize(("launcher", "cores", "jobs"), [
    (None, 2, 1),
    (JOBLIB, 2, 2),
    ({**JOBLIB, "n_jobs": -1}, 4, 4),
    ({**JOBLIB, "n_jobs": -2}, 4, 3),
    ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 2, 1),
])
def test_parallel_jobs_under_each_launcher(launcher, cores, jobs):
    assert parallel_jobs(OmegaConf.create(launcher) if launcher else None, cores) == jobs


def test_threads_are_set_at_start_and_logged(make_config, monkeypatch, caplog):
    # Before: scd never set them; two joblib jobs ran torch with a thread per core each on the same cores.
    caplog.set_level(logging.INFO, logger="scd.cli")
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
        monkeypatch.setattr(psutil, "cpu_percent", lambda interval, percpu: [0.0] * 4)  # idle cores
        assert apply_threads(None) == 4 and torch.get_num_threads() == 4
        assert apply_threads(validate(make_config("threads=3")).threads) == 3 and torch.get_num_threads() == 3
        # A user's or scheduler's OMP_NUM_THREADS is the default's choice; threads= still wins over it.
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert apply_threads(None) == 2 and apply_threads(3) == 3
    finally:
        torch.set_num_threads(before)
    assert [r.getMessage().split("; OpenMP ")[0] for r in caplog.records if r.name == "scd.cli"] == [
        "torch threads: 4 (4 cores for this process / 1 parallel jobs, 0 kept busy by other processes at start; set "
        "threads= to fix it (a study should: the thread count changes the numbers))",
        "torch threads: 3 (threads)", "torch threads: 2 (OMP_NUM_THREADS)", "torch threads: 3 (threads)"]
    with pytest.raises(ValueError, match=r"^threads must be >= 1 or null, got 0$"):
        validate(make_config("threads=0"))


# ---------------------------------------------------------------- the benchmark runs


@pytest.mark.slow
def test_the_thread_benchmark_measures_the_teacher_build_step():
    """benchmarks/threads.py (case 15) trains the default ToyWorld teacher in spawned processes; two steps each."""
    result = subprocess.run([sys.executable, "benchmarks/threads.py", "--steps", "2", "--warmup", "1", "--processes",
                             "1", "2", "--neighbours"],  # no neighbours: tests/test_reliability_round4.py runs those
                            cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    cores = len(os.sched_getaffinity(0))
    assert measured["steps"] == 2 and measured["cores"] == cores
    rates = measured["steps_per_s_all_processes"]
    assert set(rates) == {"before_1", "after_1", "before_2", "after_2"} and measured["beside"] == {}
    assert all(rate > 0 for rate in rates.values())
    assert rates["after_1"] == rates["before_1"]  # one process: the default gives it every core, as before
    assert f"| after | 2 | {max(1, cores // 2)} |" in result.stdout


@pytest.mark.slow
def test_the_benchmark_runs_through_the_objective_api():
    # Before: every decoding measured, then `encode_row() got an unexpected keyword argument 'counterfactual'` in
    # the student step, and no test noticed.
    result = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--threads", "1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    ratios = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(ratios) == {"cd_vs_loop", "cd_vs_hf_cfg", "cd_cost_vs_greedy", "train_vs_ref", "shared_prefix_speedup",
                           "merged_vs_separate", "flip_rate_vs_loop", "flip_rate_vs_hf_cfg",
                           "flip_rate_vs_scd_no_prefix"}
    assert all(isinstance(value, float) and value >= 0 for value in ratios.values())
    assert ratios["train_vs_ref"] > 0
    step = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("student step: "))
                      .removeprefix("student step: "))
    assert step["first_step_loss_abs_diff"] < 1e-4  # the fused step and the reference train the same loss


# ---------------------------------------------------------------- case 14: an interrupted sweep's count


def test_an_interrupted_sweep_counts_the_jobs_its_command_asked_for(tmp_path, capsys):
    # Before: "1 of 1 jobs failed" for a sweep of 2 interrupted in job 0.
    import signal

    from scd.cli import planned_jobs, summarize_sweep
    from scd.signals import Interrupted

    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - experiment=smoke\n    - seed=0,1,2\n    - decoding=greedy,contrast_wrong\n")
    assert planned_jobs(tmp_path) == 6
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / ".hydra" / "config.yaml").write_text(
        "seed: 0\ndecoding:\n  name: greedy\ntraining:\n  mode: standard\nstudent:\n  name: tiny\n")
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("- seed=0\n- decoding=greedy\n")
    (tmp_path / "0" / "status.json").write_text('{"status": "interrupted", "error": "interrupted by SIGTERM"}')
    assert summarize_sweep(tmp_path, Interrupted(signal.SIGTERM)) is False
    line = capsys.readouterr().err.strip()
    assert "interrupted by SIGTERM: 1 of 6 jobs started, 1 did not complete: job 0 (interrupted by SIGTERM)" in line
    assert planned_jobs(tmp_path / "missing") is None


# ---------------------------------------------------------------- case 14b: metrics that vanished


@pytest.mark.slow
def test_an_unmeasurable_fluency_reads_nan_and_an_evaluate_only_run_keeps_the_stage_times(tmp_path):
    # Before: with every rationale empty, teacher/fluency was left out of metrics.json without a word; an
    # evaluate-only run rewrote metrics.json without the teacher's and the student's times.
    env = {**os.environ, "SCD_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    run_dir = tmp_path / "run"
    common = [sys.executable, "run.py", "experiment=smoke", f"hydra.run.dir={run_dir}", "logger=csv"]
    # lam=1 removes everything the empty-answer prompt also predicts: the smoke teacher writes only empty rationales.
    first = subprocess.run([*common, "decoding=contrast_empty", "decoding.lam=1"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "teacher/fluency" in metrics and metrics["teacher/fluency"] != metrics["teacher/fluency"]  # NaN
    assert "teacher/fluency not measured: every test rationale is empty" in first.stderr + first.stdout
    again = subprocess.run([*common, "decoding=contrast_empty", "decoding.lam=1", "stages=[evaluate]"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    evaluated = json.loads((run_dir / "metrics.json").read_text())
    assert {key: evaluated[key] for key in ("time/teacher_s", "time/student_s")} == {
        key: metrics[key] for key in ("time/teacher_s", "time/student_s")}


def test_an_evaluate_only_run_keeps_the_hyperparameters_of_the_run_that_trained(tmp_path):
    """Case 14b: csv/hparams.yaml is written once per run directory; later runs in it (evaluate-only, resumed) append
    their metrics but do not replace it."""
    from scd.loggers import build_logger, csv_logger

    first = build_logger(csv_logger, tmp_path, {"stages": ["teacher", "student", "evaluate"]}, None)
    first.log_metrics({"val/loss": 1.0}, step=0)
    first.save()
    hparams = tmp_path / "csv" / "hparams.yaml"
    written = hparams.read_text()
    assert "student" in written
    again = build_logger(csv_logger, tmp_path, {"stages": ["evaluate"]}, None)
    again.log_metrics({"student/accuracy": 0.5}, step=1)
    again.save()
    assert hparams.read_text() == written
    assert (tmp_path / "csv" / "metrics.csv").read_text().count("\n") == 3  # header and both rows
