"""Readers for the official data set formats, each normalizing one row (a dict) to an ``Example``. A format is a
row normalizer registered with ``@data_format`` (its name, ``dataset.format``, and how its files split into rows).

A row normalizer takes a plain dict, so files and Hugging Face hub rows share it. Hub rows differ from the
official files in a few known ways (CommonsenseQA/QASC put the choices in a column of parallel ``label``/``text``
lists, CoS-E gives a choice list and the answer text); the normalizers accept both layouts.

Every problem raises ``DataFormatError`` with one line naming the file, the line (or list element) and the field.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scd.data.choices import SAME_AS_PARSED, near_duplicate
from scd.data.example import Example
from scd.io import decode_utf8, json_object_lines

log = logging.getLogger(__name__)
# Explanation cells that stand for "no explanation" (CREAK's contrast set has "n/a" on every row): read as missing.
PLACEHOLDER_EXPLANATIONS = frozenset({"", "-", "n/a", "na", "none", "null"})
# CoS-E CSV explanation columns: Hase et al.'s files, then the LAS authors' (whose reader accepts both).
COSE_EXPLANATION_COLUMNS = ("human_exp", "human_expl_open-ended")


class DataFormatError(ValueError):
    """A data file (or hub split) that cannot be read as the data set format it was given as."""


class _FieldError(Exception):
    """Raised by a row normalizer; the caller knows the file and line and turns it into a DataFormatError."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


Row = Mapping[str, Any]
Normalizer = Callable[[Row], Example]
# (location such as "line 3", row) pairs: the location goes into error messages.
LocatedRows = Iterable[tuple[str, Row]]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _get(row: Row, name: str, field: str | None = None) -> Any:
    if name not in row or row[name] is None:
        raise _FieldError(field or name, "missing")
    return row[name]


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _FieldError(field, f"expected a non-empty string, got {_short(value)}")
    return value.strip()


def _text(row: Row, name: str, field: str | None = None) -> str:
    return _string(_get(row, name, field), field or name)


def _list(row: Row, name: str, field: str | None = None) -> list[Any]:
    value = _get(row, name, field)
    if not isinstance(value, list):
        raise _FieldError(field or name, f"expected a list, got {_short(value)}")
    return value


def _id(row: Row, name: str) -> str:
    value = _get(row, name)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise _FieldError(name, f"expected a non-empty id, got {_short(value)}")
    return str(value).strip()


def _explanation(row: Row, *names: str) -> str | None:
    """The first of the columns ``names`` the row has, stripped; None where it is absent, empty or a placeholder."""
    for name in names:
        if row.get(name) is not None:
            text = _string_or_empty(row[name], name)
            return None if text.casefold() in PLACEHOLDER_EXPLANATIONS else text
    return None


def _string_or_empty(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _FieldError(field, f"expected a string, got {_short(value)}")
    return value.strip()


def _labeled_choices(row: Row) -> tuple[str, list[str], list[str], list[str]]:
    """Question stem, choice labels, choice texts and the texts' field names of a CommonsenseQA/QASC row, file or hub
    layout."""
    question = _get(row, "question")
    if isinstance(question, Mapping):  # official files: {"stem", "choices": [{"label", "text"}, ...]}
        stem = _text(question, "stem", "question.stem")
        labels, texts = [], []
        for i, choice in enumerate(_list(question, "choices", "question.choices")):
            if not isinstance(choice, Mapping):
                raise _FieldError(f"question.choices[{i}]", f"expected an object, got {_short(choice)}")
            labels.append(_text(choice, "label", f"question.choices[{i}].label"))
            texts.append(_text(choice, "text", f"question.choices[{i}].text"))
        return stem, labels, texts, [f"question.choices[{i}].text" for i in range(len(texts))]
    # Hub layout: question is the stem, choices is {"label": [...], "text": [...]}.
    stem = _text(row, "question")
    choices = _get(row, "choices")
    if not isinstance(choices, Mapping):
        raise _FieldError("choices", f"expected {{'label': [...], 'text': [...]}}, got {_short(choices)}")
    labels = [_string(label, f"choices.label[{i}]") for i, label in enumerate(_list(choices, "label", "choices.label"))]
    texts = [_string(text, f"choices.text[{i}]") for i, text in enumerate(_list(choices, "text", "choices.text"))]
    if len(labels) != len(texts):
        raise _FieldError("choices", f"{len(labels)} labels but {len(texts)} texts")
    return stem, labels, texts, [f"choices.text[{i}]" for i in range(len(texts))]


def _answer_key(row: Row, labels: list[str]) -> int:
    key = row.get("answerKey")
    if key is None or (isinstance(key, str) and not key.strip()):
        raise _FieldError("answerKey", "missing: unlabeled data (such as an official test file) cannot be used, "
                                       "labels are needed")
    key = str(key).strip()
    if key not in labels:
        raise _FieldError("answerKey", f"{key!r} is not among the choice labels {', '.join(labels)}")
    return labels.index(key)


def _choices(texts: list[str], fields: list[str], field: str) -> tuple[str, ...]:
    """At least two choices, no two alike (an answer naming one of two equal choices cannot be scored): ``fields``
    names each choice's field, ``field`` the choices as a whole."""
    if len(texts) < 2:
        raise _FieldError(field, f"needs at least two choices, got {len(texts)}")
    pair = near_duplicate(texts)
    if pair is not None:
        first, second = pair
        raise _FieldError(fields[second], f"duplicate choice {_short(texts[second])} (same as {_short(texts[first])} "
                                          f"in {fields[first]} {SAME_AS_PARSED})")
    return tuple(texts)


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such file; check dataset.path and dataset.splits") from None
    return decode_utf8(path, data, DataFormatError)


def _json_lines(path: Path) -> Iterator[tuple[str, Row]]:
    return json_object_lines(path, _decode(path), DataFormatError)


def _json_list(path: Path) -> Iterator[tuple[str, Row]]:
    try:
        rows = json.loads(_decode(path))
    except json.JSONDecodeError as err:
        if not err.doc.strip():
            return
        raise DataFormatError(f"{path}, line {err.lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}, line 1: expected one JSON list of objects, got {type(rows).__name__}")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataFormatError(f"{path}, element {index}: expected a JSON object, got {type(row).__name__}")
        yield f"element {index}", row


def _csv_rows(path: Path) -> Iterator[tuple[str, Row]]:
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    header = next(reader, None)
    if header is None:
        return
    header = [name.strip() for name in header]
    # The explanation column may be absent (a test split needs none); other extra columns are ignored.
    missing = [name for name in ("id", "question", "choice_0", "choice_1", "label") if name not in header]
    if missing:
        raise DataFormatError(f"{path}, line 1, field {missing[0]!r}: missing from the header {header}")
    while True:
        first_line = reader.line_num + 1  # a quoted cell may span lines: report where the row starts
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataFormatError(f"{path}, line {first_line}: malformed CSV ({err})") from None
        if not cells:
            continue
        if len(cells) != len(header):
            raise DataFormatError(f"{path}, line {first_line}: {len(cells)} cells but the header has {len(header)}")
        yield f"line {first_line}", dict(zip(header, cells))


@dataclass(frozen=True)
class DataFormat:
    """One official format: how to split a file into rows and how to normalize a row."""

    name: str
    rows: Callable[[Path], Iterator[tuple[str, Row]]]
    normalize: Normalizer
    # The format carries human explanations (used as demonstrations): count the rows that have none.
    explained: bool = True

    def read(self, path: str | Path) -> list[Example]:
        path = Path(path)
        return self.normalize_rows(str(path), self.rows(path))

    def normalize_rows(self, source: str, rows: LocatedRows) -> list[Example]:
        """Normalize rows from ``source`` (a file or hub split), checking ids are unique and something was read."""
        examples: list[Example] = []
        first_seen: dict[str, str] = {}
        for location, row in rows:
            try:
                example = self.normalize(row)
            except _FieldError as err:
                raise DataFormatError(f"{source}, {location}, field {err.field!r}: {err.problem}") from None
            if example.id in first_seen:
                first = first_seen[example.id]
                raise DataFormatError(
                    f"{source}, {location}, field 'id': duplicate id {example.id!r} (first at {first})")
            first_seen[example.id] = location
            examples.append(example)
        if not examples:
            raise DataFormatError(f"{source}: empty, no examples")
        unexplained = sum(example.rationale is None for example in examples)
        if self.explained and unexplained:
            log.info("%s: %d of %d examples have no explanation (missing, empty or a placeholder such as 'n/a'); "
                     "they are never used as demonstrations", source, unexplained, len(examples))
        return examples


# Every format by name: the normalizers below register themselves with ``@data_format``.
FORMATS: dict[str, DataFormat] = {}


def data_format(
    name: str, rows: Callable[[Path], Iterator[tuple[str, Row]]], *, explained: bool = True
) -> Callable[[Normalizer], Normalizer]:
    """Register a row normalizer as the format ``name`` (``dataset.format``), whose files ``rows`` splits into rows;
    ``explained``: the format carries human explanations."""

    def register(normalize: Normalizer) -> Normalizer:
        FORMATS[name] = DataFormat(name, rows, normalize, explained)
        return normalize

    return register


def get_format(fmt: str) -> DataFormat:
    if fmt not in FORMATS:
        raise DataFormatError(f"unknown data format {fmt!r}; known formats: {', '.join(sorted(FORMATS))}")
    return FORMATS[fmt]


@data_format("commonsenseqa", _json_lines, explained=False)
def normalize_commonsenseqa(row: Row) -> Example:
    stem, labels, texts, fields = _labeled_choices(row)
    choices = _choices(texts, fields, "question.choices")
    return Example(id=_id(row, "id"), question=stem, choices=choices, answer=_answer_key(row, labels))


@data_format("qasc", _json_lines)
def normalize_qasc(row: Row) -> Example:
    stem, labels, texts, fields = _labeled_choices(row)
    choices = _choices(texts, fields, "question.choices")
    rationale = f"{_text(row, 'fact1')} {_text(row, 'fact2')}"
    return Example(_id(row, "id"), stem, choices, _answer_key(row, labels), rationale)


@data_format("strategyqa", _json_list)
def normalize_strategyqa(row: Row) -> Example:
    answer = _get(row, "answer")
    if not isinstance(answer, bool):
        raise _FieldError("answer", f"expected true or false, got {_short(answer)}")
    facts = _get(row, "facts")
    # Some hub copies store the facts already joined into one string.
    if isinstance(facts, str):
        facts = [facts]
    if not isinstance(facts, list) or not all(isinstance(fact, str) for fact in facts):
        raise _FieldError("facts", f"expected a list of strings, got {_short(facts)}")
    rationale = " ".join(fact.strip() for fact in facts if fact.strip()) or None
    return Example(_id(row, "qid"), _text(row, "question"), ("yes", "no"), 0 if answer else 1, rationale)


@data_format("creak", _json_lines)
def normalize_creak(row: Row) -> Example:
    label = _get(row, "label")
    if label not in ("true", "false"):
        raise _FieldError("label", f"expected 'true' or 'false', got {_short(label)}")
    return Example(
        _id(row, "ex_id"),
        _text(row, "sentence"),
        ("true", "false"),
        0 if label == "true" else 1,
        _explanation(row, "explanation"),
        {"entity": row["entity"]} if row.get("entity") else {},
    )


_CHOICE_COLUMN = re.compile(r"choice_(\d+)")


@data_format("cose", _csv_rows)
def normalize_cose(row: Row) -> Example:
    if "choices" in row:  # hub layout (cos_e): a choice list, the answer text and the abstractive explanation
        texts = [_string(choice, f"choices[{i}]") for i, choice in enumerate(_list(row, "choices"))]
        answer_text = _text(row, "answer")
        if answer_text not in texts:
            raise _FieldError("answer", f"{answer_text!r} is not among the choices {texts}")
        choices = _choices(texts, [f"choices[{i}]" for i in range(len(texts))], "choices")
        rationale = _explanation(row, "abstractive_explanation")
        return Example(_id(row, "id"), _text(row, "question"), choices, texts.index(answer_text), rationale)
    # CSV layout: choice_0, choice_1, ... in any column order, label is a 0-based index.
    numbers = sorted(int(match.group(1)) for key in row if (match := _CHOICE_COLUMN.fullmatch(key)))
    if numbers != list(range(len(numbers))):
        raise _FieldError("choice_N", f"choice columns must be numbered from choice_0 without gaps, got {numbers}")
    texts = [_text(row, f"choice_{n}") for n in numbers]
    choices = _choices(texts, [f"choice_{n}" for n in numbers], "choice_N")
    label = _text(row, "label")
    if not label.isdigit():
        raise _FieldError("label", f"expected a 0-based choice index, got {_short(label)}")
    if int(label) >= len(choices):
        raise _FieldError("label", f"index {label} is not among the {len(choices)} choices")
    rationale = _explanation(row, *COSE_EXPLANATION_COLUMNS)
    return Example(_id(row, "id"), _text(row, "question"), choices, int(label), rationale)
