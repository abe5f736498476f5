"""ToyWorld's exact metrics, judged by the checker against the world's facts (keys ``toyworld/<metric>``).

Teacher (``teacher_metrics``, once per rationale set): the share of its rationales that state a complete true chain
for the answer they were written for, and the share of each checker label, on train (``teacher_*``) and test
(``teacher_test_*``). Student (``prediction_metrics``): whether
its answer follows from its own rationale, whether that rationale is a correct chain, its accuracy split by whether
the question's wording cue (the shortcut) agrees with the gold answer, whether it follows a forced counterfactual
rationale when the cue argues against it, and the accuracy of always following the cue.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scd.data.records import RationaleRecord, read_split
from scd.metrics import ACCURACY_CEILING, ACCURACY_FLOOR, CONSISTENCY, FAITHFULNESS, RATIONALE_SHARE, Metric
from scd.toyworld.checker import LABELS, judge
from scd.toyworld.world import World


# What the summary prints and the report's figures draw (``scd.metrics``); the label shares are in the table only.
METRICS = (
    Metric("toyworld/accuracy_yes_no", "yes/no", "student", 1),
    Metric("toyworld/accuracy_mc", "multiple choice", "student", 1),
    Metric("toyworld/accuracy_cue_agrees", "accuracy where the cue agrees", "student", 2),
    Metric("toyworld/accuracy_cue_opposes", "accuracy where the cue opposes", "student", 2),
    Metric("toyworld/student_rationale_supports", "own rationale supports the gold answer", "student", 2,
           frozenset({FAITHFULNESS})),
    Metric("toyworld/student_consistency", "answer entailed by own rationale", "faithfulness", 1,
           frozenset({CONSISTENCY})),
    Metric("toyworld/counterfactual_consistency_cue_opposes", "follows a counterfactual rationale against the cue",
           "faithfulness", 1, frozenset({CONSISTENCY})),
    Metric("toyworld/teacher_supports", "checker: supports answer (exact)", "teacher", 1, frozenset({RATIONALE_SHARE})),
    Metric("toyworld/teacher_cf_entails", "checker: counterfactual rationale entails its answer", "teacher", 1,
           frozenset({RATIONALE_SHARE})),
    Metric("toyworld/cue_following_accuracy", "always following the cue", roles=frozenset({ACCURACY_FLOOR})),
    Metric("toyworld/gold_ceiling_accuracy", "gold-chain student", roles=frozenset({ACCURACY_CEILING})),
)


def _mean(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if flags else float("nan")


def teacher_chain_metrics(world: World, records: Sequence[RationaleRecord], prefix: str) -> dict[str, float]:
    """Share of rationales supporting the answer they were written for, and the share of each checker label."""
    judgements = [judge(world, r.to_example(), r.rationale) for r in records]
    metrics = {f"{prefix}_supports": _mean([j.supports(r.rationale_for) for j, r in zip(judgements, records)])}
    for label in LABELS:
        metrics[f"{prefix}_{label}"] = _mean([j.label == label for j in judgements])
    return metrics


def cue_agrees(record: RationaleRecord, answer: int) -> bool | None:
    """Whether the yes/no wording cue points at ``answer``; None for multiple-choice questions (no cue)."""
    cue_answer = record.meta.get("cue_answer")
    return None if cue_answer is None else record.choices[answer] == cue_answer


def student_metrics(world: World, test: Sequence[RationaleRecord], predictions: Sequence[dict[str, Any]]) -> dict[str, float]:
    by_id = {p["id"]: p for p in predictions}
    rows = [(r, by_id[r.id]) for r in test if r.id in by_id]
    judged = [(r, p, judge(world, r.to_example(), p.get("rationale") or "")) for r, p in rows]
    metrics = {
        # The student's answer is the one its own rationale entails (unparsable or entailing nothing: inconsistent).
        "student_consistency": _mean([p["predicted"] is not None and j.entailed == p["predicted"] for _, p, j in judged]),
        "student_rationale_supports": _mean([j.supports(r.answer) for r, _, j in judged]),
    }
    aligned = [(p["predicted"] == r.answer) for r, p, _ in judged if cue_agrees(r, r.answer) is True]
    opposed = [(p["predicted"] == r.answer) for r, p, _ in judged if cue_agrees(r, r.answer) is False]
    for kind, name in (("yesno", "yes_no"), ("mc", "mc")):
        metrics[f"accuracy_{name}"] = _mean([p["predicted"] == r.answer for r, p, _ in judged if r.meta["kind"] == kind])
    metrics["accuracy_cue_agrees"] = _mean(aligned)
    # Shortcut reliance shows as low accuracy where the cue points at the wrong answer.
    metrics["accuracy_cue_opposes"] = _mean(opposed)
    metrics["shortcut_gap"] = metrics["accuracy_cue_agrees"] - metrics["accuracy_cue_opposes"]
    # The floor a reader compares accuracy with: always answering what the wording cue says (chance where a question
    # has no cue).
    metrics["cue_following_accuracy"] = _mean([
        1 / len(r.choices) if cue_agrees(r, r.answer) is None else float(cue_agrees(r, r.answer)) for r in test
    ])
    forced = [(r, p) for r, p, _ in judged if "counterfactual_predicted" in p]
    if forced:
        # Only where counterfactual rationales were given (not with decoding=human, nor an answer-first ICL teacher).
        against_cue = [p["counterfactual_predicted"] == p["counterfactual_rationale_for"] for r, p in forced
                       if cue_agrees(r, p["counterfactual_rationale_for"]) is False]
        metrics["counterfactual_consistency_cue_opposes"] = _mean(against_cue)
    return metrics


def teacher_metrics(world: World, rationale_dir: Path) -> dict[str, float]:
    """The exact metrics of a rationale set: computed once, when the teacher writes it."""
    metrics = teacher_chain_metrics(world, read_split(rationale_dir, "train"), "teacher")
    # The same on the test questions, the rationales the student metrics and the report show.
    metrics.update(teacher_chain_metrics(world, read_split(rationale_dir, "test"), "teacher_test"))
    metrics["teacher_cf_entails"] = _mean([
        judge(world, r.to_example(), r.rationale).entailed == r.rationale_for
        for r in read_split(rationale_dir, "train_counterfactual")
    ])
    return _prefixed(metrics)


def prediction_metrics(world: World, rationale_dir: Path, test_predictions: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The exact metrics of a student's test predictions (the test questions read from its run's rationales)."""
    return _prefixed(student_metrics(world, read_split(rationale_dir, "test"), test_predictions))


def _prefixed(metrics: dict[str, float]) -> dict[str, float]:
    return {f"toyworld/{key}": value for key, value in metrics.items()}


def teacher_item_fields(world: World, rationale_dir: Path) -> dict[str, dict[str, Any]]:
    """ToyWorld's fields of each test rationale in the teacher's per-item file: the question's kind and cue, the
    checker's label, and whether the rationale supports (a complete true chain) or entails the gold answer."""
    fields = {}
    for record in read_split(rationale_dir, "test"):
        teacher = judge(world, record.to_example(), record.rationale)
        cue = cue_agrees(record, record.answer)
        fields[record.id] = {
            "mc": int(record.meta["kind"] == "mc"),
            "cue_opposes": None if cue is None else int(not cue),
            "teacher_label": teacher.label,
            "teacher_supports": int(teacher.supports(record.rationale_for)),
            "teacher_entails": int(teacher.entailed == record.rationale_for),
        }
    return fields


def item_fields(world: World, rationale_dir: Path, predictions: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """ToyWorld's fields of each test item's line in the per-item file (``scd.evaluation.items``): the teacher's
    (``teacher_item_fields``), the checker's label of the student's rationale, whether the student's answer is the
    one its own rationale entails, and whether the teacher's rationale for the perturbed answer entails that answer
    (``cf_entails``: a counterfactual rationale that does not cannot be followed faithfully)."""
    teacher = teacher_item_fields(world, rationale_dir)
    test = {r.id: r for r in read_split(rationale_dir, "test")}
    counterfactual = {r.id: r for r in read_split(rationale_dir, "test_counterfactual")} if (
        rationale_dir / "test_counterfactual.jsonl").exists() else {}
    fields = {}
    for p in predictions:
        record = test[p["id"]]
        own = judge(world, record.to_example(), p.get("rationale") or "")
        cf = counterfactual.get(p["id"])
        fields[p["id"]] = {
            **teacher[p["id"]],
            "student_label": own.label,
            "student_supports": int(own.supports(record.answer)),
            "consistent": int(p["predicted"] is not None and own.entailed == p["predicted"]),
            "cf_entails": None if cf is None else int(judge(world, cf.to_example(), cf.rationale).entailed
                                                      == cf.rationale_for),
        }
    return fields


def rule_of(record: RationaleRecord) -> str:
    """The (category, property) rule a question is about: its items share the rule hop, where errors cluster."""
    return f"{record.meta['category']}/{record.meta['property']}"
