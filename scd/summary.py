"""The summary ``python run.py`` prints at the end of a run: a few grouped lines, each metric next to what it means.

Groups: the student (accuracy beside the chance level and, where the task reports them, the levels it declares as
floors and ceilings for accuracy: always following a shortcut, a student distilled from gold rationales), faithfulness,
the teacher's rationales, and time. Which metric goes on which line, under which name, is what the core and the run's
task declare (``scd.metrics``). Metrics a run did not compute are left out, and one it computed but could not measure
(``NaN``: e.g. a share of no items) reads "n/a"; every metric is in ``metrics.json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from scd.components import Components
from scd.config import Config
from scd.evaluation.answers import ANSWER_METRICS
from scd.data.records import RationaleFileError, read_split
from scd.metrics import ACCURACY_CEILING, ACCURACY_FLOOR, CORE_METRICS, SUMMARY_GROUPS, Catalog, Metric
from scd.task import Task, task_class

NOT_MEASURED = "n/a"
ACCURACY = "student/accuracy"
LAS_INTERVAL = ("student/las_ci_low", "student/las_ci_high")


def metric_catalog(tasks: Iterable[type[Task]] = ()) -> Catalog:
    """The core's declarations, then the answer metrics', then each task's."""
    answer_metrics = [declaration for declaration, _, _ in ANSWER_METRICS.values()]
    return Catalog([*CORE_METRICS, *answer_metrics, *(metric for task in tasks for metric in task.metrics)])


def chance_level(run_dir: Path) -> float | None:
    """Expected accuracy of a uniform guess on the test split: the mean of 1 / number of choices."""
    try:
        test = read_split(run_dir / "rationales", "test")
    except RationaleFileError:
        return None
    return float(np.mean([1 / len(record.choices) for record in test])) if test else None


def _measured(metrics: dict[str, float], key: str) -> bool:
    return key in metrics and math.isfinite(metrics[key])


def _item(metric: Metric, metrics: dict[str, float], chance: float | None, catalog: Catalog) -> str:
    value = metrics[metric.key]
    if not math.isfinite(value):
        return f"{metric.name} {NOT_MEASURED}"
    if metric.unit:
        return f"{metric.name} {value:.0f}" + (" s" if metric.unit == "s" else "")
    text = f"{metric.name} {value:.3f}"
    if metric.key == "student/las" and all(_measured(metrics, bound) for bound in LAS_INTERVAL):
        text += f" [{metrics[LAS_INTERVAL[0]]:.3f}, {metrics[LAS_INTERVAL[1]]:.3f}]"
    if metric.key == ACCURACY:
        levels = [f"chance {chance:.3f}"] if chance is not None else []
        levels += [f"{catalog.name(key)} {metrics[key]:.3f}"
                   for key in catalog.with_role(ACCURACY_FLOOR) + catalog.with_role(ACCURACY_CEILING)
                   if _measured(metrics, key)]  # fmt: skip
        text += f" ({', '.join(levels)})" if levels else ""
    return text


def summary_lines(cfg: Config, components: Components, run_dir: Path, metrics: dict[str, float],
                  chance: float | None) -> list[str]:  # fmt: skip
    label = f"decoding={components.decoding.name} training={components.training.mode}"
    if cfg.student.in_context is not None:
        label = f"student={cfg.student.name} (the teacher answers in context; its rationales: {label})"
    lines = [f"scd: {cfg.dataset.name} | {label} -> {run_dir}"]
    catalog = metric_catalog([task_class(cfg.dataset.task)])
    for group in SUMMARY_GROUPS:
        shown = [metric for metric in catalog if metric.group == group and metric.key in metrics]
        texts = [" | ".join(_item(metric, metrics, chance, catalog) for metric in shown if metric.line == line)
                 for line in sorted({metric.line for metric in shown})]  # fmt: skip
        for index, text in enumerate(texts):
            lines.append(f"  {group if index == 0 else '':<13}{text}")
    lines.append(f"  all {len(metrics)} metrics: {run_dir / 'metrics.json'}")
    return lines


def print_summary(cfg: Config, components: Components, run_dir: Path, metrics: dict[str, float]) -> None:
    print("\n".join(summary_lines(cfg, components, run_dir, metrics, chance_level(run_dir))))
