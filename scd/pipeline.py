"""The task behind `python run.py`: data -> teacher rationales -> student -> evaluation, in one run directory.

Each stage is a call into its package (scd.teacher, scd.student, scd.evaluation); this module only wires config to
them and writes ``metrics.json``. ``scd.cli`` wraps it for the command line (status, errors, sweeps).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, TypeVar

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import wandb
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from scd.config import Config
from scd.data.example import Example
from scd.evaluation.stage import run_evaluate_stage
from scd.evaluation.wandb_log import log_rationale_samples, scrub_secrets
from scd.loggers import build_logger
from scd.signals import raise_if_interrupted
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
            raise_if_interrupted()
            stage_started = time.perf_counter()
            run_student_stage(cfg, run_dir, logger, student_tokenizer_source(cfg, teacher_source))
            metrics["time/student_s"] = round(time.perf_counter() - stage_started, 1)
        if not is_global_zero():
            # A rank that Lightning's DDP launcher started: it took its share of the teacher and student stages;
            # evaluation and the run's files are rank 0's.
            return {}
        if "evaluate" in cfg.stages:
            raise_if_interrupted()
            stage_started = time.perf_counter()
            teacher = load_teacher_model(cfg, teacher_dir)
            metrics.update(run_evaluate_stage(cfg, run_dir, teacher, teacher_source, world))
            metrics["time/evaluate_s"] = round(time.perf_counter() - stage_started, 1)
        raise_if_interrupted()
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
