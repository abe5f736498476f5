"""The teacher's output record: one line of ``rationales/<split>.jsonl``, the student's input."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from scd.data.example import Example

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
