"""The student as a LightningModule: any Hugging Face seq2seq or causal LM, trained on a training objective.

Each task of the objective (``scd.student.objectives``) has its loss, the token mean over its own rows; the
objective weighs them into one loss, on train batches and over all of dev (``val/loss``). A batch holds every task's
rows padded to one length, so one forward pass serves all the losses.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup
from transformers.optimization import Adafactor

from scd.models import Arch
from scd.student.data import IGNORE_INDEX
from scd.student.objectives import Objective

OptimizerName = Literal["adamw", "adafactor"]


def row_losses(model: PreTrainedModel, batch: dict[str, torch.Tensor], arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed token cross-entropy over labelled positions, and the number of those positions."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if arch == "seq2seq":
        inputs["decoder_input_ids"] = batch["decoder_input_ids"]
    logits = model(**inputs).logits
    labels = batch["labels"]
    if arch == "causal":
        # Position t predicts token t + 1.
        logits, labels = logits[:, :-1], labels[:, 1:]
    losses = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    return losses.sum(dim=1), (labels != IGNORE_INDEX).sum(dim=1)


def _token_mean(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return sums.sum() / counts.sum().clamp(min=1)


def logged_metric_names(objective: Objective) -> list[str]:
    """The metrics ``StudentModule`` logs when trained on ``objective`` (``training_step``,
    ``on_validation_epoch_end``): what a callback may monitor."""
    names = ["loss", *(f"{task}_loss" for task in objective.tasks)]
    return [f"{split}/{name}" for split in ("val", "train") for name in names]


class StudentModule(pl.LightningModule):
    """Trains ``model`` (built by the caller, e.g. with ``scd.models.load_model``) on StudentDataModule batches of
    ``objective``'s rows. The model trains in train mode (dropout on) whatever mode it was loaded in."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        arch: Arch,
        objective: Objective,
        *,
        optimizer: OptimizerName = "adamw",
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if arch not in ("causal", "seq2seq"):
            raise ValueError(f"unknown arch {arch!r}: use causal or seq2seq")
        if optimizer not in ("adamw", "adafactor"):
            raise ValueError(f"unknown optimizer {optimizer!r}: use adamw or adafactor")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        # The objective is rebuilt from config on resume; checkpoints hold plain values only.
        self.save_hyperparameters(ignore=["model", "tokenizer", "objective"])
        self.model = model
        self.tokenizer = tokenizer
        self.arch = arch
        self.objective = objective
        # Per task, the token mean over all of dev: each row's mean weighted by its token count.
        self.val_losses = torch.nn.ModuleList(MeanMetric() for _ in objective.tasks)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``loss``, and ``<task>_loss`` for each task with rows in the batch."""
        sums, counts = row_losses(self.model, batch, self.arch)
        task_losses = {
            task: _token_mean(sums[batch["task"] == index], counts[batch["task"] == index])
            for index, task in enumerate(self.objective.tasks) if (batch["task"] == index).any()
        }
        return {"loss": self.objective.combine(task_losses), **{f"{t}_loss": v for t, v in task_losses.items()}}

    def on_fit_start(self) -> None:
        # Transformers loads checkpoints in eval mode and Lightning keeps each module's mode: without this a
        # from_pretrained student would train with dropout off. Validation switches to eval and back by itself.
        self.model.train()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        rows = batch["input_ids"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=rows, prog_bar=name == "loss")
        return losses["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        sums, counts = row_losses(self.model, batch, self.arch)
        for index, metric in enumerate(self.val_losses):
            rows = batch["task"] == index
            if rows.any():
                metric.update(sums[rows] / counts[rows].clamp(min=1), counts[rows])

    def on_validation_epoch_end(self) -> None:
        task_losses = {
            task: metric.compute() for task, metric in zip(self.objective.tasks, self.val_losses) if metric.update_called
        }
        for metric in self.val_losses:
            metric.reset()
        if not task_losses:
            return
        self.log("val/loss", self.objective.combine(task_losses), prog_bar=True)
        for task, value in task_losses.items():
            self.log(f"val/{task}_loss", value)

    def configure_optimizers(self) -> dict[str, Any]:
        # No weight decay on biases and normalization weights (the one-dimensional parameters).
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if self.hparams.optimizer == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=self.hparams.lr)
        else:
            optimizer = Adafactor(groups, lr=self.hparams.lr, scale_parameter=False, relative_step=False)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, self.hparams.warmup_steps, int(self.trainer.estimated_stepping_batches)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
