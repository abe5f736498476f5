"""The student stage: build the student from config, fit it on ``rationales/``, export it to ``student/``."""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger

from scd.components import Components
from scd.config import Config, StudentConfig, trainer_arguments
from scd.models import load_model, load_tokenizer
from scd.student.callbacks import build_callbacks, with_monitor
from scd.progress import StepProgressLog, output_is_terminal
from scd.data.example import Example
from scd.student.data import StudentDataModule
from scd.student.evaluate import prompt_ids
from scd.student.formatting import task_tag
from scd.student.lora import apply_lora
from scd.student.module import OptimizerFactory, ScheduleFactory, StudentModule, logged_metric_names, selection_metric
from scd.student.objectives import Objective
from scd.student.train import build_trainer, fit_student

log = logging.getLogger(__name__)


def student_tokenizer_source(student: StudentConfig, teacher_source: str | None) -> str:
    """``student.tokenizer: teacher`` shares the teacher's tokenizer (a task-trained teacher's own)."""
    if student.tokenizer == "teacher":
        if teacher_source is None:
            raise ValueError("student.tokenizer=teacher needs a teacher with a tokenizer")
        return teacher_source
    source = student.tokenizer or student.name_or_path
    if source is None:
        raise ValueError("student.tokenizer is required for a random_init student")
    return source


def build_student(s: StudentConfig, seed: int, tokenizer_source: str, objective: Objective,
                  optimizer: OptimizerFactory, lr_schedule: ScheduleFactory) -> StudentModule:  # fmt: skip
    tokenizer = load_tokenizer(tokenizer_source, trust_remote_code=s.trust_remote_code)
    model = load_model(
        s.arch, tokenizer, name_or_path=s.name_or_path, random_init=s.random_init,
        trust_remote_code=s.trust_remote_code, seed=seed,
    )
    if s.lora.r is not None:
        model = apply_lora(model, s.lora, s.arch, seed=seed)
    return StudentModule(model, tokenizer, objective, optimizer=optimizer, lr_schedule=lr_schedule)


def student_trainer(cfg: Config, objective: Objective, run_dir: Path, logger: Logger | bool) -> pl.Trainer:
    """The Trainer from ``trainer`` (every Lightning argument) and the ``callbacks`` group, whose monitors default to
    the term of ``objective`` that selects checkpoints. Its progress bar shows on a terminal only; elsewhere, and with
    ``trainer.enable_progress_bar=false``, progress is logged as plain lines."""
    bar = cfg.trainer.enable_progress_bar and output_is_terminal()
    built = build_callbacks(cfg.callbacks, progress_bar=bar, monitor=selection_metric(objective))
    callbacks = [*built, StepProgressLog("student", periodic=not bar)]
    return build_trainer(run_dir, {**trainer_arguments(cfg.trainer), "enable_progress_bar": bar}, callbacks, logger)


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    lightning = logging.getLogger("pytorch_lightning")
    level = lightning.level
    lightning.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lightning.setLevel(level)


# Lightning's own counters, which a checkpoint callback may monitor beside what the module logs.
LIGHTNING_COUNTERS = ("epoch", "step")


def check_student_trainer(cfg: Config, objective: Objective, run_dir: Path) -> pl.Trainer:
    """Build the student's Trainer, so that Lightning refuses bad Trainer arguments or callbacks before the teacher
    stage rather than after it, and check what Lightning checks only in ``fit``: each callback's ``monitor``. Returns
    the Trainer for ``check_validation_interval``, which needs the data; its device report is left to the real one."""
    with _quiet_lightning():
        trainer = student_trainer(cfg, objective, run_dir, logger=False)
    logged = logged_metric_names(objective)
    for name, node in with_monitor(cfg.callbacks, selection_metric(objective)).items():
        monitor = node.get("monitor") if node else None
        if monitor is not None and monitor not in (*logged, *LIGHTNING_COUNTERS):
            raise ValueError(f"callbacks.{name}.monitor: the student logs no {monitor!r}; with training="
                             f"{objective.mode} it logs {', '.join(logged)}")
    return trainer


def check_validation_interval(trainer: pl.Trainer, train_questions: int, batch_size: int) -> None:
    """Refuse an int ``trainer.val_check_interval`` above an epoch's training batches, which Lightning refuses only
    when ``fit`` starts, after the teacher stage. ``train_questions`` (one batch entry each) bounds the batches from
    above, so nothing Lightning would accept is refused. ``trainer`` is ``check_student_trainer``'s."""
    interval = trainer.val_check_interval
    if not isinstance(interval, int) or trainer.check_val_every_n_epoch is None or trainer.limit_val_batches == 0:
        return
    batches = math.ceil(train_questions / batch_size)
    limit = trainer.limit_train_batches
    batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    if 0 < batches < interval:
        raise ValueError(
            f"trainer.val_check_interval={interval}: an epoch has at most {batches} training batches "
            f"({train_questions} training questions in batches of student.batch_size={batch_size}); use at most "
            f"{batches}, a share of an epoch (e.g. 0.5), or trainer.check_val_every_n_epoch=null to count batches "
            "across epochs")


def check_student_inputs(
    student: StudentConfig, tags: str, splits: dict[str, list[Example]], shared_tokenizer: str | None
) -> None:
    """Refuse, before the teacher stage, a training or dev question whose student input is over
    ``student.max_input_tokens``: the student stage would refuse it only after the teacher had written every
    rationale. Checked with the factual task tag; the stage checks every row again as it encodes it (a counterfactual
    row's tag may be a token or two longer). ``tags``: the objective's task tags."""
    limit = student.input_limit()
    if limit.truncate:
        return
    tokenizer = load_tokenizer(student_tokenizer_source(student, shared_tokenizer),
                               trust_remote_code=student.trust_remote_code)  # fmt: skip
    tag = task_tag(tags, False)
    for split in ("train", "dev"):
        for example in splits[split]:
            prompt_ids(tokenizer, student.arch, example.question, example.choices, tag,
                       example_id=f"{split} {example.id}", input_limit=limit)  # fmt: skip


def run_student_stage(
    cfg: Config, components: Components, run_dir: Path, logger: Logger | bool, shared_tokenizer: str | None,
) -> Path:
    """Train the student on the objective, optimizer and schedule of ``components``. ``shared_tokenizer`` is what
    ``student.tokenizer: teacher`` loads.
    ``student.in_context`` (the teacher answering in the student's place) trains nothing."""
    if cfg.student.in_context is not None:
        log.info("student=%s: the teacher answers in context at evaluation; nothing to train", cfg.student.name)
        return run_dir / "student"
    objective = components.training
    module = build_student(cfg.student, cfg.seed, student_tokenizer_source(cfg.student, shared_tokenizer), objective,
                           components.optimizer, components.lr_schedule)  # fmt: skip
    start = getattr(module.model.config, "decoder_start_token_id", None)
    datamodule = StudentDataModule(
        run_dir / "rationales", module.tokenizer, cfg.student.arch, objective,
        batch_size=cfg.student.batch_size, eval_batch_size=cfg.student.eval_batch_size,
        decoder_start_token_id=start, input_limit=cfg.student.input_limit(),
    )
    return fit_student(module, datamodule, student_trainer(cfg, objective, run_dir, logger), ckpt_path=cfg.ckpt_path)
