"""Helpers shared by several test modules (fixtures shared by several are in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from scd.config import validate
from scd.models import load_model, load_tokenizer
from scd.student.callbacks import build_callbacks
from scd.student.data import StudentDataModule
from scd.student.module import StudentModule
from scd.student.objectives import Counterfactual, Objective, Standard
from scd.student.train import build_trainer
from scd.task import build_task
from scd.teacher.decoding import DecodingSettings
from scd.teacher.generation import TeacherModule
from scd.teacher.prompt import PromptTemplate
from scd.teacher.stage import run_teacher_stage
from scd.toyworld.world import WorldConfig
from tests.conftest import ROOT
from tests.conftest import TINY_STUDENTS as TINY
from tests.conftest import compose_config, validated


# From test_decoding.py
TINY_NEOX = dict(
    model_type="gpt_neox", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
    max_position_embeddings=1024,
)


# With the default init range (0.02) a model this small ignores its prompt: every row decodes the same tokens and
# no contrast changes any. A wide range makes its output depend on the prompt.
PROMPT_SENSITIVE_NEOX = {**TINY_NEOX, "initializer_range": 0.3}


NEVER = "\x00\x00\x00"  # a separator the model will not produce, so rows run to max_new_tokens


# From test_contrast_all_wrong.py
@pytest.fixture(scope="module")
def teacher():
    tokenizer = load_tokenizer("byt5")
    model = load_model("causal", tokenizer, random_init=PROMPT_SENSITIVE_NEOX, seed=0).eval()
    return model, tokenizer


def teacher_module(teacher, strategy):
    model, tokenizer = teacher
    prefix = "Q: Is ice cold?\nAnswer choices: yes | no\nA: The answer is yes. Ice is frozen water.\n\n"
    return TeacherModule(model, tokenizer, PromptTemplate(), prefix, "test", strategy,
                         DecodingSettings(max_new_tokens=12))


def branches_reference(model, prefix, branches, lam, steps):
    """The definition, naively: full forward passes over each whole prompt at every step, one example at a time."""
    out = []
    for gold, *others in branches:
        rows, ids = [prefix + gold] + [prefix + o for o in others], []
        for _ in range(steps):
            logp = [torch.log_softmax(model(torch.tensor([row])).logits[0, -1], -1) for row in rows]
            token = int((logp[0] - lam * torch.stack(logp[1:]).mean(0)).argmax())
            ids.append(token)
            rows = [row + [token] for row in rows]
        out.append(ids)
    return out


def stage_rationales(make_config, tmp_path, option: str) -> list[str]:
    """The train rationales the teacher stage writes under ``decoding=<option>`` (every record names it)."""
    cfg, components = validated(make_config(f"decoding={option}", run=option))
    task = build_task(cfg, components.decoding)
    out = run_teacher_stage(cfg, components.decoding, task, task.splits(), tmp_path / option)
    records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert {r["decoding"] for r in records} == {option}
    return [r["rationale"] for r in records]


# From test_reliability.py
# Slow enough to be hit between batches: one rationale per batch, 36 rationales of up to 32 bytes.
SLOW_TEACHER = ["experiment=smoke", "stages=[teacher]", "teacher.batch_size=1", "teacher.max_new_tokens=32"]


N_RATIONALES = 36  # smoke: 8 train + 4 dev + 6 test gold rationales, 8 + 4 + 6 counterfactual ones


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # One thread, as in process: the rationales of a killed-and-resumed run are compared with in-process ones.
    return {**os.environ, "SCD_CACHE_DIR": str(tmp_path / "cli_cache"), "WANDB_MODE": "offline",
            "OMP_NUM_THREADS": "1", **extra}


def start(args: list[str], tmp_path: Path, log_name: str, env: dict[str, str]) -> subprocess.Popen:
    # A file, not a pipe: a full pipe would stall the child. The child keeps its own copy of the descriptor.
    with open(tmp_path / log_name, "w") as log:
        return subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


# From test_report.py
def make_run(sweep: Path, job: int, decoding: str, training: str, seed: int, metrics=None, status=None) -> Path:
    run_dir = sweep / str(job)
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"seed: {seed}\ndecoding:\n  name: {decoding}\n  lam: 0.5\ntraining:\n  mode: {training}\n  alpha: 0.5\n"
    )
    (run_dir / ".hydra" / "overrides.yaml").write_text(f"- decoding={decoding}\n- training={training}\n- seed={seed}\n")
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if status is not None:
        (run_dir / "status.json").write_text(json.dumps(status))
    return run_dir


def metrics(accuracy, las, low, high, new_info, fluency):
    return {
        "student/accuracy": accuracy, "student/las": las, "student/las_ci_low": low, "student/las_ci_high": high,
        "student/las_leaked": 0.3, "student/las_n_leaked": 10,
        "student/perturbed_consistency": 0.8, "student/counterfactual_consistency": 0.6,
        "teacher/new_info": new_info, "teacher/fluency": fluency, "toyworld/rationale_exact": 0.9,
    }


# From test_student_train.py
FIXTURES = Path(__file__).parent / "fixtures" / "student" / "rationales"


TRAINER = {
    "accelerator": "cpu",
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "log_every_n_steps": 1,
    "gradient_clip_val": 1.0,
}


OBJECTIVES = {"standard": Standard, "counterfactual": Counterfactual}


def trainer(run_dir: Path, max_steps: int, *, patience: int | None = None, logger=False, **kwargs):
    """The student's Trainer with the callbacks of conf/callbacks/ (early stopping only with ``patience``)."""
    overrides = [f"student.early_stopping_patience={patience}"] if patience else ["callbacks.early_stopping=null"]
    cfg = validate(compose_config(overrides, run_dir, run_dir / "cache"))
    callbacks = build_callbacks(cfg.callbacks, progress_bar=False, monitor="val/factual_loss")
    return build_trainer(run_dir, {**TRAINER, "max_steps": max_steps, **kwargs}, callbacks, logger)


class CountingStudent(StudentModule):
    """Counts the training steps this instance ran."""

    steps_run = 0

    def training_step(self, batch, batch_idx):
        self.steps_run += 1
        return super().training_step(batch, batch_idx)


def student(arch: str, training: str, tags: str = "distinct", batch_size: int = 4, model=None, rationales=FIXTURES):
    tokenizer = load_tokenizer("byt5")
    model = model or load_model(arch, tokenizer, random_init=TINY[arch])
    objective: Objective = OBJECTIVES[training](tags=tags)
    data = StudentDataModule(
        rationales, tokenizer, arch, objective, batch_size=batch_size,
        decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
    )
    optimizer = partial(torch.optim.AdamW, lr=3e-3, weight_decay=0.0)
    lr_schedule = partial(get_linear_schedule_with_warmup, num_warmup_steps=1)
    return CountingStudent(model, tokenizer, objective, optimizer=optimizer, lr_schedule=lr_schedule), data


# From test_toyworld_teacher.py
TINY_WORLD = WorldConfig(n_categories=2, n_mc_choices=2, entities_per_category=3, n_properties=6, n_train=20, n_dev=4, n_test=4)
