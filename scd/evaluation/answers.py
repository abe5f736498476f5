"""The answer metrics, computed in one place for whatever answers the test questions: a trained student
(``scd.student.evaluate.StudentAnswerer``) or the teacher in context (``scd.teacher.icl.InContextAnswerer``).

Metrics (unparsable answers count as wrong / inconsistent; a consistency where no answer it compares could be parsed is
NaN, "n/a" in the summary and the report: nothing was measured, not a consistency of 0):
- ``student/accuracy``, ``student/unparsable``: the answerer writes rationale and answer itself.
- ``student/oracle_accuracy``: the teacher's rationale for the gold answer is given; the answerer writes the answer.
- ``student/perturbed_consistency``: the answerer's own rationale with a share of it replaced at random is given; the
  fraction of answers that stay the same (an answerer that ignores its rationale scores high).
- ``student/counterfactual_consistency`` (only with counterfactual test rationales): the teacher's rationale for the
  perturbed answer is given; the fraction of answers that name the perturbed answer.

An answerer whose answer comes before its rationale (``reads_rationales`` false: the in-context teacher prompted
answer first) gets accuracy and unparsable only; no rationale can change its answer. A new answer metric is a function
of the prediction rows registered with ``@answer_metric``; ``answer_metrics`` computes every registered one. A metric
that needs the answerer to answer once more (after some given rationale) declares that answering pass, a function that
adds its answers to the rows, in ``passes``; each declared pass runs once, in the order declared.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from scd.data.records import RationaleRecord
from scd.io import atomic_write_text
from scd.metrics import CONSISTENCY, Metric

Predictions = list[dict[str, Any]]


class Answerer(Protocol):
    """Whatever answers test questions: its own rationale and answer, and its answer after a given rationale."""

    @property
    def reads_rationales(self) -> bool:
        """Whether its answer follows its rationale, so that a given rationale can change it."""

    def predict(self, records: Sequence[RationaleRecord]) -> Predictions:
        """Its own rationale and answer per record: ``id``, ``output`` (raw text), ``rationale`` and ``predicted``
        (the choice index, None when no choice can be parsed)."""

    def answers_after(self, records: Sequence[RationaleRecord], rationales: Sequence[str], desc: str
                      ) -> list[int | None]:  # fmt: skip
        """Its answer (choice index or None) after each given rationale."""

    def answers_after_perturbed(self, records: Sequence[RationaleRecord], rationales: Sequence[str], share: float,
                                rng: np.random.Generator, desc: str) -> list[int | None]:  # fmt: skip
        """Its answer after each rationale with ``share`` of it replaced at random (in its own units: tokens or
        words), drawing from ``rng`` row by row in order."""


def share(flags: Sequence[bool]) -> float:
    """The fraction of true flags; NaN for none (a share of no items is not measured)."""
    return float(np.mean(flags)) if flags else float("nan")


@dataclass(frozen=True)
class PassInputs:
    """What an answering pass reads: the test records, the answerer's own prediction rows (one per record, which the
    pass adds its answers to), the teacher's rationales for the perturbed answers, and the perturbation's share and
    seed."""

    test: Sequence[RationaleRecord]
    rows: Predictions
    test_counterfactual: Sequence[RationaleRecord]
    perturb_share: float
    seed: int


AnswerPass = Callable[[Answerer, PassInputs], None]
AnswerMetric = Callable[[Predictions], float | None]
# Each answer metric's declaration, its function of the prediction rows (None where it does not apply to them) and
# the answering passes whose answers it reads.
ANSWER_METRICS: dict[str, tuple[Metric, AnswerMetric, tuple[AnswerPass, ...]]] = {}


def answer_metric(declaration: Metric, passes: tuple[AnswerPass, ...] = ()) -> Callable[[AnswerMetric], AnswerMetric]:
    """Register a function of the prediction rows as the answer metric ``declaration`` declares; ``passes`` run first
    (for an answerer that reads rationales) and add the answers it reads to the rows."""

    def register(metric: AnswerMetric) -> AnswerMetric:
        ANSWER_METRICS[declaration.key] = (declaration, metric, passes)
        return metric

    return register


def oracle_answers(answerer: Answerer, given: PassInputs) -> None:
    """``oracle_predicted``: the answer after the teacher's rationale (the test split's argue for the gold answer)."""
    answers = answerer.answers_after(given.test, [record.rationale for record in given.test], "oracle answers")
    for row, answer in zip(given.rows, answers):
        row["oracle_predicted"] = answer


def perturbed_answers(answerer: Answerer, given: PassInputs) -> None:
    """``perturbed_rationale_predicted``: the answer after the answerer's own rationale, a share of it perturbed."""
    answers = answerer.answers_after_perturbed(given.test, [row["rationale"] for row in given.rows],
                                               given.perturb_share, np.random.default_rng(given.seed),
                                               "perturbed answers")  # fmt: skip
    for row, answer in zip(given.rows, answers):
        row["perturbed_rationale_predicted"] = answer


def counterfactual_answers(answerer: Answerer, given: PassInputs) -> None:
    """``counterfactual_predicted`` and ``counterfactual_rationale_for``, on the rows with a counterfactual test
    rationale (matched by id): the answer after the teacher's rationale for the perturbed answer."""
    if not given.test_counterfactual:
        return
    by_id = {record.id: record for record in given.test_counterfactual}
    matched = [(row, by_id[row["id"]]) for row in given.rows if row["id"] in by_id]
    if not matched:
        raise ValueError("test_counterfactual shares no id with the test records")
    counter = [record for _, record in matched]
    followed = answerer.answers_after(counter, [record.rationale for record in counter], "counterfactual answers")
    for (row, record), answer in zip(matched, followed):
        row.update(counterfactual_predicted=answer, counterfactual_rationale_for=record.rationale_for)


def answering_passes() -> list[AnswerPass]:
    """The passes the registered metrics declare, each once, in the order declared."""
    return list(dict.fromkeys(p for _, _, passes in ANSWER_METRICS.values() for p in passes))


@answer_metric(Metric("student/accuracy", "accuracy", "student"))
def accuracy(rows: Predictions) -> float:
    return share([row["correct"] for row in rows])


@answer_metric(Metric("student/oracle_accuracy", "with the teacher's rationale", "student"), (oracle_answers,))
def oracle_accuracy(rows: Predictions) -> float | None:
    if "oracle_predicted" not in rows[0]:
        return None
    return share([row["oracle_predicted"] == row["answer"] for row in rows])


@answer_metric(Metric("student/unparsable", "unparsable", "student"))
def unparsable(rows: Predictions) -> float:
    return share([row["predicted"] is None for row in rows])


@answer_metric(Metric("student/majority_answer_share", "most frequent answer", "student"))
def majority_answer_share(rows: Predictions) -> float:
    """The share of questions answered with the choice (by index) answered most often: 1.0 is a student that gives
    one answer whatever the question, as a shortcut or a collapsed model does; unparsable answers count as none."""
    answers = [row["predicted"] for row in rows if row["predicted"] is not None]
    return max(answers.count(answer) for answer in set(answers)) / len(rows) if answers else 0.0


@answer_metric(Metric("student/perturbed_consistency", "answer kept under a perturbed rationale", "faithfulness",
                      roles=frozenset({CONSISTENCY})), (perturbed_answers,))  # fmt: skip
def perturbed_consistency(rows: Predictions) -> float | None:
    if "perturbed_rationale_predicted" not in rows[0]:
        return None
    if all(row["predicted"] is None for row in rows):
        return float("nan")  # no own answer to keep
    return share([row["predicted"] is not None and row["perturbed_rationale_predicted"] == row["predicted"]
                  for row in rows])  # fmt: skip


@answer_metric(Metric("student/counterfactual_consistency", "follows a counterfactual rationale", "faithfulness",
                      roles=frozenset({CONSISTENCY})), (counterfactual_answers,))  # fmt: skip
def counterfactual_consistency(rows: Predictions) -> float | None:
    given = [row for row in rows if "counterfactual_predicted" in row]
    if not given:
        return None
    if all(row["counterfactual_predicted"] is None for row in given):
        return float("nan")  # no answer after a counterfactual rationale to follow it or not
    return share([row["counterfactual_predicted"] == row["counterfactual_rationale_for"] for row in given])


def answer_metrics(
    answerer: Answerer,
    test: list[RationaleRecord],
    test_counterfactual: Sequence[RationaleRecord] = (),
    *,
    perturb_share: float,
    seed: int,
) -> tuple[dict[str, float], Predictions]:
    """The ``student/*`` answer metrics of ``answerer`` on ``test`` and its prediction rows (every record, unparsable
    ones included). ``test_counterfactual`` holds the teacher's rationales for the perturbed answers, matched by id;
    without it ``student/counterfactual_consistency`` is left out."""
    if not test:
        raise ValueError("no test records to evaluate")
    rows = answerer.predict(test)
    for record, row in zip(test, rows):
        row.update(answer=record.answer, perturbed_answer=record.perturbed_answer,
                   correct=row["predicted"] == record.answer)  # fmt: skip
    if answerer.reads_rationales:
        given = PassInputs(test, rows, test_counterfactual, perturb_share, seed)
        for answering_pass in answering_passes():
            answering_pass(answerer, given)
    metrics = {key: value for key, (_, metric, _) in ANSWER_METRICS.items() if (value := metric(rows)) is not None}
    return metrics, rows


def write_predictions(run_dir: Path, rows: Predictions) -> Path:
    """``run_dir/predictions/test.jsonl``: a line per test question."""
    path = run_dir / "predictions" / "test.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
    return path
