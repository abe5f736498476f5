"""``decoding=human``: the data set's own explanations take the teacher's place (the paper's human-annotated baseline).

The explanation of each example (``Example.rationale``: CoS-E's ``human_exp``, CREAK's ``explanation``, StrategyQA's
facts, QASC's two facts, a synthetic world's gold chain) is the rationale for its gold answer in ``train``, ``dev`` and
``test``. The loaders already read a missing, empty or placeholder explanation ("n/a", "-", ...) as None. Such an
example is left out of ``train`` and ``dev``, so the student never trains on an empty rationale. It stays in ``test``
with an empty rationale, so that every arm of a comparison answers the same test questions. ``coverage`` counts
these examples for the run's metrics.

Data sets explain only gold answers. The counterfactual splits (rationales for perturbed answers) are therefore
decoded by the teacher with ``counterfactual``, a decoding strategy given in config, or are left empty when it is
None. ``training=counterfactual`` needs them, so it is refused without one (``scd.components.build_components``
compares ``rationale_splits`` with the splits the objective reads), and the evaluate stage then skips counterfactual
consistency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scd.data.records import RATIONALE_SPLITS
from scd.teacher.strategies import DecodingStrategy, WrittenRationales

if TYPE_CHECKING:
    from scd.data.example import Example
    from scd.teacher.jobs import RationaleJob

# Gold-answer splits whose examples without an explanation are left out (test keeps them, empty).
TRAINING_SPLITS = ("train", "dev")


def is_counterfactual(job: RationaleJob) -> bool:
    return job.rationale_for != job.example.answer


@dataclass(frozen=True)
class HumanRationales(WrittenRationales):
    """The data set's explanations for gold answers; ``counterfactual`` decodes the perturbed answers' rationales."""

    counterfactual: DecodingStrategy | None = None

    def __post_init__(self) -> None:
        if self.counterfactual is not None and not isinstance(self.counterfactual, DecodingStrategy):
            raise ValueError(f"counterfactual must be a decoding strategy (a _target_ entry), got "
                             f"{self.counterfactual!r}")  # fmt: skip
        if isinstance(self.counterfactual, WrittenRationales):
            raise ValueError(f"counterfactual must decode with the teacher; {type(self.counterfactual).__name__} "
                             "writes rationales itself")  # fmt: skip

    def select(self, jobs: Sequence[RationaleJob]) -> list[RationaleJob]:
        kept = []
        for job in jobs:
            if is_counterfactual(job):
                if self.counterfactual is not None:
                    kept.append(job)
            elif job.example.rationale or job.split not in TRAINING_SPLITS:
                kept.append(job)
        return kept

    def writes(self, job: RationaleJob) -> bool:
        return not is_counterfactual(job)

    def rationale(self, job: RationaleJob) -> str:
        return job.example.rationale or ""

    @property
    def decoder(self) -> DecodingStrategy | None:
        return self.counterfactual

    @property
    def rationale_splits(self) -> tuple[str, ...]:
        if self.counterfactual is not None:
            return RATIONALE_SPLITS
        return tuple(split for split in RATIONALE_SPLITS if not split.endswith("_counterfactual"))

    def coverage(self, splits: dict[str, list[Example]]) -> dict[str, float]:
        """``rationales/missing_explanations/<split>``: examples without a usable explanation, per split."""
        return {f"rationales/missing_explanations/{name}": float(sum(not ex.rationale for ex in splits[name]))
                for name in ("train", "dev", "test") if name in splits}  # fmt: skip
