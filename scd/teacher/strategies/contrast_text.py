"""Contrast with a fixed text as the answer: log p(t | gold answer) − λ · log p(t | the prompt answering ``text``).

The contrast prompt keeps the question and its choices, and gives ``text`` (e.g. "I don't know") where the answer
goes: a rationale that reads just as well after an answer that commits to nothing scores low, as after the empty answer
of ``contrast_empty``, but the contrast prompt reads as a whole sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from scd.teacher.strategies import Contrast, Contrastive

if TYPE_CHECKING:
    from scd.teacher.jobs import RationaleJob


@dataclass(frozen=True)
class ContrastText(Contrastive):
    """Contrast with the prompt whose answer is ``text``."""

    text: str = "I don't know"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError(f"text must be a non-empty string (decoding=contrast_empty contrasts with no answer), "
                             f"got {self.text!r}")

    def contrast_answers(self, job: RationaleJob) -> list[Contrast]:
        return [self.text]
