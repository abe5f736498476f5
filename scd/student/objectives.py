"""Training objectives: the rows each question gives the student, and how the rows' losses make one loss.

``conf/training/<name>.yaml`` names its objective's class with ``_target_``; ``scd.config.validate`` builds it, so its
checks run at start, and the Python API builds the same class. An objective has tasks (kinds of rows). Each row
carries its task's index, each task's loss is the token mean over its rows, and the loss is their weighted sum. Dev is
scored with the same rows and weights (``val/loss``, the objective being trained), and each task alone
(``val/<task>_loss``); early stopping and the best checkpoint watch ``val/factual_loss`` (``conf/callbacks``).

To add an objective: a subclass here (its tasks, weights and ``groups``), its YAML file, its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from scd.data.records import RationaleRecord
from scd.io import RationaleFileError, read_rationales, read_split
from scd.student.formatting import TAG_MODES, TagMode, task_tag


@dataclass(frozen=True)
class Row:
    """A rationale record as one training row of task ``task``: input and target start with ``tag``; with
    ``answer_only`` the labels cover only the answer after the rationale."""

    record: RationaleRecord
    task: int
    tag: str
    answer_only: bool


class Objective:
    """Base class: ``tasks`` names the row kinds, ``weights()`` their weights in the loss. ``mode`` is the name runs
    are reported under (``training.mode``)."""

    tasks: tuple[str, ...] = ("factual",)
    # The rationale files ``groups`` reads: the decoding must make them (scd.config.validate checks it at start).
    rationale_splits: tuple[str, ...] = ("train", "dev")

    def __init__(self, mode: str, tags: TagMode = "distinct") -> None:
        if tags not in TAG_MODES:
            raise ValueError(f"training.tags must be one of {list(TAG_MODES)}, got {tags!r}")
        self.mode = mode
        self.tags = tags

    def weights(self) -> tuple[float, ...]:
        return (1.0,)

    def groups(self, rationale_dir: Path, split: str) -> list[list[Row]]:
        """The rows of ``split`` (train or dev) by question; a question's rows stay in one batch."""
        raise NotImplementedError

    def factual_row(self, record: RationaleRecord) -> Row:
        """Rationale and answer for the gold answer, trained on the whole target."""
        return Row(record, self.tasks.index("factual"), task_tag(self.tags, False), answer_only=False)

    def combine(self, task_losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of the task losses present (a batch may lack a task's rows)."""
        weights = dict(zip(self.tasks, self.weights()))
        return sum(weights[task] * loss for task, loss in task_losses.items())


class Standard(Objective):
    """``[factual] question -> [factual] rationale So the answer is A``, loss on every target token."""

    def __init__(self, mode: str = "standard", tags: TagMode = "distinct") -> None:
        super().__init__(mode, tags)

    def groups(self, rationale_dir: Path, split: str) -> list[list[Row]]:
        return [[self.factual_row(record)] for record in read_split(rationale_dir, split)]


class Counterfactual(Objective):
    """Standard, plus the counterfactual task: the question tagged counterfactual, with the teacher's rationale for the
    perturbed answer as decoder prefix, trained on the answer only. Loss = (1 - alpha) * factual + alpha *
    counterfactual. ``tags``: distinct ([factual]/[counterfactual]), shared (both [factual]) or none."""

    tasks = ("factual", "counterfactual")
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
        return Row(record, self.tasks.index("counterfactual"), task_tag(self.tags, True), answer_only=True)
