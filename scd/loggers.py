"""The Lightning loggers the ``logger`` config group names with ``_target_``: ``csv_logger``, ``wandb_logger``, or
null for none. Each is built with the run directory and the sweep's W&B group; another logger is a function here or
anywhere with that signature, and its YAML file."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import transformers
import wandb
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

log = logging.getLogger(__name__)
# How long online mode waits for the W&B server to answer before the run logs offline instead.
WANDB_PROBE_TIMEOUT_S = 10
# What every Lightning Trainer (a run builds up to four) says at its start that a reader of the log cannot act on, and
# its "`Trainer.fit` stopped: `max_steps=N` reached." that names no model (scd.progress closes each stage by name).
LIGHTNING_NOISE = ("GPU available:", "TPU available:", "HPU available:", "💡 Tip:", "`Trainer.fit` stopped:")


class DropMessages(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def quiet_library_noise() -> None:
    """Turn off, for this process, Lightning's per-Trainer device report and product tips and transformers' tqdm bars
    for loading and saving weights (the model-summary table is ``trainer.enable_model_summary``). Idempotent."""
    # Lightning logs these through the one logger its rank_zero_info uses.
    lightning = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, DropMessages) for f in lightning.filters):
        lightning.addFilter(DropMessages(LIGHTNING_NOISE))
    transformers.utils.logging.disable_progress_bar()


class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts. This one appends to it, so a resumed
    run continues the killed run's log and an evaluate-only run adds its metrics below the training curves."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                # The columns so far: a new metric rewrites the file under the widened header, keeping every row.
                self.metrics_keys = next(csv.reader(file), [])


class AppendingCSVLogger(CSVLogger):
    """``CSVLogger`` whose writer appends (``AppendingWriter``) and whose ``hparams.yaml`` is written once: a resumed
    or evaluate-only run in the same directory keeps the hyperparameters of the run that trained its student (its own
    config is in its ``.hydra/`` and ``run_config.json``)."""

    @rank_zero_only
    def log_hyperparams(self, params: Any = None) -> None:
        if (Path(self.log_dir) / ExperimentWriter.NAME_HPARAMS_FILE).exists():
            return
        super().log_hyperparams(params)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def wandb_unreachable() -> str | None:
    """Why the W&B server cannot be reached (None when it answers). Online mode without a network would otherwise
    retry for minutes, then end the run in a CommError traceback. Through ``requests``, so proxies apply."""
    url = os.environ.get("WANDB_BASE_URL") or wandb.Settings().base_url
    try:
        requests.head(url, timeout=WANDB_PROBE_TIMEOUT_S)
    except requests.RequestException as err:
        return f"{url} does not answer ({type(err).__name__})"
    return None


def csv_logger(run_dir: Path, sweep_group: str | None = None) -> Logger:
    """``csv/metrics.csv`` in the run directory, written at every logged step, so a killed run keeps its log up to
    the kill."""
    return AppendingCSVLogger(save_dir=str(run_dir), name="csv", version="", flush_logs_every_n_steps=1)


WANDB_MODES = ("offline", "online", "disabled")


def wandb_logger(
    run_dir: Path, sweep_group: str | None = None, project: str = "scd", group: str | None = None,
    mode: str = "offline",
) -> Logger:
    """W&B, offline unless ``WANDB_MODE`` or ``mode`` says online; the run's group is ``group``, else the sweep's."""
    if mode not in WANDB_MODES:
        raise ValueError(f"logger.mode must be one of {list(WANDB_MODES)}, got {mode!r}")
    mode = os.environ.get("WANDB_MODE", mode)
    unreachable = wandb_unreachable() if mode == "online" else None
    if unreachable:
        log.warning("W&B online mode: %s; logging offline instead (`wandb sync %s` uploads the run later)",
                    unreachable, run_dir / "wandb")
        mode = "offline"
    logger = WandbLogger(project=project, group=group or sweep_group, save_dir=str(run_dir),
                         offline=mode == "offline", mode=mode, name=run_dir.name)  # fmt: skip
    # Lightning passes anonymous=None, which W&B warns about as a deprecated setting that does nothing.
    logger._wandb_init.pop("anonymous", None)
    return logger


LoggerFactory = Callable[..., Logger]


def build_logger(
    factory: LoggerFactory | None, run_dir: Path, hyperparams: dict[str, Any], group: str | None
) -> Logger | bool:
    """The ``logger`` group's logger (``factory``: its ``_partial_`` target, None for none, then False) for the run
    directory and the sweep's W&B ``group``, with the run's hyperparameters logged."""
    if factory is None:
        return False
    logger = factory(run_dir=run_dir, sweep_group=group)
    logger.log_hyperparams(hyperparams)
    return logger
