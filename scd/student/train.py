"""Fit the student with a Lightning Trainer, resume from the last checkpoint, export the best weights."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.loggers import Logger
from pytorch_lightning.plugins.io import TorchCheckpointIO

from scd.io import publish_directory
from scd.student.callbacks import CHECKPOINT_DIR
from scd.student.module import StudentModule

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint beside its final path and renames it into place, so a kill never leaves a cut
    ``last.ckpt``. Lightning's own save stages the file in the system temp directory, and moving it from there to
    another file system (a cluster's shared disk) is a copy, which a kill can cut short."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        # Renamed onto the file a symlinked path names, so that the link stays.
        path = Path(os.path.realpath(path))
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


def build_trainer(
    run_dir: str | Path, trainer_kwargs: dict[str, Any], callbacks: list[pl.Callback], logger: Logger | bool
) -> pl.Trainer:
    """The student's Trainer in ``run_dir``. Lightning checks the arguments; its refusal is one ValueError line."""
    try:
        return pl.Trainer(default_root_dir=run_dir, logger=logger, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
                          **trainer_kwargs)
    except (MisconfigurationException, TypeError, ValueError) as err:
        raise ValueError(f"trainer: {str(err).strip().splitlines()[0]}") from err


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


def check_resumable(module: StudentModule, ckpt_path: str) -> None:
    """Refuse a checkpoint whose weights do not fit ``module`` (another student architecture or size), in one line
    rather than the state-dict traceback. The file is memory-mapped: only its index is read."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True).get("state_dict", {})
    expected = {name: tuple(value.shape) for name, value in module.checkpoint_state(module.state_dict()).items()}
    found = {name: tuple(value.shape) for name, value in state.items()}
    if found != expected:
        differing = sorted(set(expected) ^ set(found)) or sorted(n for n in expected if expected[n] != found[n])
        raise ValueError(
            f"{ckpt_path}: a checkpoint of another student ({len(differing)} weights differ, e.g. {differing[0]!r}); "
            "resume with the student it was trained with, or train anew without ckpt_path"
        )


def export_student(module: StudentModule, export_dir: Path) -> Path:
    """Write model and tokenizer with ``save_pretrained``, so the Auto classes load them. The directory appears
    whole or not at all (a killed export leaves no half-written ``student/``)."""

    def save(directory: Path) -> None:
        module.model.save_pretrained(directory)
        module.tokenizer.save_pretrained(directory)

    return publish_directory(save, export_dir)


def fit_student(
    module: StudentModule, datamodule: pl.LightningDataModule, trainer: pl.Trainer, *, ckpt_path: str | None
) -> Path:
    """Train with ``trainer`` (see ``build_trainer``), keeping ``last.ckpt`` in ``<run dir>/checkpoints`` beside what
    the checkpoint callback keeps (the best on its monitor, ``val/factual_loss`` by default); export the best weights (or, with no best checkpoint,
    the final ones) to ``<run dir>/student`` and return that directory. ``ckpt_path="last"`` resumes."""
    run_dir = Path(trainer.default_root_dir)
    checkpoint = trainer.checkpoint_callback
    # The checkpoint callback's own dirpath where one is given (callbacks.checkpoint.dirpath), else the run's.
    checkpoint_dir = Path(checkpoint.dirpath) if checkpoint and checkpoint.dirpath else run_dir / CHECKPOINT_DIR
    resume = resolve_checkpoint(ckpt_path, checkpoint_dir)
    if resume is not None:
        check_resumable(module, resume)
    # weights_only: a checkpoint holds tensors and plain values only; nothing in it may run code when loaded.
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    # ModelCheckpoint writes last.ckpt only after validation; save the final state too, so a run that max_steps
    # stopped between validations resumes exactly where it stopped. Every rank calls this (it synchronizes them).
    trainer.save_checkpoint(checkpoint_dir / "last.ckpt", weights_only=False)
    export_dir = run_dir / "student"
    if not trainer.is_global_zero:
        # With DDP every rank holds the same weights: rank 0 alone writes them.
        return export_dir

    if checkpoint is not None and checkpoint.best_model_path:
        log.info("exporting the best checkpoint %s (%s %.4f)", checkpoint.best_model_path, checkpoint.monitor,
                 checkpoint.best_model_score)
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state, strict=module.strict_loading)
    else:
        log.info("no validation ran, so there is no best checkpoint: exporting the final weights")
    return export_student(module, export_dir)
