"""Shared fixtures: the real config tree composed with Hydra, shrunk to tiny settings and a temporary directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from scd.components import Components, build_components
from scd.config import Config, register_configs, validate
from scd.teacher.prompt import PromptTemplate

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

register_configs()
# Tiny models run faster on one thread, and the suite shares the machine with whatever else runs.
torch.set_num_threads(1)
# Random-init students for unit tests, by architecture: seconds on a CPU.
TINY_STUDENTS = {
    "seq2seq": {"model_type": "t5", "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 2},
    "causal": {"model_type": "gpt_neox", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
               "intermediate_size": 64},
}
# The prompt the ToyWorld teacher is trained on and prompted with, from its one owner, conf/teacher/toyworld.yaml.
_TOYWORLD_TEACHER = OmegaConf.load(CONF / "teacher" / "toyworld.yaml")
TOYWORLD_PROMPT = PromptTemplate(_TOYWORLD_TEACHER.template, _TOYWORLD_TEACHER.separator)
# No test may reach W&B's servers.
os.environ.setdefault("WANDB_MODE", "offline")


def compose_config(overrides: list[str], run_dir: Path, cache_dir: Path) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.cache_dir = str(cache_dir)
        # The suite's one thread (above), also in runs started in process, unless a test sets threads itself.
        if not any(override.startswith("threads=") for override in overrides):
            cfg.threads = 1
    return cfg


def validated(raw: DictConfig) -> tuple[Config, Components]:
    """The typed config and the run's components, as ``scd.cli.main_task`` builds them before a run."""
    cfg = validate(raw)
    return cfg, build_components(cfg)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_config(*overrides, run="run")`` composes conf/ with ``experiment=smoke`` plus the overrides."""

    def make(*overrides: str, run: str = "run") -> DictConfig:
        return compose_config(["experiment=smoke", *overrides], tmp_path / run, tmp_path / "cache")

    return make
