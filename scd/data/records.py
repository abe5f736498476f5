"""The teacher's output record: one line of ``rationales/<split>.jsonl``, the student's input."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scd.data.example import Example
from scd.io import atomic_write_text, decode_utf8, json_object_lines

# Splits the teacher writes. The ``*_counterfactual`` ones hold rationales written for the perturbed answer: the
# student's counterfactual training and dev sets, and the test set of its counterfactual consistency.
RATIONALE_SPLITS = ("train", "train_counterfactual", "dev", "dev_counterfactual", "test", "test_counterfactual")


@dataclass
class RationaleRecord:
    """A question, its gold and perturbed answers, and the rationale the teacher wrote for ``rationale_for``.

    ``rationale_for`` equals ``answer`` in train/dev/test and ``perturbed_answer`` in the ``*_counterfactual`` splits.
    """

    id: str
    question: str
    choices: list[str]
    answer: int
    perturbed_answer: int
    rationale_for: int
    rationale: str
    decoding: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def answer_text(self) -> str:
        return self.choices[self.answer]

    @property
    def rationale_for_text(self) -> str:
        return self.choices[self.rationale_for]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> RationaleRecord:
        return cls(**{key: record[key] for key in cls.__dataclass_fields__ if key in record})

    def to_example(self) -> Example:
        return Example(self.id, self.question, tuple(self.choices), self.answer, None, dict(self.meta))


# --- rationale files: rationales/<split>.jsonl, one RationaleRecord a line, checked line by line on reading ---------


class RationaleFileError(ValueError):
    """A rationale file that cannot be read: names the file, the line and the field."""


def _check_index(record: dict[str, Any], name: str, choices: list[Any], where: str) -> None:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(choices):
        raise RationaleFileError(f"{where}: field {name!r} must be a choice index below {len(choices)}, got {value!r}")


def read_rationales(path: str | Path) -> list[RationaleRecord]:
    """Read a ``rationales/<split>.jsonl`` file, checking every line against the RationaleRecord fields."""
    path = Path(path)
    if not path.is_file():
        raise RationaleFileError(f"{path}: no such rationale file")
    records = []
    for line, record in json_object_lines(path, decode_utf8(path, path.read_bytes(), RationaleFileError),
                                              RationaleFileError):
        where = f"{path}, {line}"
        for name in ("id", "question", "choices", "answer", "perturbed_answer", "rationale_for", "rationale"):
            if name not in record:
                raise RationaleFileError(f"{where}: missing field {name!r}")
        for name in ("question", "rationale"):
            if not isinstance(record[name], str):
                raise RationaleFileError(f"{where}: field {name!r} must be a string, got {record[name]!r}")
        choices = record["choices"]
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise RationaleFileError(f"{where}: field 'choices' must be a list of at least two strings")
        for name in ("answer", "perturbed_answer", "rationale_for"):
            _check_index(record, name, choices, where)
        record["id"] = str(record["id"])
        record.setdefault("decoding", "")
        records.append(RationaleRecord.from_dict(record))
    return records


def read_split(rationale_dir: str | Path, split: str) -> list[RationaleRecord]:
    if split not in RATIONALE_SPLITS:
        raise ValueError(f"unknown rationale split {split!r}: use one of {', '.join(RATIONALE_SPLITS)}")
    return read_rationales(Path(rationale_dir) / f"{split}.jsonl")


def write_rationales(path: Path, records: Sequence[RationaleRecord]) -> None:
    """Write ``records`` to ``path`` atomically, one JSON object a line, fields in ``RationaleRecord`` order."""
    atomic_write_text(path, "".join(json.dumps(asdict(record)) + "\n" for record in records))
