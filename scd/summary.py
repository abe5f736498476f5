"""The summary ``python run.py`` prints at the end of a run: a few grouped lines, each metric next to what it means.

Groups: the student (accuracy beside the chance level and, where the task reports it, the level of always following
the wording cue), faithfulness, the teacher's rationales, and time. Metrics a run did not compute are left out; every
metric is in ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scd.config import Config
from scd.io import RationaleFileError, read_split

# Group -> lines -> (metric key, how the summary names it). Keys absent from a run's metrics are skipped.
GROUPS: dict[str, list[list[tuple[str, str]]]] = {
    "student": [
        [("student/accuracy", "accuracy"), ("student/oracle_accuracy", "with the teacher's rationale"),
         ("student/unparsable", "unparsable")],
        [("toyworld/accuracy_cue_agrees", "accuracy where the cue agrees"),
         ("toyworld/accuracy_cue_opposes", "where it opposes"),
         ("toyworld/student_rationale_supports", "own rationale supports the gold answer")],
    ],
    "faithfulness": [
        [("student/las", "LAS"), ("student/perturbed_consistency", "answer kept under a perturbed rationale"),
         ("student/counterfactual_consistency", "follows a counterfactual rationale")],
        [("toyworld/student_consistency", "answer entailed by own rationale"),
         ("toyworld/counterfactual_consistency_cue_opposes", "follows a counterfactual rationale against the cue")],
    ],
    "teacher": [
        [("teacher/supports_answer", "supports the answer"), ("teacher/new_info", "new info"),
         ("teacher/fluency", "perplexity (lower is better)"), ("teacher/vacuity", "vacuous")],
        [("toyworld/teacher_supports", "true chain for its answer"),
         ("toyworld/teacher_cf_entails", "counterfactual rationale entails its answer")],
        [("rationales/missing_explanations/train", "no explanation: train"),
         ("rationales/missing_explanations/dev", "dev"), ("rationales/missing_explanations/test", "test")],
    ],
    "time": [
        [("time/teacher_s", "teacher"), ("time/student_s", "student"), ("time/evaluate_s", "evaluate"),
         ("time/total_s", "total")],
    ],
}
CUE_FOLLOWING = "toyworld/cue_following_accuracy"


def chance_level(run_dir: Path) -> float | None:
    """Expected accuracy of a uniform guess on the test split: the mean of 1 / number of choices."""
    try:
        test = read_split(run_dir / "rationales", "test")
    except RationaleFileError:
        return None
    return float(np.mean([1 / len(record.choices) for record in test])) if test else None


def _item(key: str, name: str, metrics: dict[str, float], chance: float | None) -> str:
    value = metrics[key]
    if key.startswith("time/"):
        return f"{name} {value:.0f} s"
    if key.startswith("rationales/missing_explanations/"):
        return f"{name} {value:.0f}"
    text = f"{name} {value:.3f}"
    if key == "student/las" and {"student/las_ci_low", "student/las_ci_high"} <= metrics.keys():
        text += f" [{metrics['student/las_ci_low']:.3f}, {metrics['student/las_ci_high']:.3f}]"
    if key == "student/accuracy":
        floors = [f"chance {chance:.3f}"] if chance is not None else []
        if CUE_FOLLOWING in metrics:
            floors.append(f"always following the cue {metrics[CUE_FOLLOWING]:.3f}")
        text += f" ({', '.join(floors)})" if floors else ""
    return text


def summary_lines(cfg: Config, run_dir: Path, metrics: dict[str, float], chance: float | None) -> list[str]:
    label = f"decoding={cfg.decoding.name} training={cfg.training.mode}"
    if cfg.student.in_context is not None:
        label = f"student={cfg.student.name} (the teacher answers in context; its rationales: {label})"
    lines = [f"scd: {cfg.dataset.name} | {label} -> {run_dir}"]
    for group, rows in GROUPS.items():
        texts = [" | ".join(_item(key, name, metrics, chance) for key, name in row if key in metrics) for row in rows]
        for index, text in enumerate(t for t in texts if t):
            lines.append(f"  {group if index == 0 else '':<13}{text}")
    lines.append(f"  all {len(metrics)} metrics: {run_dir / 'metrics.json'}")
    return lines


def print_summary(cfg: Config, run_dir: Path, metrics: dict[str, float]) -> None:
    print("\n".join(summary_lines(cfg, run_dir, metrics, chance_level(run_dir))))
