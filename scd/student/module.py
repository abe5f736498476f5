"""The student as a LightningModule: any Hugging Face seq2seq or causal LM, trained on a training objective.

The objective (``scd.student.objectives``) owns the loss: its ``loss`` on train batches, its ``terms`` accumulated
over all of dev (``val/loss``, ``val/<term>_loss``). The optimizer and the learning-rate schedule are given, built
(``conf/optimizer``, ``conf/lr_schedule``: ``_target_`` entries with ``_partial_``), and this module applies them to the
model's parameters.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from scd.student.objectives import Batch, Objective

# An optimizer class with its settings bound (conf/optimizer), given the parameter groups.
OptimizerFactory = Callable[[Iterable[dict[str, Any]]], torch.optim.Optimizer]
# A schedule with its settings bound (conf/lr_schedule), given the optimizer and the run's optimizer steps.
ScheduleFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
# The defaults of conf/optimizer/adamw.yaml and conf/lr_schedule/linear_warmup.yaml, for the Python API.
DEFAULT_OPTIMIZER: OptimizerFactory = partial(torch.optim.AdamW, lr=3e-4, weight_decay=0.0)
DEFAULT_LR_SCHEDULE: ScheduleFactory = partial(get_linear_schedule_with_warmup, num_warmup_steps=0)


def random_state() -> dict[str, Any]:
    """Python's, numpy's and torch's (CPU and CUDA) random states, as plain values and tensors a checkpoint loads
    with ``weights_only``."""
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_random_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def logged_metric_names(objective: Objective) -> list[str]:
    """The metrics ``StudentModule`` logs when trained on ``objective`` (``training_step``,
    ``on_validation_epoch_end``): what a callback may monitor."""
    names = ["loss", *(f"{term}_loss" for term in objective.loss_terms)]
    return [f"{split}/{name}" for split in ("val", "train") for name in names]


def selection_metric(objective: Objective) -> str:
    """What picks the best checkpoint and stops early unless a callback names its own ``monitor``."""
    return f"val/{objective.selection_term}_loss"


class StudentModule(pl.LightningModule):
    """Trains ``model`` (built by the caller, e.g. with ``scd.models.load_model``) on StudentDataModule batches of
    ``objective``'s rows. The model trains in train mode (dropout on) whatever mode it was loaded in."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        objective: Objective,
        *,
        optimizer: OptimizerFactory = DEFAULT_OPTIMIZER,
        lr_schedule: ScheduleFactory = DEFAULT_LR_SCHEDULE,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.objective = objective
        self.build_optimizer = optimizer
        self.build_lr_schedule = lr_schedule
        # Per term, its loss over all of dev: each row's mean weighted by its count.
        self.val_losses = torch.nn.ModuleDict({term: MeanMetric() for term in objective.loss_terms})
        # A LoRA student (scd.student.lora) trains its adapters only: checkpoints hold them, not the frozen base,
        # and a checkpoint restores them into the base as loaded.
        self.adapters_only = hasattr(model, "peft_config")
        self.strict_loading = not self.adapters_only

    def checkpoint_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The part of ``state`` (this module's state dict) a checkpoint holds: all, or a LoRA student's adapters."""
        if not self.adapters_only:
            return state
        trainable = {f"model.{name}" for name, p in self.model.named_parameters() if p.requires_grad}
        return {name: value for name, value in state.items() if name in trainable}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = self.checkpoint_state(checkpoint["state_dict"])
        # Lightning keeps weights, optimizer and loop positions; without the random state a resumed run would shuffle
        # its next epochs (and drop out) differently from an uninterrupted one.
        checkpoint["random_state"] = random_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Applied when training starts: the sanity check and loop restoring in between draw from the generators.
        self._resumed_random_state = checkpoint.get("random_state")

    def on_train_start(self) -> None:
        if getattr(self, "_resumed_random_state", None) is not None:
            set_random_state(self._resumed_random_state)
            self._resumed_random_state = None

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss``, and ``<term>_loss`` for each term with rows in the batch."""
        return self.objective.loss(self.model, batch)

    def on_fit_start(self) -> None:
        # Transformers loads checkpoints in eval mode and Lightning keeps each module's mode: without this a
        # from_pretrained student would train with dropout off. Validation switches to eval and back by itself.
        self.model.train()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        rows = batch["input_ids"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=rows, prog_bar=name == "loss")
        return losses["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        for term, rows in self.objective.terms(self.model, batch).items():
            self.val_losses[term].update(rows.sums / rows.counts.clamp(min=1), rows.counts)

    def on_validation_epoch_end(self) -> None:
        term_losses = {term: metric.compute() for term, metric in self.val_losses.items() if metric.update_called}
        for metric in self.val_losses.values():
            metric.reset()
        if not term_losses:
            return
        self.log("val/loss", self.objective.combine(term_losses), prog_bar=True)
        for term, value in term_losses.items():
            # Beside val/loss in the progress lines where there are several terms: the checkpoint and early stopping
            # watch the selection term's loss (val/factual_loss), which can fall while another term drifts up.
            self.log(f"val/{term}_loss", value, prog_bar=len(term_losses) > 1)

    def configure_optimizers(self) -> dict[str, Any]:
        # No weight decay on biases and normalization weights (the one-dimensional parameters); the others take the
        # optimizer's own weight_decay.
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        optimizer = self.build_optimizer([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        scheduler = self.build_lr_schedule(optimizer, num_training_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
