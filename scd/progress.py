"""Progress reporting that every Lightning loop of a run shares: the student's, the simulator's, a task-trained
teacher's and the teacher stage's generation.

On a terminal a loop gets one bar for the whole fit (``StepProgressBar``). Where output is not a terminal (a file,
SLURM, CI), or ``trainer.enable_progress_bar`` is false, ``StepProgressLog`` logs plain progress lines instead.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import convert_inf

PROGRESS_EVERY_S = 30.0
PROGRESS_PARTS = 10

log = logging.getLogger("scd.progress")  # one name for the progress of every loop


class StepProgressBar(TQDMProgressBar):
    """One bar for the whole fit: optimizer steps done out of the total (``max_steps``, or what the epochs give),
    continuing from the resumed step, instead of a bar per epoch headed "Epoch 28/-2" when training is by steps.
    ``name`` heads it ("<name> steps")."""

    def __init__(self, *args: Any, name: str = "train", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = name

    def on_train_start(self, trainer: pl.Trainer, *_: Any) -> None:
        super().on_train_start(trainer)
        bar = self.train_progress_bar
        bar.reset(total=convert_inf(trainer.estimated_stepping_batches))
        bar.initial = trainer.global_step
        bar.n = trainer.global_step
        bar.set_description(f"{self.name} steps")

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        """Keep the one bar going across epochs (the base class starts a new one)."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        if self._should_update(trainer.global_step, bar.total):
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module))


def output_is_terminal() -> bool:
    """Whether a progress bar would be read as one: Lightning's bars write to stdout, and in a file or a SLURM log
    their carriage returns pile up into one long line that appears only at the end."""
    return sys.stdout.isatty()


def progress_callbacks(name: str, bar_allowed: bool) -> tuple[list[pl.Callback], bool]:
    """The progress reporting of one Lightning loop named ``name``, and the Trainer's ``enable_progress_bar``: on a
    terminal (when ``bar_allowed``) a ``StepProgressBar``, elsewhere plain log lines; a start line either way."""
    bar = bar_allowed and output_is_terminal()
    report = StepProgressLog(name, periodic=not bar)
    return ([StepProgressBar(name=name), report] if bar else [report]), bar


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class StepProgressLog(pl.Callback):
    """Logs where a loop stands as plain lines, for logs that are files: when training starts (steps, batches per
    epoch, device), then with ``periodic`` every ``every_s`` seconds and at each of ``parts`` equal parts of the steps,
    e.g.
    ``student: step 300/1000 (30%), train/loss 0.42, 95 s elapsed, ~220 s left``. A prediction loop (the teacher's
    generation) is reported by batches the same way."""

    def __init__(self, name: str, *, periodic: bool = True, every_s: float = PROGRESS_EVERY_S,
                 parts: int = PROGRESS_PARTS, clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.name = name
        self.periodic = periodic
        self.every_s = every_s
        self.parts = parts
        self.clock = clock
        self._start(0, math.inf)

    def _start(self, done: int, total: float) -> None:
        self.total = total
        self.started_at = self.last_at = self.clock()
        self.first = self.last = done
        self.logged: int | None = None  # the step (or batch) of the last line

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        self._start(trainer.global_step, total)
        batches = trainer.num_training_batches
        per_epoch = f"{batches} batches per epoch" if math.isfinite(batches) else "an endless stream of batches"
        resumed = f", resuming at step {trainer.global_step}" if trainer.global_step else ""
        log.info("%s: training %s steps (%s) on %s%s", self.name, _count(total), per_epoch,
                 trainer.strategy.root_device, resumed)  # fmt: skip

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        self._progress("step", trainer.global_step, trainer.progress_bar_metrics)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The stage's one closing line (Lightning's "`Trainer.fit` stopped" says neither which model nor where it
        stood): where it ended, unless the last progress line already said so."""
        if self.logged != trainer.global_step:
            self._log_line("step", trainer.global_step, self.clock(), trainer.progress_bar_metrics)

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = sum(trainer.num_predict_batches)
        self._start(0, total)
        log.info("%s: %s batches to predict on %s", self.name, _count(total), trainer.strategy.root_device)

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        self._progress("batch", self.last + 1, {})

    def _progress(self, unit: str, done: int, metrics: dict[str, Any]) -> None:
        if done <= self.last:
            return  # a batch that accumulated gradients without a step
        now = self.clock()
        part_done = math.isfinite(self.total) and done * self.parts // self.total > self.last * self.parts // self.total
        if self.periodic and (now - self.last_at >= self.every_s or part_done or done == self.total):
            self._log_line(unit, done, now, metrics)
        self.last = done

    def _log_line(self, unit: str, done: int, now: float, metrics: dict[str, Any]) -> None:
        elapsed = now - self.started_at
        parts = [f"{self.name}: {unit} {done}/{_count(self.total)}"
                 + (f" ({done / self.total:.0%})" if math.isfinite(self.total) else "")]  # fmt: skip
        parts += [f"{key} {float(value):.4g}" for key, value in metrics.items()]
        parts.append(f"{_duration(elapsed)} elapsed")
        if math.isfinite(self.total) and done < self.total and done > self.first:
            parts.append(f"~{_duration(elapsed / (done - self.first) * (self.total - done))} left")
        log.info(", ".join(parts))
        self.last_at = now
        self.logged = done


def _count(total: float) -> str:
    return str(int(total)) if math.isfinite(total) else "?"
