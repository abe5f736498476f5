"""The task behind `python run.py`: data -> teacher rationales -> student -> evaluation, in one run directory.

Each stage is a call into its package (scd.teacher, scd.student, scd.evaluation); this module only wires config to
them and keeps the run directory's bookkeeping: ``status.json`` (running / completed / failed), ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import wandb
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from scd.config import Config, validate
from scd.data.example import Example
from scd.evaluation.stage import run_evaluate_stage
from scd.evaluation.wandb_log import log_rationale_samples, scrub_secrets
from scd.loggers import build_logger
from scd.student.data import read_split
from scd.student.stage import run_student_stage, student_tokenizer_source
from scd.teacher.stage import load_teacher_model, run_teacher_stage
from scd.teacher.store import atomic_write_text

log = logging.getLogger(__name__)
T = TypeVar("T")


def load_data(cfg: Config) -> tuple[dict[str, list[Example]], Any]:
    """The train/dev/test splits, and the ToyWorld world where the data set is ToyWorld (else None)."""
    d = cfg.dataset
    if d.format == "toyworld":
        from scd.toyworld.world import WorldConfig, load_toyworld

        world, splits = load_toyworld(settings(WorldConfig, d.world, "dataset.world"))
        if d.limit is not None:
            splits = {name: examples[: d.limit] for name, examples in splits.items()}
        return splits, world
    from scd.data.sources import load_splits

    if d.path is None and d.hub_id is None:
        raise ValueError(f"dataset {d.name}: set dataset.path (a directory with {dict(d.splits)}) or dataset.hub_id")
    splits = load_splits(
        d.format, d.path, d.hub_id, splits=d.splits, dev_size=d.dev_size, limit=d.limit, seed=d.seed,
        test_size=d.test_size, hub_config=d.hub_config,
    )
    return splits, None


def settings(cls: type[T], values: dict[str, Any] | None, key: str) -> T:
    """Build a module's settings dataclass from a config dict, naming the config key on an unknown field."""
    try:
        return cls(**(values or {}))
    except TypeError as err:
        raise ValueError(f"{key}: {err}") from err


def pipeline_texts() -> list[str]:
    """The fixed words the student and simulator put around ToyWorld text; its word-level vocabulary must cover them."""
    from scd.evaluation.simulator import VIEWS, SimulatorRow, simulator_input
    from scd.student.formatting import format_input, format_target, task_tag

    tags = [task_tag(mode, counterfactual) for mode in ("distinct", "shared") for counterfactual in (False, True)]
    row = SimulatorRow("q", ("a", "b"), "r", 0)
    return [format_input("q", ["a", "b"], tag) + " " + format_target("r", "a", tag) for tag in tags] + [
        simulator_input(row, view) for view in VIEWS
    ]


def toyworld_teacher(cfg: Config) -> str:
    """The directory of the trained ToyWorld teacher (trained on first use, then read from the cache)."""
    from scd.toyworld.corpus import CorpusConfig
    from scd.toyworld.teacher import TeacherConfig, ensure_teacher
    from scd.toyworld.world import WorldConfig

    if cfg.dataset.format != "toyworld":
        raise ValueError("teacher=toyworld is trained on ToyWorld's text: use it with dataset=toyworld")
    toyworld = cfg.teacher.toyworld or {}
    unknown = set(toyworld) - {"corpus", "training"}
    if unknown:
        raise ValueError(f"teacher.toyworld: unknown keys {sorted(unknown)}; use corpus and training")
    path = ensure_teacher(
        settings(WorldConfig, cfg.dataset.world, "dataset.world"),
        settings(CorpusConfig, toyworld.get("corpus"), "teacher.toyworld.corpus"),
        settings(TeacherConfig, toyworld.get("training"), "teacher.toyworld.training"),
        Path(cfg.paths.cache_dir),
        extra_texts=pipeline_texts(),
        progress=cfg.trainer.enable_progress_bar,
    )
    return str(path)


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    atomic_write_text(run_dir / "status.json", json.dumps({"status": status, **extra}) + "\n")


def sweep_group() -> str | None:
    """Jobs of one sweep share a W&B group: the sweep directory's name."""
    if is_multirun():
        return Path(HydraConfig.get().sweep.dir).name
    return None


def run(cfg: Config, raw: DictConfig, run_dir: Path) -> dict[str, float]:
    """Run the configured stages; returns the metrics also written to ``metrics.json``."""
    pl.seed_everything(cfg.seed, workers=True)
    started = time.perf_counter()
    splits, world = load_data(cfg)
    log.info("Data %s: %s", cfg.dataset.name, {name: len(examples) for name, examples in splits.items()})
    teacher_dir = toyworld_teacher(cfg) if cfg.teacher.toyworld is not None else None
    teacher_source = teacher_dir or cfg.teacher.tokenizer or cfg.teacher.name_or_path
    hyperparams = scrub_secrets(OmegaConf.to_container(raw, resolve=True))
    logger = build_logger(cfg.logger, run_dir, hyperparams, sweep_group())
    metrics: dict[str, float] = {}
    try:
        if "teacher" in cfg.stages:
            stage_started = time.perf_counter()
            run_teacher_stage(cfg, splits, run_dir, teacher_dir)
            metrics["time/teacher_s"] = round(time.perf_counter() - stage_started, 1)
        if "student" in cfg.stages:
            stage_started = time.perf_counter()
            run_student_stage(cfg, run_dir, logger, student_tokenizer_source(cfg, teacher_source))
            metrics["time/student_s"] = round(time.perf_counter() - stage_started, 1)
        if not is_global_zero():
            # A rank that Lightning's DDP launcher started: it took its share of the teacher and student stages;
            # evaluation and the run's files are rank 0's.
            return {}
        if "evaluate" in cfg.stages:
            stage_started = time.perf_counter()
            teacher = load_teacher_model(cfg, teacher_dir)
            metrics.update(run_evaluate_stage(cfg, run_dir, teacher, teacher_source, world))
            metrics["time/evaluate_s"] = round(time.perf_counter() - stage_started, 1)
        metrics["time/total_s"] = round(time.perf_counter() - started, 1)
        if logger:
            logger.log_metrics(metrics)
            if isinstance(logger, WandbLogger):
                test_rationales = read_split(run_dir / "rationales", "test")
                log_rationale_samples(logger.experiment, {cfg.decoding.name: test_rationales}, n=20)
    finally:
        # A sweep runs its jobs in one process: close each job's W&B run so the next job gets its own.
        if isinstance(logger, WandbLogger):
            wandb.finish()
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print_summary(cfg, run_dir, metrics)
    return metrics


def print_summary(cfg: Config, run_dir: Path, metrics: dict[str, float]) -> None:
    lines = [f"scd: {cfg.dataset.name} | decoding={cfg.decoding.name} training={cfg.training.mode} -> {run_dir}"]
    for key in sorted(metrics):
        value = metrics[key]
        lines.append(f"  {key:<40} {value:.4f}" if isinstance(value, float) else f"  {key:<40} {value}")
    print("\n".join(lines))


def is_global_zero() -> bool:
    """False in the processes Lightning's DDP launcher starts for ranks > 0 (they run this script again, with
    ``LOCAL_RANK`` set) and, once a Trainer has set up, in every rank but global rank 0."""
    return rank_zero_only.rank == 0


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def one_line(err: BaseException) -> str:
    """An error as one line: its first line (OmegaConf appends the full key and types on more lines), plus the
    options Hydra lists for an unknown group option, plus the first line of an OmegaConf cause Hydra wraps."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, OverrideParseException):
        text = f"cannot parse the override {err.override!r}: {text}"
    if isinstance(err, MissingConfigException) and err.options:
        text += f"; options: {', '.join(sorted(err.options))}"
    if isinstance(err, HydraException) and isinstance(err.__cause__, OmegaConfBaseException):
        text += f" {one_line(err.__cause__)}"
    return text


def cli(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function so that a bad command line (unknown key or group option, a value of the wrong
    type, override syntax) ends in one line ``scd: error: ...`` and exit status 1, like every other bad input.

    Hydra reports these itself, over several lines, unless HYDRA_FULL_ERROR=1 makes it raise; a user who sets
    HYDRA_FULL_ERROR=1 gets Hydra's full report and traceback instead."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        print(f"scd: error: {one_line(err)}", file=sys.stderr)
        sys.exit(1)


class SweepSummary(Callback):
    """Hydra callback (``hydra.callbacks`` in conf/config.yaml) closing a sweep: a failed job does not stop the
    others, but once all have run the sweep prints one line and exits with status 1 if any failed, so scripts and CI
    notice. Failed means what ``python -m scd.report`` shows as failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from scd.report import ReportError, collect_runs

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            runs = collect_runs(sweep_dir)
        except ReportError as err:
            print(f"scd: error: sweep {sweep_dir}: {err}", file=sys.stderr)
            sys.exit(1)
        failed = [run for run in runs if run.status != "completed"]
        if not failed:
            print(f"scd: sweep {sweep_dir}: all {len(runs)} jobs completed")
            return
        jobs = "; ".join(f"job {run.path.relative_to(sweep_dir)} ({run.error})" for run in failed)
        print(f"scd: error: sweep {sweep_dir}: {len(failed)} of {len(runs)} jobs failed: {jobs}; "
              f"python -m scd.report {sweep_dir} tabulates them", file=sys.stderr)
        sys.exit(1)


def main_task(raw: DictConfig) -> dict[str, float] | None:
    """Validate, run, and keep a job's failure to itself: a single run exits non-zero with one error line, a sweep
    job is marked failed in its status.json and the sweep goes on."""
    run_dir = Path(raw.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Only rank 0 keeps the run's status: the ranks of one DDP run share its directory.
        if is_global_zero():
            write_status(run_dir, "running")
        cfg = validate(raw)
        metrics = run(cfg, raw, run_dir)
    except Exception as err:  # noqa: BLE001 - every failure is recorded before it is reported
        if is_global_zero():
            try:
                write_status(run_dir, "failed", error=f"{type(err).__name__}: {err}")
            except OSError as status_err:
                # A full disk fails this write too: report the first failure, note this one in the log.
                log.error("%s", status_err)
        if is_multirun():
            log.error("job failed: %s\n%s", err, traceback.format_exc())
            return None
        if isinstance(err, (ValueError, OSError, ImportError, KeyError, OmegaConfBaseException)):
            print(f"scd: error: {one_line(err)}", file=sys.stderr)
            sys.exit(1)
        raise
    if is_global_zero():
        write_status(run_dir, "completed")
    return metrics
