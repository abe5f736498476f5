"""The one example type every data set is normalized to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """A question with its answer choices and the index of the gold answer.

    Yes/no and true/false data sets use two choices (``("yes", "no")``, ``("true", "false")``).
    ``rationale`` is the human explanation where the data set has one (used for demonstrations).
    ``meta`` holds data-set specific facts that exact metrics need (a synthetic world's entities, a shortcut cue, ...).
    """

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    rationale: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"example {self.id!r}: needs at least two choices, got {list(self.choices)}")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"example {self.id!r}: answer index {self.answer} is not among {len(self.choices)} choices")

    @property
    def answer_text(self) -> str:
        return self.choices[self.answer]
