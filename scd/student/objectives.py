"""Training objectives: the rows each question gives the student, and the loss the student trains on.

``conf/training/<name>.yaml`` names its objective's class with ``_target_``; ``scd.components.build_components``
builds it, so its checks run at start, and the Python API builds the same class. An objective owns its loss: ``loss(model, batch)``
is what a train batch optimizes, and ``terms(model, batch)`` the named terms it sums, each a ``RowLosses`` (per row, a
loss total and the count it is a mean over), which dev accumulates over all its batches (``val/<term>_loss``, and
``val/loss``, the objective being trained). By default the terms are the row kinds: each row carries its kind's
index, each kind's loss is the token mean over its rows, and the loss is their weighted sum. Early stopping and the
best checkpoint watch the objective's ``selection_term`` (``val/<term>_loss``) unless ``conf/callbacks`` names another
``monitor``.

``token_losses`` is the forward pass, per label position, with each label's role (answer or rationale) beside it: a
``terms`` of another form (label smoothing, a weight on the answer tokens) starts from it and copies no forward.

To add an objective: a subclass here or in a module of its own (its kinds, weights, ``selection_term`` and
``groups``; ``terms`` for a loss of another form), its YAML file, its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from scd.data.records import RationaleFileError, RationaleRecord, read_rationales, read_split
from scd.student.data import IGNORE_INDEX
from scd.student.formatting import TAG_MODES, TagMode, task_tag

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TokenLosses:
    """A batch's token cross-entropies, ``[rows, positions]``, aligned with what each position predicts: ``losses``
    (0 where unlabelled), ``labelled`` (the position has a label) and ``answer`` (its label is an answer token)."""

    losses: torch.Tensor
    labelled: torch.Tensor
    answer: torch.Tensor


def token_losses(model: PreTrainedModel, batch: Batch, **cross_entropy_kwargs: Any) -> TokenLosses:
    """The forward pass and each labelled position's cross-entropy; ``cross_entropy_kwargs`` go to
    ``torch.nn.functional.cross_entropy`` (e.g. ``label_smoothing``)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = batch["decoder_input_ids"]
    logits = model(**inputs).logits
    labels, answer = batch["labels"], batch["answer_mask"]
    if not model.config.is_encoder_decoder:
        # Position t predicts token t + 1.
        logits, labels, answer = logits[:, :-1], labels[:, 1:], answer[:, 1:]
    losses = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none",
                             **cross_entropy_kwargs)  # fmt: skip
    labelled = labels != IGNORE_INDEX
    return TokenLosses(losses, labelled, answer & labelled)


def row_losses(model: PreTrainedModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed token cross-entropy over labelled positions, and the number of those positions."""
    tokens = token_losses(model, batch)
    return tokens.losses.sum(dim=1), tokens.labelled.sum(dim=1)


@dataclass(frozen=True)
class RowLosses:
    """One loss term over some rows: each row's loss total and the count it is a mean over (its labelled tokens, for
    a token mean). The term's loss is the ratio of their sums, in a batch and over all of dev alike."""

    sums: torch.Tensor
    counts: torch.Tensor

    def mean(self) -> torch.Tensor:
        return self.sums.sum() / self.counts.sum().clamp(min=1)


@dataclass(frozen=True)
class Row:
    """A rationale record as one training row of kind ``kind`` (an index into its objective's ``kinds``): input and
    target start with ``tag``; with ``answer_only`` the labels cover only the answer after the rationale."""

    record: RationaleRecord
    kind: int
    tag: str
    answer_only: bool


class Objective:
    """Base class: ``kinds`` names the row kinds, ``terms`` the loss's terms (by default one per kind) and
    ``weights()`` the terms' weights in the loss. ``mode`` is the name runs are reported under (``training.mode``)."""

    kinds: tuple[str, ...] = ("factual",)
    # The term whose dev loss picks the best checkpoint and stops training early: the callbacks' default ``monitor``
    # is ``val/<selection_term>_loss``. Not the whole loss: with counterfactual rows its counterfactual part drifts
    # up while the rationale loss still falls, so it picked early checkpoints.
    selection_term: str = "factual"
    # The rationale files ``groups`` reads: the decoding must make them (scd.components checks it at start).
    rationale_splits: tuple[str, ...] = ("train", "dev")

    def __init__(self, mode: str, tags: TagMode = "distinct") -> None:
        if tags not in TAG_MODES:
            raise ValueError(f"training.tags must be one of {list(TAG_MODES)}, got {tags!r}")
        self.mode = mode
        self.tags = tags

    @property
    def loss_terms(self) -> tuple[str, ...]:
        """The names of ``terms``' terms, in the order of ``weights()``: what the student logs as ``<term>_loss``."""
        return self.kinds

    def weights(self) -> tuple[float, ...]:
        return (1.0,)

    def groups(self, rationale_dir: Path, split: str) -> list[list[Row]]:
        """The rows of ``split`` (train or dev) by question; a question's rows stay in one batch."""
        raise NotImplementedError

    def factual_row(self, record: RationaleRecord) -> Row:
        """Rationale and answer for the gold answer, trained on the whole target."""
        return Row(record, self.kinds.index("factual"), task_tag(self.tags, False), answer_only=False)

    def terms(self, model: PreTrainedModel, batch: Batch) -> dict[str, RowLosses]:
        """Each kind's rows in ``batch`` with their summed token losses and token counts; a kind without rows in the
        batch is left out."""
        sums, counts = row_losses(model, batch)
        rows = {kind: batch["kind"] == index for index, kind in enumerate(self.kinds)}
        return {kind: RowLosses(sums[mask], counts[mask]) for kind, mask in rows.items() if mask.any()}

    def combine(self, term_losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of the term losses present (a batch may lack a kind's rows)."""
        weights = dict(zip(self.loss_terms, self.weights()))
        return sum(weights[term] * loss for term, loss in term_losses.items())

    def loss(self, model: PreTrainedModel, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss``, what a train batch optimizes, and ``<term>_loss`` for each term with rows in the batch."""
        term_losses = {term: rows.mean() for term, rows in self.terms(model, batch).items()}
        return {"loss": self.combine(term_losses), **{f"{term}_loss": value for term, value in term_losses.items()}}


class Standard(Objective):
    """``[factual] question -> [factual] rationale So the answer is A``, loss on every target token."""

    def __init__(self, mode: str = "standard", tags: TagMode = "distinct") -> None:
        super().__init__(mode, tags)

    def groups(self, rationale_dir: Path, split: str) -> list[list[Row]]:
        return [[self.factual_row(record)] for record in read_split(rationale_dir, split)]


class Counterfactual(Objective):
    """Standard, plus counterfactual rows: the question tagged counterfactual, with the teacher's rationale for the
    perturbed answer as decoder prefix, trained on the answer only. Loss = (1 - alpha) * factual + alpha *
    counterfactual. ``tags``: distinct ([factual]/[counterfactual]), shared (both [factual]) or none."""

    kinds = ("factual", "counterfactual")
    rationale_splits = ("train", "dev", "train_counterfactual", "dev_counterfactual")

    def __init__(self, mode: str = "counterfactual", alpha: float = 0.5, tags: TagMode = "distinct") -> None:
        super().__init__(mode, tags)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ValueError(f"training.alpha must be a number in [0, 1], got {alpha!r}")
        alpha = float(alpha)
        if not 0 <= alpha <= 1:
            raise ValueError(f"training.alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha

    def weights(self) -> tuple[float, ...]:
        return (1.0 - self.alpha, self.alpha)

    def groups(self, rationale_dir: Path, split: str) -> list[list[Row]]:
        records = read_split(rationale_dir, split)
        path = Path(rationale_dir) / f"{split}_counterfactual.jsonl"
        by_id = {record.id: record for record in read_rationales(path)}
        missing = [record.id for record in records if record.id not in by_id]
        if missing:
            raise RationaleFileError(f"{path}: no counterfactual rationale for {split} ids {missing[:5]}")
        return [[self.factual_row(record), self.counterfactual_row(by_id[record.id])] for record in records]

    def counterfactual_row(self, record: RationaleRecord) -> Row:
        """A rationale for the perturbed answer (a ``*_counterfactual`` record), trained on the answer only."""
        return Row(record, self.kinds.index("counterfactual"), task_tag(self.tags, True), answer_only=True)


class RowMean(Standard):
    """Standard rows, each row counted once: the loss is the mean over rows of each row's own token mean, so a long
    rationale weighs no more than a short one (the standard loss is the token mean over all the rows' tokens)."""

    def __init__(self, mode: str = "row_mean", tags: TagMode = "distinct") -> None:
        super().__init__(mode, tags)

    def terms(self, model: PreTrainedModel, batch: Batch) -> dict[str, RowLosses]:
        # Each row's token mean, as a total with count 1: the term is then the mean over rows, in a batch and on dev.
        return {term: RowLosses(rows.sums / rows.counts.clamp(min=1), torch.ones_like(rows.counts))
                for term, rows in super().terms(model, batch).items()}  # fmt: skip
