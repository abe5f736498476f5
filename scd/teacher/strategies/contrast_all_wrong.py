"""Contrast with every wrong choice at once: log p(t | gold) − λ · mean over the other choices c of log p(t | c).

All of an example's branches (its gold prompt and one prompt per other choice) run in the one batch over the shared
prefix. On a two-choice question the mean has one term, the other choice, which is exactly ``contrast_wrong``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from scd.teacher.strategies import Contrast, Contrastive, contrastive_scores

if TYPE_CHECKING:
    from scd.teacher.jobs import RationaleJob


@dataclass(frozen=True)
class ContrastAllWrong(Contrastive):
    """Contrast with the prompts of every choice other than the one the rationale is written for."""

    def contrast_answers(self, job: RationaleJob) -> list[Contrast]:
        return [choice for choice in range(len(job.example.choices)) if choice != job.rationale_for]

    def scores(self, logp_gold: torch.Tensor, logp_contrast: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        if not logp_contrast.shape[1]:
            return contrastive_scores(logp_gold, None, self.lam, self.plausibility)
        # Padded branches count zero; questions with fewer choices average over their own.
        total = torch.where(present[..., None], logp_contrast, 0.0).sum(dim=1)
        mean = total / present.sum(dim=1, keepdim=True)
        return contrastive_scores(logp_gold, mean, self.lam, self.plausibility)
