"""Fit the student with a Lightning Trainer, resume from the last checkpoint, export the best weights."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import Logger
from pytorch_lightning.plugins.io import TorchCheckpointIO

from scd.io import publish_directory
from scd.student.module import StudentModule

log = logging.getLogger(__name__)
MONITOR = "val/loss"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside its final path and renames it into place, so a kill never leaves a cut
    ``last.ckpt``. Lightning's own save stages the file in the system temp directory, and moving it from there to
    another file system (a cluster's shared disk) is a copy, which a kill can cut short."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def resolve_checkpoint(ckpt_path: str | None, checkpoint_dir: Path) -> str | None:
    """``"last"`` means the run's own ``last.ckpt`` if there is one (else a fresh start); other values pass through."""
    if ckpt_path != "last":
        return ckpt_path
    last = checkpoint_dir / "last.ckpt"
    if last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    log.info("no checkpoint at %s: training from scratch", last)
    return None


def export_student(module: StudentModule, export_dir: Path) -> Path:
    """Write model and tokenizer with ``save_pretrained``, so the Auto classes load them. The directory appears
    whole or not at all (a killed export leaves no half-written ``student/``)."""

    def save(directory: Path) -> None:
        module.model.save_pretrained(directory)
        module.tokenizer.save_pretrained(directory)

    return publish_directory(save, export_dir)


def fit_student(
    module: StudentModule,
    datamodule: pl.LightningDataModule,
    *,
    run_dir: str | Path,
    trainer_kwargs: dict[str, Any],
    logger: Logger | list[Logger] | bool,
    ckpt_path: str | None,
    early_stopping_patience: int | None,
) -> Path:
    """Train, keeping ``last.ckpt`` and the best checkpoint on ``val/loss`` in ``run_dir/checkpoints``; export the best
    weights to ``run_dir/student`` and return that directory.

    ``trainer_kwargs`` go to ``pl.Trainer`` as they are (max_steps, precision, gradient_clip_val,
    accumulate_grad_batches, val_check_interval, accelerator, ...).
    """
    run_dir = Path(run_dir)
    checkpoint_dir = run_dir / "checkpoints"
    checkpoint = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename="best-step{step}",
        auto_insert_metric_name=False,
        monitor=MONITOR,
        mode="min",
        save_top_k=1,
        save_last=True,
    )
    callbacks: list[pl.Callback] = [checkpoint]
    if early_stopping_patience is not None:
        # Checked after validation only: a run resumed at an epoch's end has no val/loss until it validates again.
        callbacks.append(
            EarlyStopping(monitor=MONITOR, mode="min", patience=early_stopping_patience, check_on_train_epoch_end=False)
        )
    trainer = pl.Trainer(default_root_dir=run_dir, logger=logger, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
                         **trainer_kwargs)
    # weights_only: a checkpoint holds tensors and plain values only; nothing in it may run code when loaded.
    trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_checkpoint(ckpt_path, checkpoint_dir),
                weights_only=True)
    # ModelCheckpoint writes last.ckpt only after validation; save the final state too, so a run that max_steps
    # stopped between validations resumes exactly where it stopped. Every rank calls this (it synchronizes them).
    trainer.save_checkpoint(checkpoint_dir / "last.ckpt", weights_only=False)
    export_dir = run_dir / "student"
    if not trainer.is_global_zero:
        # With DDP every rank holds the same weights: rank 0 alone writes them.
        return export_dir

    if checkpoint.best_model_path:
        log.info("exporting the best checkpoint %s (%s %.4f)", checkpoint.best_model_path, MONITOR,
                 checkpoint.best_model_score)
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    else:
        log.info("no validation ran, so there is no best checkpoint: exporting the final weights")
    return export_student(module, export_dir)
