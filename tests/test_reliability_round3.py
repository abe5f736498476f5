"""Issue 20, reliability round three: each case as the user met it, and what they get now."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scd.cli import main_task
from scd.data.formats import DataFormatError, read_examples
from scd.predict import PredictError, main as predict_main, make_question
from scd.student.formatting import parse_answer


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
        read_examples(path, "commonsenseqa")
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
    assert read_examples(path, "commonsenseqa")[0].choices == ("can't", "cant", "new york city")


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
    ("+decoding.lamda=0.5", "unknown key decoding.lamda (not in DecodingConfig); did you mean decoding.lam?"),
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
    from scd.config import validate
    from scd.student.stage import check_student_trainer, check_validation_interval

    for overrides, questions in [(["trainer.val_check_interval=2"], 8), (["trainer.val_check_interval=50",
                                  "trainer.check_val_every_n_epoch=null"], 8), (["trainer.val_check_interval=0.5"], 1)]:
        cfg = validate(make_config(*overrides))
        check_validation_interval(check_student_trainer(cfg, Path(cfg.paths.output_dir)), questions, 4)
    cfg = validate(make_config("trainer.val_check_interval=3"))
    with pytest.raises(ValueError, match=r"at most 2 training batches \(8 training questions in batches of "
                                         r"student.batch_size=4\); use at most 2"):
        check_validation_interval(check_student_trainer(cfg, Path(cfg.paths.output_dir)), 8, 4)
