"""The summary ``python run.py`` prints at the end of a run: a few grouped lines, each metric next to what it means.

Groups: the student (accuracy beside the chance level and, where the task reports them, the level of always following
the wording cue and the accuracy a student distilled from gold rationales reached in this world, measured beforehand), faithfulness, the teacher's rationales, and time. Metrics a run did not compute are left out, and
one it computed but could not measure (``NaN``: e.g. a share of no items) reads "n/a"; every metric is in
``metrics.json``.

``METRIC_NAMES`` is each metric's name where it stands alone (the report's figures and pages): one name per measure,
so the automatic judge's and the ToyWorld checker's "supports the answer" are told apart.
"""

from __future__ import annotations

from pathlib import Path

import math

import numpy as np

from scd.config import Config
from scd.io import RationaleFileError, read_split

JUDGE_SUPPORTS = "teacher/supports_answer"
CHECKER_SUPPORTS = "toyworld/teacher_supports"
CUE_FOLLOWING = "toyworld/cue_following_accuracy"
GOLD_CEILING = "toyworld/gold_ceiling_accuracy"
NOT_MEASURED = "n/a"
METRIC_NAMES = {
    "student/accuracy": "accuracy",
    "student/oracle_accuracy": "with the teacher's rationale",
    "student/unparsable": "unparsable",
    "student/las": "LAS",
    "student/perturbed_consistency": "answer kept under a perturbed rationale",
    "student/counterfactual_consistency": "follows a counterfactual rationale",
    "toyworld/accuracy_cue_agrees": "accuracy where the cue agrees",
    "toyworld/accuracy_cue_opposes": "accuracy where the cue opposes",
    "toyworld/student_rationale_supports": "own rationale supports the gold answer",
    "toyworld/student_consistency": "answer entailed by own rationale",
    "toyworld/counterfactual_consistency_cue_opposes": "follows a counterfactual rationale against the cue",
    CUE_FOLLOWING: "always following the cue",
    GOLD_CEILING: "gold-chain student (measured ceiling)",
    JUDGE_SUPPORTS: "judge: supports answer",
    "teacher/new_info": "new info",
    "teacher/fluency": "perplexity (lower is better)",
    "teacher/vacuity": "vacuous",
    CHECKER_SUPPORTS: "checker: supports answer (exact)",
    "toyworld/teacher_cf_entails": "checker: counterfactual rationale entails its answer",
}
# Counts and times, named only within their summary line.
LINE_NAMES = {
    "rationales/missing_explanations/train": "no explanation: train",
    "rationales/missing_explanations/dev": "dev",
    "rationales/missing_explanations/test": "test",
    "time/teacher_s": "teacher",
    "time/student_s": "student",
    "time/evaluate_s": "evaluate",
    "time/total_s": "total",
}

# Group -> lines -> metric keys, each shown with its name. Keys absent from a run's metrics are skipped.
GROUPS: dict[str, list[list[str]]] = {
    "student": [
        ["student/accuracy", "student/oracle_accuracy", "student/unparsable"],
        ["toyworld/accuracy_cue_agrees", "toyworld/accuracy_cue_opposes", "toyworld/student_rationale_supports"],
    ],
    "faithfulness": [
        ["student/las", "student/perturbed_consistency", "student/counterfactual_consistency"],
        ["toyworld/student_consistency", "toyworld/counterfactual_consistency_cue_opposes"],
    ],
    "teacher": [
        [JUDGE_SUPPORTS, "teacher/new_info", "teacher/fluency", "teacher/vacuity"],
        [CHECKER_SUPPORTS, "toyworld/teacher_cf_entails"],
        ["rationales/missing_explanations/train", "rationales/missing_explanations/dev",
         "rationales/missing_explanations/test"],
    ],
    "time": [["time/teacher_s", "time/student_s", "time/evaluate_s", "time/total_s"]],
}


def chance_level(run_dir: Path) -> float | None:
    """Expected accuracy of a uniform guess on the test split: the mean of 1 / number of choices."""
    try:
        test = read_split(run_dir / "rationales", "test")
    except RationaleFileError:
        return None
    return float(np.mean([1 / len(record.choices) for record in test])) if test else None


def _measured(metrics: dict[str, float], key: str) -> bool:
    return key in metrics and math.isfinite(metrics[key])


def _item(key: str, metrics: dict[str, float], chance: float | None) -> str:
    name, value = LINE_NAMES.get(key) or METRIC_NAMES[key], metrics[key]
    if not math.isfinite(value):
        return f"{name} {NOT_MEASURED}"
    if key.startswith("time/"):
        return f"{name} {value:.0f} s"
    if key.startswith("rationales/missing_explanations/"):
        return f"{name} {value:.0f}"
    text = f"{name} {value:.3f}"
    if key == "student/las" and _measured(metrics, "student/las_ci_low") and _measured(metrics, "student/las_ci_high"):
        text += f" [{metrics['student/las_ci_low']:.3f}, {metrics['student/las_ci_high']:.3f}]"
    if key == "student/accuracy":
        floors = [f"chance {chance:.3f}"] if chance is not None else []
        if _measured(metrics, CUE_FOLLOWING):
            floors.append(f"always following the cue {metrics[CUE_FOLLOWING]:.3f}")
        if _measured(metrics, GOLD_CEILING):
            floors.append(f"gold-chain student {metrics[GOLD_CEILING]:.3f}")
        text += f" ({', '.join(floors)})" if floors else ""
    return text


def summary_lines(cfg: Config, run_dir: Path, metrics: dict[str, float], chance: float | None) -> list[str]:
    label = f"decoding={cfg.decoding.name} training={cfg.training.mode}"
    if cfg.student.in_context is not None:
        label = f"student={cfg.student.name} (the teacher answers in context; its rationales: {label})"
    lines = [f"scd: {cfg.dataset.name} | {label} -> {run_dir}"]
    for group, rows in GROUPS.items():
        texts = [" | ".join(_item(key, metrics, chance) for key in row if key in metrics) for row in rows]
        for index, text in enumerate(t for t in texts if t):
            lines.append(f"  {group if index == 0 else '':<13}{text}")
    lines.append(f"  all {len(metrics)} metrics: {run_dir / 'metrics.json'}")
    return lines


def print_summary(cfg: Config, run_dir: Path, metrics: dict[str, float]) -> None:
    print("\n".join(summary_lines(cfg, run_dir, metrics, chance_level(run_dir))))
