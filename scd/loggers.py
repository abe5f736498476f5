"""The Lightning logger chosen by the ``logger`` config group."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from scd.config import LoggerConfig


def build_logger(cfg: LoggerConfig, run_dir: Path, hyperparams: dict[str, Any], group: str | None) -> Logger | bool:
    """W&B (offline unless WANDB_MODE or ``logger.mode`` says online), CSV in the run directory, or none (False)."""
    if cfg.name == "none":
        return False
    if cfg.name == "csv":
        logger: Logger = CSVLogger(save_dir=str(run_dir), name="csv", version="")
    else:
        mode = os.environ.get("WANDB_MODE", cfg.mode)
        logger = WandbLogger(
            project=cfg.project, group=cfg.group or group, save_dir=str(run_dir), offline=mode == "offline",
            mode=mode, name=run_dir.name,
        )
    logger.log_hyperparams(hyperparams)
    return logger
