"""The config schema. Every YAML option in ``conf/`` is merged onto these dataclasses, so a misspelled key or a value
of the wrong type fails at start; ``validate`` then runs each dataclass's range checks."""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf

STAGES = ("teacher", "student", "evaluate")


def _check_choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")


@dataclass
class DatasetConfig:
    name: str = MISSING
    # commonsenseqa | strategyqa | creak | qasc | cose | toyworld
    format: str = MISSING
    # A local directory holding the split files, or a Hugging Face hub data set id (needs network and `datasets`).
    path: Optional[str] = None
    hub_id: Optional[str] = None
    # Hub config name where a hub data set has several (cos_e: v1.0 or v1.11).
    hub_config: Optional[str] = None
    # split -> file name in `path`; a split mapped to null is derived (test <- official dev, dev <- held out from train).
    splits: dict[str, Optional[str]] = field(default_factory=dict)
    dev_size: int = 200
    # Size of a test split held out from train, for data sets with no labeled test file (StrategyQA).
    test_size: Optional[int] = None
    # Caps the examples per split (smoke runs, quick looks).
    limit: Optional[int] = None
    # Seeds the dev hold-out, the demonstrations and the answer perturbation.
    seed: int = 0
    # ToyWorld's generator parameters (scd.toyworld.world.WorldConfig); only for format=toyworld.
    world: Optional[dict[str, Any]] = None

    def check(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"dataset.limit must be >= 1 or null, got {self.limit}")
        if self.dev_size < 1:
            raise ValueError(f"dataset.dev_size must be >= 1, got {self.dev_size}")


@dataclass
class TeacherConfig:
    name: str = MISSING
    # A hub id or local directory; or null with `random_init` (a config built in code, for offline runs).
    name_or_path: Optional[str] = None
    random_init: Optional[dict[str, Any]] = None
    # Tokenizer id or path; null: the model's own; "byt5": ByT5's byte tokenizer, which needs no files.
    tokenizer: Optional[str] = None
    # Training settings of the in-code ToyWorld teacher (scd.toyworld.teacher); only for dataset=toyworld.
    toyworld: Optional[dict[str, Any]] = None
    dtype: str = "float32"
    device_map: Optional[str] = None
    trust_remote_code: bool = False
    seed: int = 0
    num_demonstrations: int = 7
    # Demonstrations given in config ({question, choices, answer, rationale}); null: sampled from the train split.
    demonstrations: Optional[list[dict[str, Any]]] = None
    instruction: str = ""
    template: str = "Q: {question}\nAnswer choices: {choices}\nA: The answer is {answer}. {rationale}"
    separator: str = "\n\n"
    max_new_tokens: int = 64
    batch_size: int = 16
    # Context length to check prompts against; null: the model config's max_position_embeddings.
    max_context: Optional[int] = None
    # Longest question part of a prompt (tokens after the demonstrations) the teacher decodes; a longer one is named in
    # an error before decoding starts, since a row's memory grows with its length. null: no limit.
    max_prompt_tokens: Optional[int] = 1024

    def check(self) -> None:
        sources = [self.name_or_path is not None, self.random_init is not None, self.toyworld is not None]
        if sum(sources) != 1:
            raise ValueError("teacher: set exactly one of name_or_path, random_init and toyworld")
        if self.num_demonstrations < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("teacher: num_demonstrations >= 0, max_new_tokens >= 1 and batch_size >= 1 are required")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"teacher.max_prompt_tokens must be >= 1 or null, got {self.max_prompt_tokens}")


# The decoding keys passed to the strategy class when set; null leaves the class's default (or a class without them).
STRATEGY_ARGUMENTS = ("lam", "plausibility")


@dataclass
class DecodingConfig:
    """The teacher's decoding: a strategy class (``scd.teacher.strategies``) and the batched loop's settings."""

    # The strategy class, e.g. scd.teacher.strategies.ContrastWrong.
    _target_: str = MISSING
    name: str = MISSING
    # Weight of the contrast prompts: argmax of log p(t | gold) - lam * log p(t | contrast).
    lam: Optional[float] = None
    # Keep only tokens with p >= plausibility * max p under the gold prompt (0 disables the filter).
    plausibility: Optional[float] = None
    # Run all branches as one batch (true) or as one forward per branch (false).
    merge_branches: bool = True
    # Encode the demonstrations once and share their KV cache across rows and branches.
    shared_prefix: bool = True
    # "chosen": stop when the chosen token completes the separator; "teacher": when the teacher's own top token would.
    stop_rule: str = "chosen"

    def strategy(self) -> Any:
        """The ``_target_`` class built with the strategy arguments that are set. The class checks their ranges; an
        argument it does not take, or a value it refuses, is one error naming the ``decoding.`` key."""
        module, _, name = self._target_.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as err:
            raise ValueError(f"decoding._target_: cannot import {self._target_!r} ({err})") from None
        arguments = {key: getattr(self, key) for key in STRATEGY_ARGUMENTS if getattr(self, key) is not None}
        takes = inspect.signature(cls).parameters
        for key in arguments:
            if key not in takes:
                raise ValueError(f"decoding.{key}: {self._target_} takes no {key} (it takes: "
                                 f"{', '.join(takes) or 'no arguments'}); remove it from the decoding config")
        try:
            return instantiate({"_target_": self._target_, **arguments})
        except InstantiationException as err:
            if isinstance(err.__cause__, ValueError):
                raise ValueError(f"decoding.{err.__cause__}") from None
            raise ValueError(f"decoding: cannot build {self._target_}: {err.__cause__ or err}") from None

    def check(self) -> None:
        # Building the strategy and the loop's settings runs their own checks, before any work starts. (Imported
        # here: the decoding module loads torch and transformers, which the config schema does not need.)
        from scd.teacher.decoding import DecodingSettings

        self.strategy()
        try:
            DecodingSettings(stop_rule=self.stop_rule)
        except ValueError as err:
            raise ValueError(f"decoding.{err}") from None


@dataclass
class TrainingConfig:
    # "standard": rationale + answer; "counterfactual": plus answers from rationales for perturbed answers.
    mode: str = "standard"
    alpha: float = 0.5
    # "distinct": [factual]/[counterfactual]; "shared": one tag for both tasks; "none": no tag.
    tags: str = "distinct"

    def check(self) -> None:
        _check_choice("training.mode", self.mode, ("standard", "counterfactual"))
        _check_choice("training.tags", self.tags, ("distinct", "shared", "none"))
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"training.alpha must be in [0, 1], got {self.alpha}")


@dataclass
class StudentConfig:
    name: str = MISSING
    arch: str = "seq2seq"
    name_or_path: Optional[str] = None
    random_init: Optional[dict[str, Any]] = None
    # Tokenizer id or path; "teacher": the teacher's tokenizer (ToyWorld's word-level one); null: the model's own.
    tokenizer: Optional[str] = None
    trust_remote_code: bool = False
    optimizer: str = "adamw"
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    batch_size: int = 8
    eval_batch_size: int = 32
    max_new_tokens: int = 96
    # Share of the student's own rationale tokens replaced at random for perturbed_consistency.
    perturb_share: float = 0.3
    early_stopping_patience: Optional[int] = 3

    def check(self) -> None:
        _check_choice("student.arch", self.arch, ("seq2seq", "causal"))
        _check_choice("student.optimizer", self.optimizer, ("adamw", "adafactor"))
        if (self.name_or_path is None) == (self.random_init is None):
            raise ValueError("student: set exactly one of name_or_path and random_init")
        if not 0 <= self.perturb_share <= 1:
            raise ValueError(f"student.perturb_share must be in [0, 1], got {self.perturb_share}")


@dataclass
class SimulatorConfig:
    name: str = MISSING
    name_or_path: Optional[str] = None
    random_init: Optional[dict[str, Any]] = None
    tokenizer: Optional[str] = None
    lr: float = 1e-3
    batch_size: int = 16
    max_steps: int = 200
    bootstrap_samples: int = 1000
    seed: int = 0

    def check(self) -> None:
        if (self.name_or_path is None) == (self.random_init is None):
            raise ValueError("simulator: set exactly one of name_or_path and random_init")
        if self.bootstrap_samples < 1:
            raise ValueError(f"simulator.bootstrap_samples must be >= 1, got {self.bootstrap_samples}")


@dataclass
class TrainerConfig:
    """Arguments of the Lightning Trainer used for the student (and the generation loop's devices)."""

    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: int = 1000
    max_epochs: Optional[int] = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = 1.0
    val_check_interval: Optional[Any] = None
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True
    deterministic: bool = False


@dataclass
class LoggerConfig:
    # "wandb" (offline unless WANDB_MODE or `mode` says online), "csv", or "none".
    name: str = "wandb"
    project: str = "scd"
    group: Optional[str] = None
    mode: str = "offline"

    def check(self) -> None:
        _check_choice("logger.name", self.name, ("wandb", "csv", "none"))
        _check_choice("logger.mode", self.mode, ("offline", "online", "disabled"))


@dataclass
class PathsConfig:
    output_dir: str = MISSING
    # Shared across runs: rationales and trained ToyWorld teachers are reused from here.
    cache_dir: str = MISSING


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    seed: int = 0
    # "last" resumes student training from the run's last checkpoint; or a checkpoint path.
    ckpt_path: Optional[str] = None

    def check(self) -> None:
        for stage in self.stages:
            _check_choice("stages[]", stage, STAGES)


def register_configs() -> None:
    """Register the schema with Hydra and the ``${scd_root:}`` resolver (the repository root, for shipped files)."""
    ConfigStore.instance().store(name="scd_schema", node=Config)
    if not OmegaConf.has_resolver("scd_root"):
        OmegaConf.register_new_resolver("scd_root", lambda: str(Path(__file__).resolve().parents[1]))


def validate(cfg: DictConfig) -> Config:
    """Build the typed config and run every group's range checks; raises ValueError naming the key.

    The checks are not in ``__post_init__`` because the schema itself is built with unset (MISSING) fields."""
    config = OmegaConf.to_object(cfg)
    for group in (config, *(getattr(config, f.name) for f in fields(config))):
        if hasattr(group, "check"):
            group.check()
    return config
