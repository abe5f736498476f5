"""``python -m scd.predict``: tiny random-init students saved to disk, asked from the command line and from files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import scd.predict as predict_module
import scd.student.evaluate as evaluation
from scd.models import load_model, load_tokenizer
from scd.predict import Question, load_student, main, predict
from scd.data.records import read_split
from scd.evaluation.answers import answer_metrics
from scd.student.evaluate import StudentAnswerer
from tests.conftest import ROOT, TINY_STUDENTS

FIXTURES = ROOT / "tests" / "fixtures" / "student" / "rationales"


# Large initial weights make a random model's output depend on its prompt (default ones make it ignore the prompt).
SPREAD_INIT = {"seq2seq": {"initializer_factor": 20.0}, "causal": {"initializer_range": 1.0}}


@pytest.fixture(scope="module", params=["seq2seq", "causal"])
def student_dir(request, tmp_path_factory) -> Path:
    """A run directory as the pipeline leaves it: ``student/`` (save_pretrained) and ``.hydra/config.yaml``."""
    run_dir = tmp_path_factory.mktemp(f"run-{request.param}")
    tokenizer = load_tokenizer("byt5")
    model = load_model(request.param, tokenizer,
                       random_init={**TINY_STUDENTS[request.param], **SPREAD_INIT[request.param]})
    model.save_pretrained(run_dir / "student")
    tokenizer.save_pretrained(run_dir / "student")
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("training:\n  tags: distinct\nstudent:\n  max_new_tokens: 12\n")
    return run_dir


@pytest.fixture
def generator_inputs(monkeypatch) -> dict[str, tuple]:
    """What evaluation and predict hand the generator, by progress-bar name: (prompts, prefixes) token ids."""
    seen: dict[str, tuple] = {}
    real = evaluation.generate_continuations

    def recording(model, tokenizer, arch, prompts, prefixes, *, desc, **kwargs):
        seen[desc] = (prompts, prefixes)
        return real(model, tokenizer, arch, prompts, prefixes, desc=desc, **kwargs)

    monkeypatch.setattr(evaluation, "generate_continuations", recording)
    monkeypatch.setattr(predict_module, "generate_continuations", recording)
    return seen


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def error_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_run_directory_gives_its_student_with_the_run_settings(student_dir):
    student = load_student(student_dir)
    assert student.source == student_dir / "student"
    assert student.arch == ("seq2seq" if "seq2seq" in student_dir.name else "causal")
    assert (student.tags, student.max_new_tokens) == ("distinct", 12)
    assert load_student(student_dir / "student", tags="shared").tags == "shared"
    assert not student.model.training


def answerer(student, max_new_tokens: int) -> StudentAnswerer:
    """Evaluation's answerer for the student ``load_student`` gives."""
    return StudentAnswerer(student.model, student.tokenizer, student.arch, tags="distinct",
                           max_new_tokens=max_new_tokens, show_progress=False)


def test_own_answers_are_those_evaluation_writes(student_dir, tmp_path, generator_inputs):
    """The same tokens in as evaluation's own-rationale pass, and so the same outputs and parsed answers."""
    student = load_student(student_dir)
    test = read_split(FIXTURES, "test")
    _, evaluated = answer_metrics(answerer(student, student.max_new_tokens), test, perturb_share=0.3, seed=0)
    questions = [Question(r.id, r.question, r.choices, r.answer) for r in test]
    rows = predict(student, questions, batch_size=3, show_progress=False)
    assert generator_inputs["predict"] == generator_inputs["student rationales"]
    assert [row["output"] for row in rows] == [row["output"].strip() for row in evaluated]
    assert [row["predicted"] for row in rows] == [row["predicted"] for row in evaluated]
    assert [row["rationale"] for row in rows] == [row["rationale"] for row in evaluated]
    # The check can fail: without the task tag the student gets other tokens (and the causal one, whose bytes
    # decode to text, writes something else).
    student.tags = "none"
    untagged = predict(student, questions, batch_size=3, show_progress=False)
    assert generator_inputs["predict"][0] != generator_inputs["student rationales"][0]
    if student.arch == "causal":
        assert [row["output"] for row in untagged] != [row["output"] for row in rows]


def test_given_rationales_are_encoded_as_in_counterfactual_consistency(student_dir, tmp_path, generator_inputs):
    """Evaluation's counterfactual answers and predict on test_counterfactual.jsonl give the model the same tokens;
    --counterfactual-tag gives it the counterfactual rows' tag instead."""
    student = load_student(student_dir)
    test, counter = read_split(FIXTURES, "test"), read_split(FIXTURES, "test_counterfactual")
    _, evaluated_rows = answer_metrics(answerer(student, 4), test, counter, perturb_share=0.3, seed=0)
    questions = predict_module.read_questions(FIXTURES / "test_counterfactual.jsonl")
    rows = predict(student, questions, show_progress=False)
    assert generator_inputs["predict (given rationales)"] == generator_inputs["counterfactual answers"]
    evaluated = {row["id"]: row for row in evaluated_rows}
    assert [row["predicted"] for row in rows] == [evaluated[r.id]["counterfactual_predicted"] for r in counter]
    assert all(row["rationale_given"] and row["rationale_for"] == r.rationale_for for row, r in zip(rows, counter))
    predict(student, questions, counterfactual_tag=True, show_progress=False)
    prompts, prefixes = generator_inputs["predict (given rationales)"]
    assert prompts != generator_inputs["counterfactual answers"][0]
    assert prefixes != generator_inputs["counterfactual answers"][1]
    assert student.tokenizer.decode(prefixes[0]).startswith("[counterfactual] every wug can swim")


def test_answers_are_parsed_and_judged_against_gold_and_the_given_rationale(student_dir, monkeypatch):
    scripted = {
        "predict": ["[factual] birds have wings . So the answer is yes.", "[factual] no idea"],
        "predict (given rationales)": [" no.", "yes."],
    }
    monkeypatch.setattr(predict_module, "generate_continuations",
                        lambda model, tokenizer, arch, prompts, prefixes, *, desc, **kw: scripted[desc])
    questions = [
        Question("a", "can birds fly ?", ["yes", "no"], gold=0),
        Question("b", "penguins fly ?", ["yes", "no"], rationale="penguins cannot fly .", rationale_for=1),
        Question("c", "is it cold ?", ["yes", "no"]),
        Question("d", "is ice hot ?", ["yes", "no"], gold=1, rationale="ice is hot .", rationale_for=1),
    ]
    rows = predict(load_student(student_dir), questions, show_progress=False)
    assert [(row["id"], row["predicted"], row["predicted_text"]) for row in rows] == [
        ("a", 0, "yes"), ("b", 1, "no"), ("c", None, None), ("d", 0, "yes")]
    assert rows[0]["rationale"] == "birds have wings ." and rows[0]["correct"] is True
    assert rows[1]["output"] == "[factual] penguins cannot fly . So the answer is no."
    assert rows[1]["follows_rationale"] is True and "correct" not in rows[1]
    assert rows[3]["follows_rationale"] is False and rows[3]["correct"] is False
    assert predict_module.describe(rows[1]) == (
        "b: penguins fly ? [yes | no] -> no | given rationale for no: penguins cannot fly . | follows the rationale")
    assert predict_module.describe(rows[2]) == (
        "c: is it cold ? [yes | no] -> (no parsable answer) | rationale: no idea")
    assert predict_module.describe(rows[3]).endswith("does NOT follow the rationale | gold no: wrong")


def test_command_line_question_prints_one_line_and_writes_jsonl(student_dir, tmp_path, capsys):
    output = tmp_path / "out" / "answers.jsonl"
    main([str(student_dir), "--question", "can birds fly ?", "--choices", "yes", "no", "--answer", "yes",
          "--output", str(output), "--no-progress"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("1: can birds fly ? [yes | no] -> ")
    [row] = [json.loads(line) for line in output.read_text().splitlines()]
    assert row["question"] == "can birds fly ?" and row["gold"] == 0 and row["rationale_given"] is False
    main([str(student_dir), "--question", "can birds fly ?", "--choices", "yes", "no", "--rationale",
          "birds cannot fly .", "--rationale-for", "no", "--no-progress"])
    line = capsys.readouterr().out.strip()
    assert "given rationale for no: birds cannot fly ." in line and "follow" in line


def test_input_file_in_batches_with_a_progress_bar(student_dir, tmp_path):
    questions = write_lines(tmp_path / "q.jsonl", [
        {"id": f"q{i}", "question": f"is {i} even ?", "choices": ["yes", "no"], "answer": i % 2} for i in range(5)
    ] + ["", {"question": "which ?", "choices": ["a", "b", "c"], "rationale": "a is .", "rationale_for": "a"}])
    output = tmp_path / "answers.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "scd.predict", str(student_dir), "--input", str(questions), "--output", str(output),
         "--batch-size", "2"], cwd=ROOT, capture_output=True, text=True, check=True,
    )
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["q0", "q1", "q2", "q3", "q4", "7"]
    assert "predict: 100%" in result.stderr and "3/3" in result.stderr  # 5 own questions in batches of 2
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["id"] for row in rows] == ["q0", "q1", "q2", "q3", "q4", "7"]
    assert rows[5]["rationale_given"] and rows[5]["rationale"] == "a is ." and rows[5]["rationale_for"] == 0


@pytest.mark.parametrize(("line", "message"), [
    ('{"question": "q", "choices": ["a", "b"', "line 2: malformed JSON (Expecting ',' delimiter at column 39)"),
    ('["q", ["a", "b"]]', "line 2: expected a JSON object, got list"),
    ('{"question": "q"}', "line 2: field 'choices' is missing: the student answers by naming one of the choices"),
    ('{"question": "q", "choices": ["a"]}', "line 2: field 'choices' must be a list of at least two non-empty strings"),
    ('{"choices": ["a", "b"]}', "line 2: field 'question' must be a non-empty string, got None"),
    ('{"question": "q", "choices": ["a", "b"], "answer": 2}',
     "line 2: field 'answer' must be one of the choices (index or text), got 2"),
    ('{"question": "q", "choices": ["a", "b"], "rationale_for": "a"}',
     "line 2: field 'rationale_for' needs a 'rationale'"),
])
def test_a_bad_input_line_is_named_in_one_error_line(student_dir, tmp_path, capsys, line, message):
    path = write_lines(tmp_path / "q.jsonl", [{"question": "fine ?", "choices": ["a", "b"]}, line])
    assert error_line(capsys, [str(student_dir), "--input", str(path)]) == f"scd: error: {path}, {message}"


def test_bad_command_lines_end_in_one_error_line(student_dir, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert error_line(capsys, [str(missing), "--question", "q", "--choices", "a", "b"]) == (
        f"scd: error: {missing}: no student here (expected a run directory with student/, or a directory written "
        "by save_pretrained holding config.json)")
    assert error_line(capsys, [str(student_dir), "--question", "q"]) == (
        "scd: error: --question needs --choices: the student answers by naming one of them")
    no_file = error_line(capsys, [str(student_dir), "--input", str(missing)])
    assert no_file == f"scd: error: {missing}: no such input file"
    assert error_line(capsys, [str(student_dir), "--question", "q", "--choices", "a", "b", "--rationale", "r",
                               "--rationale-for", "c"]) == (
        "scd: error: command line: field 'rationale_for' must be one of the choices (index or text), got 'c'")
    with pytest.raises(SystemExit) as usage:
        main([str(student_dir), "--input", str(missing), "--rationale", "r"])
    assert usage.value.code == 2  # argparse's status: --rationale goes with --question
