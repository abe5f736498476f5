"""The student as a LightningModule: any Hugging Face seq2seq or causal LM, standard or counterfactual loss.

Standard:        the token mean of the factual rows' loss (rationale and answer).
Counterfactual:  (1 - alpha) * factual + alpha * counterfactual, each a token mean over its own rows; the
                 counterfactual rows carry labels only on the answer tokens.
A batch holds both kinds of rows padded to one length, so one forward pass serves both losses.
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


class StudentModule(pl.LightningModule):
    """Trains ``model`` (built by the caller, e.g. with ``scd.models.load_model``) on StudentDataModule batches."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        arch: Arch,
        *,
        alpha: float = 0.5,
        optimizer: OptimizerName = "adamw",
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if arch not in ("causal", "seq2seq"):
            raise ValueError(f"unknown arch {arch!r}: use causal or seq2seq")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if optimizer not in ("adamw", "adafactor"):
            raise ValueError(f"unknown optimizer {optimizer!r}: use adamw or adafactor")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.save_hyperparameters(ignore=["model", "tokenizer"])
        self.model = model
        self.tokenizer = tokenizer
        self.arch = arch
        self.alpha = alpha
        self.val_loss = MeanMetric()

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``loss`` and ``factual_loss``, plus ``counterfactual_loss`` when the batch has counterfactual rows."""
        sums, counts = row_losses(self.model, batch, self.arch)
        counterfactual = batch["counterfactual"]
        factual = _token_mean(sums[~counterfactual], counts[~counterfactual])
        if not counterfactual.any():
            return {"loss": factual, "factual_loss": factual}
        counterfactual_loss = _token_mean(sums[counterfactual], counts[counterfactual])
        loss = (1.0 - self.alpha) * factual + self.alpha * counterfactual_loss
        return {"loss": loss, "factual_loss": factual, "counterfactual_loss": counterfactual_loss}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        rows = batch["input_ids"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=rows, prog_bar=name == "loss")
        return losses["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        sums, counts = row_losses(self.model, batch, self.arch)
        # Weighting each row's mean by its token count makes the epoch value the token mean over all of dev.
        self.val_loss.update(sums / counts.clamp(min=1), counts)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)

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
