"""The config schema. Every YAML option in ``conf/`` is merged onto these dataclasses, so a misspelled key or a value
of the wrong type fails at start; ``validate`` then runs each dataclass's range checks. The groups that name a class
with ``_target_`` (the decoding strategy, the training objective, the optimizer, its schedule, the logger) stay config
here: ``scd.components`` builds them at the start of a run and the run hands them to the stages."""

from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf

from scd.models import InputLimit, check_arch, check_model_source, check_random_init

STAGES = ("teacher", "student", "evaluate")


# Seeds go to numpy and torch, which take 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1


def _check_choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {list(allowed)}, got {value!r}")


def _check_seed(key: str, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"{key} must be in [0, {MAX_SEED}], got {value}")


@dataclass
class DatasetConfig:
    name: str = MISSING
    # The task behind the data set (scd/task.py): its class, then its keyword arguments. The default reads the files
    # or hub copy below; a data set built in code names its own task class.
    task: dict[str, Any] = field(default_factory=lambda: {"_target_": "scd.task.DatasetTask"})
    # How the default task reads the files: a format registered in scd/data/formats.py (commonsenseqa, cose, ...).
    format: Optional[str] = None
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

    def check(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"dataset.limit must be >= 1 or null, got {self.limit}")
        if self.dev_size < 1:
            raise ValueError(f"dataset.dev_size must be >= 1, got {self.dev_size}")
        _check_seed("dataset.seed", self.seed)


@dataclass
class TeacherConfig:
    name: str = MISSING
    # A hub id or local directory; or null with `random_init` (a config built in code, for offline runs).
    name_or_path: Optional[str] = None
    random_init: Optional[dict[str, Any]] = None
    # Tokenizer id or path; null: the model's own; "byt5": ByT5's byte tokenizer, which needs no files.
    tokenizer: Optional[str] = None
    # Settings of a teacher the task trains in code, read by that task (its corpus and training).
    trained: Optional[dict[str, Any]] = None
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
        check_model_source("teacher", name_or_path=self.name_or_path, random_init=self.random_init, trained=self.trained)
        if self.num_demonstrations < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("teacher: num_demonstrations >= 0, max_new_tokens >= 1 and batch_size >= 1 are required")
        if self.random_init is not None:
            check_random_init(self.random_init, "teacher.random_init")
        _check_seed("teacher.seed", self.seed)
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"teacher.max_prompt_tokens must be >= 1 or null, got {self.max_prompt_tokens}")


@dataclass
class DecodingLoopConfig:
    """How the teacher's batched decoding loop runs, whatever the strategy (``decoding``) it decodes with. The one
    declaration of the loop's knobs: the loop's settings (``scd.teacher.decoding.DecodingSettings``) extend it."""

    # Run all branches as one batch (true) or as one forward per branch (false).
    merge_branches: bool = True
    # Encode the demonstrations once and share their KV cache across rows and branches.
    shared_prefix: bool = True
    # "chosen": stop when the chosen token completes the separator; "teacher": when the teacher's own top token would.
    stop_rule: str = "chosen"

    def check(self) -> None:
        if self.stop_rule not in ("chosen", "teacher"):
            raise ValueError(f"decoding_loop.stop_rule must be 'chosen' or 'teacher', got {self.stop_rule!r}")


@dataclass
class InContextConfig:
    """``student=icl_teacher``: the teacher answers the test questions in context instead of a trained student."""

    # The demonstrations' and the query's form, with both slots. {answer} before {rationale} (the paper's teacher
    # prompt) answers first and explains after; {rationale} first reasons, then answers. null: teacher.template.
    template: Optional[str] = None
    # Tokens the teacher may write for answer and rationale together.
    max_new_tokens: int = 48
    batch_size: int = 100

    def check(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("student.in_context: max_new_tokens and batch_size must be >= 1")


@dataclass
class LoraConfig:
    """``student.lora``: low-rank adapters (LoRA, through peft) train in place of a pretrained student's weights."""

    # The adapters' rank; null: no LoRA, every weight trains.
    r: Optional[int] = None
    alpha: float = 32.0
    dropout: float = 0.05
    # Module names to adapt; null: the family's default (scd.student.lora.DEFAULT_TARGETS).
    target_modules: Optional[list[str]] = None

    def check(self) -> None:
        if self.r is not None and self.r < 1:
            raise ValueError(f"student.lora.r must be >= 1 or null, got {self.r}")
        if self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"student.lora: alpha > 0 and 0 <= dropout < 1 are required, got alpha={self.alpha}, "
                             f"dropout={self.dropout}")  # fmt: skip


@dataclass
class StudentConfig:
    name: str = MISSING
    arch: str = "seq2seq"
    name_or_path: Optional[str] = None
    random_init: Optional[dict[str, Any]] = None
    # Tokenizer id or path; "teacher": the teacher's tokenizer (a task-trained teacher's own); null: the model's own.
    tokenizer: Optional[str] = None
    trust_remote_code: bool = False
    # The student's own numbers, which the optimizer and lr_schedule groups read.
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    batch_size: int = 8
    eval_batch_size: int = 32
    max_new_tokens: int = 96
    # Longest input (question and choices, tokens) in training, evaluation and scd.predict; a longer one is refused
    # naming the example, or with truncate_inputs cut to it.
    max_input_tokens: int = 512
    truncate_inputs: bool = False
    # Share of the student's own rationale tokens replaced at random for perturbed_consistency.
    perturb_share: float = 0.3
    # Dev checks without improvement before training stops (callbacks.early_stopping reads it).
    early_stopping_patience: int = 3

    # Low-rank adapters instead of full fine-tuning (student.lora.r=16); off by default.
    lora: LoraConfig = field(default_factory=LoraConfig)

    # The in-context teacher in the student's place (conf/student/icl_teacher.yaml): nothing is trained.
    in_context: Optional[InContextConfig] = None

    def check(self) -> None:
        check_arch(self.arch, "student.arch")
        if self.in_context is not None:
            if self.name_or_path is not None or self.random_init is not None:
                raise ValueError("student.in_context: the teacher answers, so set no student name_or_path or random_init")
            self.in_context.check()
            return
        check_model_source("student", name_or_path=self.name_or_path, random_init=self.random_init)
        if self.random_init is not None:
            check_random_init(self.random_init, "student.random_init")
        self.lora.check()
        if self.lora.r is not None and self.name_or_path is None:
            raise ValueError("student.lora adapts a pretrained student: set student.name_or_path (the exported adapter "
                             "names its base model, which a random_init does not have)")
        for key in ("batch_size", "eval_batch_size", "max_new_tokens", "max_input_tokens",
                    "early_stopping_patience"):
            if getattr(self, key) < 1:
                raise ValueError(f"student.{key} must be >= 1, got {getattr(self, key)}")
        if self.warmup_steps < 0:
            raise ValueError(f"student.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.perturb_share <= 1:
            raise ValueError(f"student.perturb_share must be in [0, 1], got {self.perturb_share}")

    def input_limit(self) -> InputLimit:
        return InputLimit(self.max_input_tokens, self.truncate_inputs, "student")


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
    # The simulator's initialization and data order: the run's seed by default, so that the seed variance of LAS
    # includes the simulator's.
    seed: int = II("seed")
    # Longest input (a view of question, choices and rationale, tokens); longer: refused, or cut with truncate_inputs.
    max_input_tokens: int = 512
    truncate_inputs: bool = False

    def check(self) -> None:
        check_model_source("simulator", name_or_path=self.name_or_path, random_init=self.random_init)
        if self.random_init is not None:
            check_random_init(self.random_init, "simulator.random_init")
        if self.bootstrap_samples < 1:
            raise ValueError(f"simulator.bootstrap_samples must be >= 1, got {self.bootstrap_samples}")
        if self.max_input_tokens < 1:
            raise ValueError(f"simulator.max_input_tokens must be >= 1, got {self.max_input_tokens}")
        _check_seed("simulator.seed", self.seed)

    def input_limit(self) -> InputLimit:
        return InputLimit(self.max_input_tokens, self.truncate_inputs, "simulator")


# Trainer arguments that scd sets itself: from the logger and callbacks groups, the run directory, and the atomic
# checkpoint writer.
TRAINER_ARGS_SET_BY_SCD = ("logger", "callbacks", "default_root_dir", "plugins")
# Where scd's defaults differ from Lightning's.
TRAINER_DEFAULTS = {"devices": 1, "precision": "32-true", "max_steps": 1000, "gradient_clip_val": 1.0,
                    "log_every_n_steps": 10, "enable_progress_bar": True, "deterministic": False}
LIGHTNING_TRAINER_DEFAULTS = {
    name: parameter.default for name, parameter in inspect.signature(pl.Trainer.__init__).parameters.items()
    if name != "self" and name not in TRAINER_ARGS_SET_BY_SCD
}
# Every argument of pytorch_lightning.Trainer (but those scd sets), untyped: Lightning itself checks the values when
# the student's Trainer is built at the start of a run (scd.student.stage.check_student_trainer).
TrainerConfig = make_dataclass(
    "TrainerConfig",
    [(name, Any, field(default=TRAINER_DEFAULTS.get(name, default))) for name, default in LIGHTNING_TRAINER_DEFAULTS.items()],
)
TrainerConfig.__doc__ = "Arguments of the Lightning Trainer used for the student (and the generation loop's devices)."


def trainer_arguments(trainer: Any) -> dict[str, Any]:
    """The Trainer arguments that differ from Lightning's defaults (so Lightning's PL_TRAINER_* variables still
    apply to the others)."""
    values = {name: getattr(trainer, name) for name in LIGHTNING_TRAINER_DEFAULTS}
    return {name: value for name, value in values.items() if value != LIGHTNING_TRAINER_DEFAULTS[name]}


@dataclass
class PathsConfig:
    # Optional: `python run.py --cfg job --resolve` prints the config of a job not started, whose directory is null.
    output_dir: Optional[str] = MISSING
    # Shared across runs: rationales and teachers trained by a task are reused from here.
    cache_dir: str = MISSING


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    # conf/decoding/<name>.yaml: a decoding strategy (scd.teacher.strategies), built by scd.components.
    decoding: Any = MISSING
    decoding_loop: DecodingLoopConfig = field(default_factory=DecodingLoopConfig)
    # conf/training/<name>.yaml: a training objective (scd.student.objectives), built by scd.components.
    training: Any = MISSING
    student: StudentConfig = field(default_factory=StudentConfig)
    # conf/optimizer/, conf/lr_schedule/: _target_ entries with _partial_, built and checked by scd.components.
    optimizer: Any = MISSING
    lr_schedule: Any = MISSING
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # conf/callbacks/: the student Trainer's callbacks by name, each a _target_ entry; null drops one.
    callbacks: dict[str, Any] = field(default_factory=dict)
    # conf/logger/: a _target_ entry with _partial_ (scd/loggers.py), built by scd.components; null: no logger.
    logger: Any = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    seed: int = 0
    # "last" resumes student training from the run's last checkpoint; or a checkpoint path.
    ckpt_path: Optional[str] = None
    # Replace what the run directory holds from a run with another config (else such a run is refused).
    overwrite: bool = False
    # torch's CPU threads; null: the cores this process may use, shared among the jobs the joblib launcher runs at once.
    threads: Optional[int] = None

    def check(self) -> None:
        if not self.stages:
            raise ValueError(f"stages must name at least one of {list(STAGES)}, got []")
        for stage in self.stages:
            _check_choice("stages[]", stage, STAGES)
        _check_seed("seed", self.seed)
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {self.threads}")
        if self.overwrite and self.ckpt_path == "last":
            raise ValueError("overwrite=true discards the checkpoints ckpt_path=last would resume from: give one of them")


def register_configs() -> None:
    """Register the schema with Hydra, the ``${scd_root:}`` resolver (the repository root, for shipped files) and
    ``${scd_pid:}`` (this process's id, which keeps default run directories of simultaneous runs apart)."""
    ConfigStore.instance().store(name="scd_schema", node=Config)
    if not OmegaConf.has_resolver("scd_root"):
        OmegaConf.register_new_resolver("scd_root", lambda: str(Path(__file__).resolve().parents[1]))
    if not OmegaConf.has_resolver("scd_pid"):
        OmegaConf.register_new_resolver("scd_pid", lambda: str(os.getpid()))


def check_schema_keys(node: DictConfig, prefix: str = "") -> None:
    """Refuse a key of a schema'd group that its dataclass lacks. Hydra refuses such a key unless it is added with
    ``+`` (``+trainer.max_step=10``, ``+student.lrr=5``); OmegaConf then keeps it where no code reads it. Groups typed
    as dicts (``callbacks``, ``random_init``, ...) are checked by the code that builds from them."""
    schema = OmegaConf.get_type(node)
    known = [f.name for f in fields(schema)] if is_dataclass(schema) else None
    for key, value in node.items_ex(resolve=False):
        dotted = f"{prefix}{key}"
        if known is not None and key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            if schema is TrainerConfig:
                owner = "not an argument of pytorch_lightning.Trainer"
                if key in TRAINER_ARGS_SET_BY_SCD:
                    owner = "scd sets it itself: from the logger and callbacks groups and the run directory"
            else:
                owner = f"not in {schema.__name__}"
            raise ValueError(f"unknown key {dotted} ({owner}){hint}")
        if isinstance(value, DictConfig) and not value._is_none():  # a group set to null has no keys
            check_schema_keys(value, f"{dotted}.")


def validate(cfg: DictConfig) -> Config:
    """Build the typed config and run every group's range checks; raises ValueError naming the key. The groups that
    name a class with ``_target_`` stay config here: ``scd.components.build_components`` builds them.

    The checks are not in ``__post_init__`` because the schema itself is built with unset (MISSING) fields."""
    check_schema_keys(cfg)
    config = OmegaConf.to_object(cfg)
    for group in (config, *(getattr(config, f.name) for f in fields(config))):
        if hasattr(group, "check"):
            group.check()
    return config
