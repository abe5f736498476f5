"""What each metric is, for a reader: its name, the summary line that prints it, and what the report's figures do with
it.

The core declares the metrics any run may have (``CORE_METRICS``; the answer metrics are declared where they are
computed, ``scd.evaluation.answers``); a task declares its own in its class's ``metrics`` (``scd.task.Task``). The
summary and the report build their lines, columns and figures from these declarations and from the metrics present,
so no part of the core names a task's metrics. A metric without a declaration still reaches ``metrics.json``, the
report's table (under its key) and W&B.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# What a figure does with a metric (``Metric.roles``):
ACCURACY_FLOOR = "accuracy_floor"  # a level reached without the skill (e.g. by a shortcut): a line beside accuracy
ACCURACY_CEILING = "accuracy_ceiling"  # the gold-rationale control's accuracy, measured beforehand: a line too
RATIONALE_SHARE = "rationale_share"  # a share of the teacher's rationales: a bar in teacher_quality
CONSISTENCY = "consistency"  # the answer matches a given target, which a random answer does at chance
FAITHFULNESS = "faithfulness"  # another measure of the student's faithfulness: a bar in student_faithfulness
SUMMARY_GROUPS = ("student", "faithfulness", "teacher", "time")


@dataclass(frozen=True)
class Metric:
    """``key`` as in ``metrics.json``; ``name``, how a reader sees it standing alone (summary, figures, pages);
    ``group`` and ``line``, where the run's summary prints it (``SUMMARY_GROUPS``; no group: not printed; the core's
    metrics take line 0 of a group, a task's line 1); ``roles``, what the report's figures do with it."""

    key: str
    name: str
    group: str = ""
    line: int = 0
    roles: frozenset[str] = frozenset()
    unit: str = ""  # "s" (a time) or "count": printed as a whole number

    def __post_init__(self) -> None:
        if self.group and self.group not in SUMMARY_GROUPS:
            raise ValueError(f"metric {self.key}: group {self.group!r} is not one of {SUMMARY_GROUPS}")


class Catalog:
    """Declared metrics by key, in declaration order."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.by_key: dict[str, Metric] = {}
        for metric in metrics:
            self.by_key.setdefault(metric.key, metric)

    def __contains__(self, key: str) -> bool:
        return key in self.by_key

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.by_key.values())

    def name(self, key: str) -> str:
        """The metric's name, or its key where it is not declared."""
        metric = self.by_key.get(key)
        return metric.name if metric else key

    def with_role(self, role: str) -> list[str]:
        return [metric.key for metric in self if role in metric.roles]


JUDGE_SUPPORTS = "teacher/supports_answer"
PERPLEXITY = "teacher/fluency"
CORE_METRICS = (
    Metric("student/las", "LAS", "faithfulness"),
    Metric(JUDGE_SUPPORTS, "judge: supports answer", "teacher", roles=frozenset({RATIONALE_SHARE})),
    Metric("teacher/new_info", "new info", "teacher", roles=frozenset({RATIONALE_SHARE})),
    Metric(PERPLEXITY, "perplexity (lower is better)", "teacher"),
    Metric("teacher/vacuity", "vacuous", "teacher", roles=frozenset({RATIONALE_SHARE})),
    Metric("rationales/missing_explanations/train", "no explanation: train", "teacher", 2, unit="count"),
    Metric("rationales/missing_explanations/dev", "dev", "teacher", 2, unit="count"),
    Metric("rationales/missing_explanations/test", "test", "teacher", 2, unit="count"),
    Metric("time/teacher_s", "teacher", "time", unit="s"),
    Metric("time/student_s", "student", "time", unit="s"),
    Metric("time/evaluate_s", "evaluate", "time", unit="s"),
    Metric("time/total_s", "total", "time", unit="s"),
)
