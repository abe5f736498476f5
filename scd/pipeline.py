"""What `python run.py` does: data -> teacher rationales -> student -> evaluation, in one run directory.

The data set's task (``scd.task``, named by ``dataset.task``) gives the splits, a teacher it trains itself if any,
the tokenizer the student and simulator share with the teacher, and its exact metrics. Each stage is a call into its
package (scd.teacher, scd.student, scd.evaluation); this module only wires config and task to them and writes
``metrics.json``. ``scd.cli`` wraps it for the command line (status, errors, sweeps).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import wandb
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from scd.components import Components
from scd.config import Config
from scd.evaluation.stage import answering_prompt, run_evaluate_stage
from scd.evaluation.teacher_metrics import RationaleSetMetrics
from scd.evaluation.items import write_teacher_items
from scd.evaluation.wandb_log import log_rationale_samples
from scd.io import atomic_write_text, scrub_secrets
from scd.data.records import read_split
from scd.loggers import build_logger, quiet_library_noise
from scd.signals import raise_if_interrupted
from scd.student.stage import (check_student_inputs, check_student_trainer, check_validation_interval,
                               run_student_stage)
from scd.summary import print_summary
from scd.task import build_task
from scd.teacher.stage import run_teacher_stage
from scd.teacher.store import TEACHER_METRICS_FILE

log = logging.getLogger(__name__)


def sweep_group() -> str | None:
    """Jobs of one sweep share a W&B group: the sweep directory's name."""
    if is_multirun():
        return Path(HydraConfig.get().sweep.dir).name
    return None


def seed_stage(seed: int, stage: str) -> None:
    """Seed Python's, numpy's and torch's generators from (``seed``, ``stage``) at the start of each stage, so that
    what one stage draws never moves another: a student trained after a teacher stage that generated rationales is
    the one trained after a teacher stage that read them from the cache."""
    digest = hashlib.sha256(f"scd-stage-{seed}-{stage}".encode()).digest()
    pl.seed_everything(int.from_bytes(digest[:4], "little"), workers=True, verbose=False)


def run(cfg: Config, components: Components, raw: DictConfig, run_dir: Path,
        provenance: dict[str, Any] | None = None) -> dict[str, float]:  # fmt: skip
    """Run the configured stages with the run's ``components`` (``scd.components.build_components``), each handed to
    the stage that uses it; returns the metrics also written to ``metrics.json``. ``provenance``
    (``scd.provenance``) goes to the logger's run config."""
    quiet_library_noise()
    seed_stage(cfg.seed, "data")
    started = time.perf_counter()
    checked_trainer = check_student_trainer(cfg, components.training, run_dir)
    if cfg.student.in_context is not None:
        answering_prompt(cfg.teacher, cfg.student.in_context)  # its template's slots, before the teacher stage
    task = build_task(cfg, components.decoding)
    splits = task.splits()
    log.info("Data %s: %s", cfg.dataset.name, {name: len(examples) for name, examples in splits.items()})
    if "student" in cfg.stages and cfg.student.in_context is None:
        check_validation_interval(checked_trainer, len(splits["train"]), cfg.student.batch_size)
    teacher_dir = task.trained_teacher()
    shared_tokenizer = task.shared_tokenizer()
    if "student" in cfg.stages and cfg.student.in_context is None:
        check_student_inputs(cfg.student, components.training.tags, splits, shared_tokenizer)
    hyperparams = scrub_secrets(OmegaConf.to_container(raw, resolve=True))
    if provenance is not None:
        hyperparams["provenance"] = provenance
    logger = build_logger(components.logger, run_dir, hyperparams, sweep_group())
    metrics = earlier_stage_times(run_dir, cfg.stages)
    try:
        if "teacher" in cfg.stages:
            seed_stage(cfg.seed, "teacher")
            stage_started = time.perf_counter()
            measure = RationaleSetMetrics(cfg, task, shared_tokenizer)
            rationale_dir = run_teacher_stage(cfg, components.decoding, task, splits, run_dir, measure)
            write_teacher_items(rationale_dir, task)
            metrics["time/teacher_s"] = round(time.perf_counter() - stage_started, 1)
        if "student" in cfg.stages:
            raise_if_interrupted()
            seed_stage(cfg.seed, "student")
            stage_started = time.perf_counter()
            run_student_stage(cfg, components, run_dir, logger, shared_tokenizer)
            metrics["time/student_s"] = round(time.perf_counter() - stage_started, 1)
        if not is_global_zero():
            # A rank that Lightning's DDP launcher started: it took its share of the teacher and student stages;
            # evaluation and the run's files are rank 0's.
            return {}
        if "evaluate" in cfg.stages:
            raise_if_interrupted()
            seed_stage(cfg.seed, "evaluate")
            stage_started = time.perf_counter()
            tags = components.training.tags
            metrics.update(run_evaluate_stage(cfg, tags, run_dir, task, shared_tokenizer, teacher_dir, splits["train"]))
            metrics["time/evaluate_s"] = round(time.perf_counter() - stage_started, 1)
        metrics.update(rationale_set_metrics(run_dir))
        raise_if_interrupted()
        metrics["time/total_s"] = round(time.perf_counter() - started, 1)
        if logger:
            logger.log_metrics(metrics)
            if isinstance(logger, WandbLogger):
                test_rationales = read_split(run_dir / "rationales", "test")
                log_rationale_samples(logger.experiment, {components.decoding.name: test_rationales}, n=20)
    finally:
        # A sweep runs its jobs in one process: close each job's W&B run so the next job gets its own.
        if isinstance(logger, WandbLogger):
            wandb.finish()
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print_summary(cfg, components, run_dir, metrics)
    return metrics


STAGE_TIMES = {"teacher": "time/teacher_s", "student": "time/student_s", "evaluate": "time/evaluate_s"}


def earlier_stage_times(run_dir: Path, stages: list[str]) -> dict[str, float]:
    """The times of the stages before the first one this run runs, from the run directory's ``metrics.json``: an
    evaluate-only run keeps the teacher's and the student's times, which still describe its outputs."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return {}
    previous = json.loads(path.read_text(encoding="utf-8"))
    first = min(list(STAGE_TIMES).index(stage) for stage in stages)
    return {key: previous[key] for key in list(STAGE_TIMES.values())[:first] if key in previous}


def rationale_set_metrics(run_dir: Path) -> dict[str, float]:
    """The metrics the teacher stage measured for the run's rationales (none before a teacher stage has run)."""
    path = run_dir / "rationales" / TEACHER_METRICS_FILE
    if not path.exists():
        if (run_dir / "rationales").is_dir():
            log.warning("No teacher metrics in %s: rerun the teacher stage to measure its rationales", path.parent)
        return {}
    return json.loads(path.read_text())


def is_global_zero() -> bool:
    """False in the processes Lightning's DDP launcher starts for ranks > 0 (they run this script again, with
    ``LOCAL_RANK`` set) and, once a Trainer has set up, in every rank but global rank 0."""
    return rank_zero_only.rank == 0


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
