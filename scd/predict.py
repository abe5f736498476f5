"""Ask a distilled student: ``python -m scd.predict <run or student dir> (--input FILE | --question Q --choices ...)``.

The student writes its rationale and answer for each question, as in evaluation (greedy, batched). A question that
comes with a rationale (``--rationale``, or a ``rationale`` field in the input file) is the counterfactual probe: the
rationale is given as the student's answer prefix ``"{tag} {rationale} So the answer is"``, the format of a
counterfactual row, and the student only writes the answer, so one can see whether the answer follows the rationale.
Like ``student/counterfactual_consistency`` it uses the factual tag unless ``--counterfactual-tag`` asks for the tag
the counterfactual objective trains with.

Input file: JSON lines with ``question`` and ``choices`` (two or more strings), and optionally ``id``, ``answer``
(the gold choice, as index or text), ``rationale`` and ``rationale_for`` (the choice the rationale argues for), so a
run's ``rationales/test_counterfactual.jsonl`` is a valid input. Output: one line per question on the terminal, and
with ``--output`` a JSON line per question (rationale, raw output, the parsed choice and its text).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from scd.cli import one_line
from scd.data.choices import SAME_AS_PARSED, near_duplicate
from scd.io import atomic_write_text, decode_utf8, json_object_lines
from scd.models import (
    ADAPTER_CONFIG,
    Arch,
    InputLimit,
    inference_device,
    load_model,
    load_tokenizer,
    model_config_source,
)
from scd.student.evaluate import generate_continuations, prompt_ids, rationale_prefix_ids
from scd.student.formatting import (
    TAG_MODES,
    TagMode,
    extract_rationale,
    format_rationale_prefix,
    parse_answer,
    task_tag,
)

# What evaluation gives the student for its own rationale and for an answer after a rationale (StudentConfig's
# max_new_tokens, StudentAnswerer's answer_max_new_tokens), where the run's config does not say.
MAX_NEW_TOKENS = 128
ANSWER_MAX_NEW_TOKENS = 16


class PredictError(ValueError):
    """Bad input to scd.predict: names the file, line and field, or the option."""


@dataclass
class Question:
    """One question to answer; ``rationale`` given makes it a counterfactual probe."""

    id: str
    question: str
    choices: list[str]
    gold: int | None = None
    rationale: str | None = None
    rationale_for: int | None = None


@dataclass
class Student:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    arch: Arch
    tags: TagMode
    max_new_tokens: int
    source: Path
    input_limit: InputLimit = InputLimit()


def _choice_index(value: Any, choices: list[str], where: str, name: str) -> int:
    """A choice given as its index or its text."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
        return value
    if isinstance(value, str) and value in choices:
        return choices.index(value)
    # The command line gives an index as text (--answer 0).
    if isinstance(value, str) and value.isdigit() and int(value) < len(choices):
        return int(value)
    raise PredictError(f"{where}: field {name!r} must be one of the choices (index or text), got {value!r}")


def make_question(fields: dict[str, Any], where: str, default_id: str) -> Question:
    """Check one question's fields (from a file line or the command line) and build it."""
    question = fields.get("question")
    if not isinstance(question, str) or not question.strip():
        raise PredictError(f"{where}: field 'question' must be a non-empty string, got {question!r}")
    choices = fields.get("choices")
    if choices is None:
        raise PredictError(f"{where}: field 'choices' is missing: the student answers by naming one of the choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise PredictError(f"{where}: field 'choices' must be a list of at least two non-empty strings")
    pair = near_duplicate(choices)
    if pair is not None:
        first, second = (choices[index] for index in pair)
        raise PredictError(f"{where}: field 'choices': duplicate choice {second!r} "
                           f"(same as {first!r} {SAME_AS_PARSED})")
    rationale = fields.get("rationale")
    if rationale is not None and not isinstance(rationale, str):
        raise PredictError(f"{where}: field 'rationale' must be a string, got {rationale!r}")
    if fields.get("rationale_for") is not None and rationale is None:
        raise PredictError(f"{where}: field 'rationale_for' needs a 'rationale'")
    indices = {name: _choice_index(fields[name], choices, where, name) if fields.get(name) is not None else None
               for name in ("answer", "rationale_for")}
    return Question(str(fields.get("id", default_id)), question, choices, indices["answer"], rationale,
                    indices["rationale_for"])


def read_questions(path: Path) -> list[Question]:
    """The questions of a JSON lines file (``-``: standard input; a FIFO or ``/dev/stdin`` is read as it comes); a
    bad line raises PredictError naming the file and line."""
    if str(path) == "-":
        data = sys.stdin.buffer.read()
    elif path.is_dir():
        raise PredictError(f"{path}: is a directory, not a JSON-lines file of questions")
    elif not path.exists():
        raise PredictError(f"{path}: no such input file")
    else:
        data = path.read_bytes()
    questions = []
    for line, fields in json_object_lines(path, decode_utf8(path, data, PredictError), PredictError):
        questions.append(make_question(fields, f"{path}, {line}", default_id=line.removeprefix("line ")))
    if not questions:
        raise PredictError(f"{path}: no questions in the file")
    return questions


def load_student(path: Path, tags: TagMode | None = None, max_input_tokens: int | None = None,
                 truncate_inputs: bool = False) -> Student:
    """The student in ``path``: a run directory (its ``student/``) or a directory written by ``save_pretrained``.
    Tags, generation length and the input limit come from the arguments, else from the run's config where there is
    one, else the defaults."""
    student_dir = path / "student" if (path / "student").is_dir() else path
    if not any((student_dir / name).is_file() for name in ("config.json", ADAPTER_CONFIG)):
        raise PredictError(f"{path}: no student here (expected a run directory with student/, or a directory "
                           "written by save_pretrained holding config.json)")
    config_path = student_dir.parent / ".hydra" / "config.yaml"
    try:
        run_config = OmegaConf.load(config_path) if config_path.is_file() else None
    except Exception as error:  # yaml's own errors, with the line number
        raise PredictError(f"{config_path}: cannot parse: {' '.join(str(error).split())}") from error

    def from_run(key: str, default: Any) -> Any:
        value = OmegaConf.select(run_config, key, default=None) if run_config is not None else None
        return default if value is None else value

    tags = tags or from_run("training.tags", "distinct")
    trust_remote_code = bool(from_run("student.trust_remote_code", False))
    config = AutoConfig.from_pretrained(model_config_source(str(student_dir)))
    arch: Arch = "seq2seq" if config.is_encoder_decoder else "causal"
    tokenizer = load_tokenizer(str(student_dir), trust_remote_code=trust_remote_code)
    model = load_model(arch, tokenizer, name_or_path=str(student_dir), trust_remote_code=trust_remote_code)
    model = model.to(inference_device("auto")).eval()
    input_limit = InputLimit(int(max_input_tokens or from_run("student.max_input_tokens", InputLimit.max_tokens)),
                             truncate_inputs or bool(from_run("student.truncate_inputs", False)))
    return Student(model, tokenizer, arch, tags, int(from_run("student.max_new_tokens", MAX_NEW_TOKENS)), student_dir,
                   input_limit)


def given_rationale_ids(student: Student, question: Question, tag: str) -> list[int]:
    """The given rationale as the student's answer prefix, held to the student's input limit; never cut, since the
    answer cue that ends it must stay."""
    ids = rationale_prefix_ids(student.tokenizer, question.rationale, tag)
    if len(ids) > student.input_limit.max_tokens:
        raise PredictError(f"example {question.id!r}: the given rationale is {len(ids)} tokens, more than the "
                           f"student's input limit ({student.input_limit.max_tokens}); shorten it or raise "
                           "--max-input-tokens")
    return ids


def predict(student: Student, questions: Sequence[Question], *, batch_size: int = 16,
            counterfactual_tag: bool = False, show_progress: bool = True) -> list[dict[str, Any]]:
    """One result per question, in order: the rationale (the student's own, or the given one), the raw output, the
    parsed choice (None when unparsable) and its text; ``correct`` where the gold answer is known and
    ``follows_rationale`` where the choice the given rationale argues for is known."""
    s = student
    own_tag, given_tag = task_tag(s.tags, False), task_tag(s.tags, counterfactual_tag)
    own = [i for i, q in enumerate(questions) if q.rationale is None]
    given = [i for i, q in enumerate(questions) if q.rationale is not None]
    outputs = [""] * len(questions)
    if own:
        texts = generate_continuations(
            s.model, s.tokenizer, s.arch,
            [prompt_ids(s.tokenizer, s.arch, questions[i].question, questions[i].choices, own_tag,
                        example_id=questions[i].id, input_limit=s.input_limit) for i in own],
            [[] for _ in own], max_new_tokens=s.max_new_tokens, batch_size=batch_size, desc="predict",
            show_progress=show_progress,
        )
        for i, text in zip(own, texts):
            outputs[i] = text
    if given:
        answers = generate_continuations(
            s.model, s.tokenizer, s.arch,
            [prompt_ids(s.tokenizer, s.arch, questions[i].question, questions[i].choices, given_tag,
                        example_id=questions[i].id, input_limit=s.input_limit) for i in given],
            [given_rationale_ids(s, questions[i], given_tag) for i in given],
            max_new_tokens=ANSWER_MAX_NEW_TOKENS, batch_size=batch_size, desc="predict (given rationales)",
            show_progress=show_progress,
        )
        # The raw output is the whole target, the given prefix included, so one parser reads both kinds.
        for i, text in zip(given, answers):
            outputs[i] = f"{format_rationale_prefix(questions[i].rationale, given_tag)} {text.strip()}"
    results = []
    for q, output in zip(questions, outputs):
        predicted = parse_answer(output, q.choices)
        row: dict[str, Any] = {
            "id": q.id, "question": q.question, "choices": q.choices,
            "rationale": q.rationale.strip() if q.rationale is not None else extract_rationale(output),
            "rationale_given": q.rationale is not None, "output": output.strip(), "predicted": predicted,
            "predicted_text": q.choices[predicted] if predicted is not None else None,
        }
        if q.gold is not None:
            row.update(gold=q.gold, correct=predicted == q.gold)
        if q.rationale_for is not None:
            row.update(rationale_for=q.rationale_for, follows_rationale=predicted == q.rationale_for)
        results.append(row)
    return results


def describe(row: dict[str, Any]) -> str:
    """One terminal line for a result."""
    answer = row["predicted_text"] if row["predicted"] is not None else "(no parsable answer)"
    parts = [f"{row['id']}: {row['question']} [{' | '.join(row['choices'])}] -> {answer}"]
    if row["rationale_given"]:
        argued = f" for {row['choices'][row['rationale_for']]}" if "rationale_for" in row else ""
        parts.append(f"given rationale{argued}: {row['rationale']}")
        if "follows_rationale" in row:
            parts.append("follows the rationale" if row["follows_rationale"] else "does NOT follow the rationale")
    else:
        parts.append(f"rationale: {row['rationale']}")
    if "gold" in row:
        parts.append(f"gold {row['choices'][row['gold']]}: {'correct' if row['correct'] else 'wrong'}")
    return " | ".join(parts)


def writes_to_stdout(path: Path) -> bool:
    """Whether ``path`` is ``-`` or names what standard output is (``/dev/stdout``, its terminal or pipe)."""
    if str(path) == "-":
        return True
    try:
        return path.exists() and os.path.samestat(path.stat(), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):  # a standard output without a file descriptor (captured)
        return False


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scd.predict", description=__doc__.splitlines()[0])
    parser.add_argument("student", type=Path, help="a run directory (uses its student/) or a student directory")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="JSON lines of questions (question, choices, optional id, "
                        "answer, rationale, rationale_for); - reads standard input")
    source.add_argument("--question", help="one question, with --choices")
    parser.add_argument("--choices", nargs="+", metavar="CHOICE", help="the question's choices (two or more)")
    parser.add_argument("--rationale", help="with --question: answer after this rationale (the counterfactual probe)")
    parser.add_argument("--rationale-for", metavar="CHOICE", help="with --rationale: the choice it argues for, to "
                        "tell whether the answer follows it")
    parser.add_argument("--answer", metavar="CHOICE", help="with --question: the gold choice, to mark the answer")
    parser.add_argument("--output", type=Path, help="write one JSON line per question here (- or /dev/stdout: to "
                        "standard output, the one-line descriptions then going to stderr)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tags", choices=TAG_MODES, help="the task tags the student was trained with (default: "
                        "the run's training.tags, else distinct)")
    parser.add_argument("--counterfactual-tag", action="store_true", help="give rationales under the "
                        "counterfactual task tag the counterfactual objective trains with")
    parser.add_argument("--max-input-tokens", type=int, help="refuse a question (or given rationale) longer than "
                        "this many tokens (default: the run's student.max_input_tokens, else 512)")
    parser.add_argument("--truncate-inputs", action="store_true", help="cut a longer question to --max-input-tokens "
                        "instead of refusing it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.question is None:
        extra = [name for name in ("choices", "rationale", "rationale_for", "answer") if getattr(args, name)]
        if extra:
            parser.error(f"--{extra[0].replace('_', '-')} goes with --question; an --input file holds it per line")
    for option in ("batch_size", "max_input_tokens"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.no_progress:
        hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar too
    try:
        if (args.input is not None and args.output is not None and args.input.is_file() and args.output.is_file()
                and args.output.samefile(args.input)):
            raise PredictError(f"--output {args.output} is the --input file: the answers would replace the questions; "
                               "write them to another file")
        if args.input is not None:
            questions = read_questions(args.input)
        else:
            if args.choices is None:
                raise PredictError("--question needs --choices: the student answers by naming one of them")
            fields = {"question": args.question, "choices": args.choices, "rationale": args.rationale,
                      "rationale_for": args.rationale_for, "answer": args.answer}
            questions = [make_question(fields, "command line", default_id="1")]
        student = load_student(args.student, args.tags, args.max_input_tokens, args.truncate_inputs)
        results = predict(student, questions, batch_size=args.batch_size, counterfactual_tag=args.counterfactual_tag,
                          show_progress=not args.no_progress)
        # With the JSON lines on standard output, the one-line descriptions go to stderr, so that stdout stays JSON.
        to_stdout = args.output is not None and writes_to_stdout(args.output)
        for row in results:
            print(describe(row), file=sys.stderr if to_stdout else sys.stdout)
        jsonl = "".join(json.dumps(row) + "\n" for row in results)
        if args.output is not None and str(args.output) == "-":
            sys.stdout.write(jsonl)
        elif args.output is not None:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.output, jsonl)
    except (ValueError, OSError) as err:
        print(f"scd: error: {one_line(err)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
