"""Decoding strategies: what each rationale is contrasted with, and how the branches' log-probabilities combine.

``conf/decoding/<name>.yaml`` names its strategy with ``_target_``; every other key is an argument of the class, which
``scd.components.build_components`` builds once at the start of a run, so a key the class does not take is refused
there by its signature. A strategy
owns four things:

- ``contrasts(job)``: what each prompt decoded beside the gold prompt gives (``Contrast``: a choice index, a text of
  the strategy's own, or ``None`` for no answer): none for greedy, one for the paper's contrastive decodings, any
  number otherwise;
- ``render(prompt, example, contrast)``: a contrast's prompt text, by default ``render_query`` (the example's prompt
  with the contrast in the answer slot); a strategy whose contrast prompts differ otherwise (a fixed negative prompt
  in place of the question, a paraphrase) overrides it;
- ``scores(logp_gold, logp_contrast, present)``: per-token scores whose argmax is the next token;
- ``setup(task, splits)`` (optional): the strategy that decodes, given the run's task and splits, for a strategy that
  needs to load or derive something before the first job.

The batched loop (``scd.teacher.decoding.decode``) runs every branch of every example over one shared prefix, whatever
the strategy. A strategy checks its own arguments in ``__post_init__``; its errors start with the argument's name, so
the config reports them as ``decoding.<name> ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

import torch

from scd.data.example import Example
from scd.data.records import RATIONALE_SPLITS
from scd.teacher.prompt import PromptTemplate

if TYPE_CHECKING:
    from scd.task import Task
    from scd.teacher.jobs import RationaleJob

# What a contrast prompt gives as its answer: a choice (its index), a text of the strategy's own, or no answer (None).
Contrast = Union[int, str, None]


def render_query(prompt: PromptTemplate, example: Example, answer: Contrast) -> str:
    """The example's prompt after the shared prefix, giving ``answer``: the one place a contrast becomes text."""
    if answer is None:
        text = ""
    elif isinstance(answer, str):
        text = answer
    else:
        text = example.choices[answer]
    return prompt.query(example.question, example.choices, text)


def contrastive_scores(
    logp_pos: torch.Tensor, logp_neg: torch.Tensor | None, lam: float, plausibility: float = 0.0
) -> torch.Tensor:
    """Scores ``[B, V]`` whose argmax is the contrastive choice (SCOTT, eq. 2).

    ``logp_pos``/``logp_neg`` are log-probabilities ``[B, V]`` given the gold and the perturbed prompt. With
    ``plausibility > 0``, tokens whose probability under the gold prompt is below ``plausibility`` times the top
    token's are excluded (the adaptive plausibility constraint of Li et al., 2023), which keeps large λ from
    promoting tokens the teacher itself finds implausible.

    >>> pos = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    >>> neg = torch.log(torch.tensor([[0.9, 0.05, 0.05]]))
    >>> contrastive_scores(pos, neg, lam=1.0).argmax(-1).item()
    1
    """
    scores = logp_pos if logp_neg is None or lam == 0 else logp_pos - lam * logp_neg
    if plausibility > 0:
        floor = logp_pos.max(dim=-1, keepdim=True).values + torch.log(torch.tensor(plausibility))
        scores = scores.masked_fill(logp_pos < floor, float("-inf"))
    return scores


@dataclass(frozen=True)
class DecodingStrategy:
    """The interface the batched loop decodes with. ``name`` is the decoding's name in records and reports
    (``conf/decoding/<name>.yaml`` sets it)."""

    name: str = field(default="", kw_only=True)

    def setup(self, task: Task, splits: dict[str, list[Example]]) -> DecodingStrategy:
        """The strategy that decodes the run's jobs, called once before them: itself, or a copy
        (``dataclasses.replace``) holding what it loaded from the task or the splits."""
        return self

    def contrasts(self, job: RationaleJob) -> list[Contrast]:
        """The contrasts whose prompts (``render``) are decoded beside ``job``'s gold prompt."""
        raise NotImplementedError

    def render(self, prompt: PromptTemplate, example: Example, contrast: Contrast) -> str:
        """The prompt of one of ``contrasts(job)``, after the shared prefix: the example's own prompt giving
        ``contrast`` as its answer."""
        return render_query(prompt, example, contrast)

    def scores(self, logp_gold: torch.Tensor, logp_contrast: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, V]`` whose argmax is the next token. ``logp_gold`` is ``[B, V]``; ``logp_contrast`` is
        ``[B, K, V]``, branch k of row b being the prompt for ``contrasts(job)[k]`` where ``present[b, k]`` (rows
        with fewer contrasts are padded with copies that ``present`` marks False)."""
        raise NotImplementedError

    def select(self, jobs: Sequence[RationaleJob]) -> list[RationaleJob]:
        """The jobs this source makes rationales for; a decoding strategy makes every one."""
        return list(jobs)

    @property
    def rationale_splits(self) -> tuple[str, ...]:
        """The rationale splits it makes (a training objective may need others)."""
        return RATIONALE_SPLITS

    def coverage(self, splits: dict[str, list[Example]]) -> dict[str, float]:
        """Metrics of what the source could not give (a decoding strategy gives every rationale: none)."""
        return {}


@dataclass(frozen=True)
class WrittenRationales(DecodingStrategy):
    """A rationale source that writes rationales itself, without decoding (a data set's annotations, a synthetic
    world's gold chains): the teacher stage asks ``rationale(job)`` for every job it ``writes``, and decodes the others, if it
    keeps any, with ``decoder``."""

    def rationale(self, job: RationaleJob) -> str:
        raise NotImplementedError

    def writes(self, job: RationaleJob) -> bool:
        """True for the jobs ``rationale`` serves; the rest are decoded with ``decoder``."""
        return True

    @property
    def decoder(self) -> DecodingStrategy | None:
        """The strategy that decodes the kept jobs this source does not write (None: it writes every kept job)."""
        return None

    def contrasts(self, job: RationaleJob) -> list[Contrast]:
        return []

    def scores(self, logp_gold: torch.Tensor, logp_contrast: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} writes its rationales itself: it is never decoded")


@dataclass(frozen=True)
class Greedy(DecodingStrategy):
    """No contrast: the next token is the teacher's top token under the gold prompt."""

    def contrasts(self, job: RationaleJob) -> list[Contrast]:
        return []

    def scores(self, logp_gold: torch.Tensor, logp_contrast: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return logp_gold


@dataclass(frozen=True)
class Contrastive(DecodingStrategy):
    """log p(t | gold prompt) − λ · log p(t | the contrast prompt); subclasses choose the contrast answers."""

    lam: float = 0.5
    plausibility: float = 0.0

    def __post_init__(self) -> None:
        for key in ("lam", "plausibility"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{key} must be a number, got {value!r}")
            # As a float: lam=1 and lam=1.0 are one setting, and one rationale cache key.
            object.__setattr__(self, key, float(value))
        if not 0 <= self.lam <= 1:
            # Beyond 1 the contrast prompt would outweigh the gold one.
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if not 0 <= self.plausibility < 1:
            raise ValueError(f"plausibility must be in [0, 1), got {self.plausibility}")

    def contrast_answers(self, job: RationaleJob) -> list[Contrast]:
        raise NotImplementedError

    def contrasts(self, job: RationaleJob) -> list[Contrast]:
        # λ = 0 is greedy: contrast branches would change nothing, so they are not decoded.
        return self.contrast_answers(job) if self.lam > 0 else []

    def scores(self, logp_gold: torch.Tensor, logp_contrast: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        negative = logp_contrast[:, 0] if logp_contrast.shape[1] else None
        return contrastive_scores(logp_gold, negative, self.lam, self.plausibility)


@dataclass(frozen=True)
class ContrastEmpty(Contrastive):
    """Contrast with the prompt that gives no answer."""

    def contrast_answers(self, job: RationaleJob) -> list[Contrast]:
        return [None]


@dataclass(frozen=True)
class ContrastWrong(Contrastive):
    """Contrast with the prompt that gives the other answer: the perturbed one for a gold rationale, the gold one for
    a counterfactual rationale."""

    def contrast_answers(self, job: RationaleJob) -> list[Contrast]:
        return [job.other]
