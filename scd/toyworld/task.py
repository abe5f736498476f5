"""ToyWorld as a task (``dataset=toyworld``): the world's generator gives the splits, its teacher is trained in code
on the world's corpus (``teacher=toyworld``), its word-level vocabulary is what the student and simulator read, and
the checker judges rationales and predictions exactly.

The teacher's vocabulary is the world's, its prompt's and ``tokenizer.RESERVED_WORDS``; it does not depend on the
student's or simulator's text formats. The student and simulator get the teacher's tokenizer, extended by any word
their formats add (``extend_tokenizer``: new ids after the teacher's), so editing a format never retrains the teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from transformers import AutoTokenizer

from scd.config import Config
from scd.data.example import Example
from scd.data.records import RationaleRecord
from scd.evaluation.simulator import VIEWS, SimulatorRow, simulator_input
from scd.io import config_key, exclusive, publish_directory
from scd.student import formatting
from scd.task import Task
from scd.teacher.loading import teacher_prompt
from scd.teacher.strategies import DecodingStrategy, WrittenRationales
from scd.toyworld.checker import judge
from scd.toyworld.comparison import label_tables
from scd.toyworld.corpus import CorpusConfig
from scd.metrics import Metric
from scd.toyworld.metrics import (METRICS, item_fields, prediction_metrics, rule_of, teacher_item_fields,
                                   teacher_metrics)
from scd.toyworld.teacher import TeacherConfig, ensure_teacher
from scd.toyworld.tokenizer import extend_tokenizer
from scd.toyworld.world import World, WorldConfig, load_toyworld

T = TypeVar("T")
TEACHER_KEYS = ("corpus", "training")


# The field types the settings dataclasses use (their annotations are strings): the values each accepts, and its name.
FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "int": ((int,), "an integer"), "float": ((int, float), "a number"), "str": ((str,), "a string"),
    "bool": ((bool,), "true or false"),
}


def settings(cls: type[T], values: dict[str, Any] | None, key: str) -> T:
    """Build a settings dataclass from a config dict. Errors name the config key the user typed
    (``dataset.task.world.shortcut_strength``), not the dataclass field, and a value of the wrong type its type."""
    values = dict(values or {})
    for field in fields(cls):  # type: ignore[arg-type]
        if field.name not in values or str(field.type) not in FIELD_TYPES:
            continue
        accepted, name = FIELD_TYPES[str(field.type)]
        value = values[field.name]
        # bool is an int to isinstance, but true is no count.
        if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
            raise ValueError(f"{key}.{field.name} = {value!r}: expected {name}")
    try:
        return cls(**values)
    except TypeError as err:
        raise ValueError(f"{key}: {err}") from err
    except ValueError as err:
        # The dataclasses' own range errors start "WorldConfig.<field>" or "WorldConfig:".
        name = cls.__name__
        raise ValueError(str(err).replace(f"{name}.", f"{key}.", 1).replace(f"{name}:", f"{key}:", 1)) from err


def format_texts(example: Example) -> list[str]:
    """What the student (input and target, every tag mode) and the simulator (every view) make of ``example``."""
    tags = [formatting.task_tag(mode, counterfactual) for mode in formatting.TAG_MODES for counterfactual in (False, True)]
    rationale = example.rationale or ""
    student = [formatting.format_input(example.question, example.choices, tag) + formatting.CAUSAL_SEPARATOR
               + formatting.format_target(rationale, example.answer_text, tag) for tag in tags]  # fmt: skip
    row = SimulatorRow(example.question, example.choices, rationale, example.answer)
    return student + [simulator_input(row, view) for view in VIEWS]


class ToyWorldTask(Task):
    """``world``: the generator's parameters (``scd.toyworld.world.WorldConfig``). ``gold_ceiling_accuracy``: the test
    accuracy of the gold-teacher control measured in this world (mean of its seeds, experiments/toyworld/ATTEMPTS.md),
    reported beside every run's accuracy so that a reader can tell learning from guessing; null where not measured."""

    metrics: ClassVar[tuple[Metric, ...]] = METRICS
    figures: ClassVar[tuple[str, ...]] = ("scd.toyworld.figures.cue_agrees_vs_opposes",)
    teacher_metrics_version: ClassVar[int] = 1

    def __init__(self, config: Config, world: dict[str, Any] | None = None, gold_ceiling_accuracy: float | None = None,
                 *, decoding: DecodingStrategy | None = None) -> None:  # fmt: skip
        super().__init__(config, decoding=decoding)
        self.world_config = settings(WorldConfig, world, "dataset.task.world")
        self.gold_ceiling_accuracy = gold_ceiling_accuracy

    @cached_property
    def _generated(self) -> tuple[World, dict[str, list[Example]]]:
        return load_toyworld(self.world_config)

    @property
    def world(self) -> World:
        return self._generated[0]

    def splits(self) -> dict[str, list[Example]]:
        limit = self.config.dataset.limit
        return {name: examples[:limit] for name, examples in self._generated[1].items()}

    @cached_property
    def _teacher_dir(self) -> str | None:
        t = self.config.teacher
        if t.trained is None:
            return None
        unknown = set(t.trained) - set(TEACHER_KEYS)
        if unknown:
            raise ValueError(f"teacher.trained: unknown keys {sorted(unknown)}; use {' and '.join(TEACHER_KEYS)}")
        path = ensure_teacher(
            self.world_config,
            settings(CorpusConfig, t.trained.get("corpus"), "teacher.trained.corpus"),
            settings(TeacherConfig, t.trained.get("training"), "teacher.trained.training"),
            teacher_prompt(t),
            Path(self.config.paths.cache_dir),
            require_ready=self._decodes_with_teacher(),
            progress=self.config.trainer.enable_progress_bar,
        )
        return str(path)

    def _decodes_with_teacher(self) -> bool:
        """Whether the run's rationales or answers come from the teacher. Where none do (``decoding=gold``), a teacher
        that fails its probe only warns: it serves the fluency metric alone."""
        strategy = self.decoding
        written = isinstance(strategy, WrittenRationales) and strategy.decoder is None
        return not written or self.config.student.in_context is not None

    def trained_teacher(self) -> str | None:
        return self._teacher_dir

    def shared_tokenizer(self) -> str | None:
        """The trained teacher's tokenizer, or where the student's formats need more words, its extension (cached
        beside the teacher, keyed by its vocabulary)."""
        teacher_dir = self.trained_teacher()
        if teacher_dir is None:
            return super().shared_tokenizer()
        tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
        extended = extend_tokenizer(tokenizer, format_texts(self._generated[1]["train"][0]))
        if extended is tokenizer:
            return teacher_dir
        vocab = extended.get_vocab()
        digest = config_key(sorted(vocab, key=vocab.get))
        target = Path(teacher_dir).with_name(f"{Path(teacher_dir).name}-tokenizer-{digest}")
        with exclusive(target.parent):
            if not target.is_dir() or AutoTokenizer.from_pretrained(target).get_vocab() != vocab:
                publish_directory(extended.save_pretrained, target)
        return str(target)

    def teacher_metrics(self, rationale_dir: Path) -> dict[str, float]:
        return teacher_metrics(self.world, rationale_dir)

    def student_metrics(self, rationale_dir: Path, predictions: Sequence[dict[str, Any]]) -> dict[str, float]:
        metrics = prediction_metrics(self.world, rationale_dir, predictions)
        if self.gold_ceiling_accuracy is not None:
            metrics["toyworld/gold_ceiling_accuracy"] = float(self.gold_ceiling_accuracy)
        return metrics

    def label_rationale(self, record: RationaleRecord) -> str:
        """The checker's label: supporting, restatement, partial, irrelevant, generic, contradicting or malformed."""
        return judge(self.world, record.to_example(), record.rationale).label

    @classmethod
    def comparison_tables(cls, jobs: Sequence[Any], spec: dict[str, Any]) -> str:
        """The checker's label shares of the teacher's and the student's test rationales, per cell."""
        return label_tables(jobs, spec)

    def cluster_key(self, record: RationaleRecord) -> str:
        """The question's rule (category/property): the student's errors cluster by rule."""
        return rule_of(record)

    def item_fields(self, rationale_dir: Path, predictions: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return item_fields(self.world, rationale_dir, predictions)

    def teacher_item_fields(self, rationale_dir: Path) -> dict[str, dict[str, Any]]:
        return teacher_item_fields(self.world, rationale_dir)
