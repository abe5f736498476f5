"""The student stage: build the student from config, fit it on ``rationales/``, export it to ``student/``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from pytorch_lightning.loggers import Logger

from scd.config import Config
from scd.models import load_model, load_tokenizer
from scd.student.data import StudentDataModule
from scd.student.module import StudentModule
from scd.student.train import fit_student


def student_tokenizer_source(cfg: Config, teacher_source: str | None) -> str:
    """``student.tokenizer: teacher`` shares the teacher's tokenizer (ToyWorld's word-level one)."""
    if cfg.student.tokenizer == "teacher":
        if teacher_source is None:
            raise ValueError("student.tokenizer=teacher needs a teacher with a tokenizer")
        return teacher_source
    source = cfg.student.tokenizer or cfg.student.name_or_path
    if source is None:
        raise ValueError("student.tokenizer is required for a random_init student")
    return source


def build_student(cfg: Config, tokenizer_source: str) -> StudentModule:
    s = cfg.student
    tokenizer = load_tokenizer(tokenizer_source, trust_remote_code=s.trust_remote_code)
    model = load_model(
        s.arch, tokenizer, name_or_path=s.name_or_path, random_init=s.random_init,
        trust_remote_code=s.trust_remote_code, seed=cfg.seed,
    )
    return StudentModule(
        model, tokenizer, s.arch, alpha=cfg.training.alpha if cfg.training.mode == "counterfactual" else 0.0,
        optimizer=s.optimizer, lr=s.lr, weight_decay=s.weight_decay, warmup_steps=s.warmup_steps,
    )


def run_student_stage(cfg: Config, run_dir: Path, logger: Logger | bool, tokenizer_source: str) -> Path:
    module = build_student(cfg, tokenizer_source)
    datamodule = StudentDataModule(
        run_dir / "rationales", module.tokenizer, cfg.student.arch, training=cfg.training.mode,
        tags=cfg.training.tags, batch_size=cfg.student.batch_size, eval_batch_size=cfg.student.eval_batch_size,
        decoder_start_token_id=getattr(module.model.config, "decoder_start_token_id", None),
    )
    trainer_kwargs = asdict(cfg.trainer)
    return fit_student(
        module, datamodule, run_dir=run_dir, trainer_kwargs=trainer_kwargs, logger=logger,
        ckpt_path=cfg.ckpt_path, early_stopping_patience=cfg.student.early_stopping_patience,
    )
