"""What the teacher stage asks the teacher to write: a rationale per (split, example, answer) job."""

from __future__ import annotations

from dataclasses import dataclass

from scd.data.example import Example
from scd.data.perturb import other_answer, perturbed_answer


@dataclass(frozen=True)
class RationaleJob:
    """Write the rationale for choice ``rationale_for`` of ``example``; ``other`` is the answer it is contrasted with."""

    split: str
    example: Example
    perturbed_answer: int
    rationale_for: int

    @property
    def key(self) -> tuple[str, str]:
        return self.split, self.example.id

    @property
    def other(self) -> int:
        return other_answer(self.example.answer, self.perturbed_answer, self.rationale_for)


def build_jobs(splits: dict[str, list[Example]], seed: int) -> list[RationaleJob]:
    """Rationales for the gold answer and for the perturbed answer of every example."""
    jobs = []
    for split in ("test", "dev", "train"):
        for ex in splits[split]:
            jobs.append(RationaleJob(split, ex, perturbed_answer(ex, seed), ex.answer))
    # dev last, so the jobs before it are batched as before dev_counterfactual was added (the same rationales).
    for split in ("test", "train", "dev"):
        for ex in splits[split]:
            wrong = perturbed_answer(ex, seed)
            jobs.append(RationaleJob(f"{split}_counterfactual", ex, wrong, wrong))
    return jobs
