"""Answer metrics computed from prediction rows, and shown by the run's summary once declared."""

from __future__ import annotations

import pytest

from scd.data.records import RationaleRecord
from scd.evaluation.answers import ANSWER_METRICS, PassInputs, answer_metrics, majority_answer_share, share
from scd.metrics import Metric
from scd.summary import summary_lines
from tests.conftest import validated


def rows(*predicted):
    return [{"predicted": answer} for answer in predicted]


@pytest.mark.parametrize(("predicted", "share"), [
    ((0, 0, 0, 0), 1.0),  # one answer whatever the question
    ((0, 1, 0, 1), 0.5),
    ((0, 1, 2, None), 0.25),  # the unparsable answer counts for no choice
    ((None, None), 0.0),
])  # fmt: skip
def test_majority_answer_share_is_the_most_frequent_answers_share(predicted, share):
    assert majority_answer_share(rows(*predicted)) == share


def test_the_summary_prints_it_beside_accuracy(make_config, tmp_path):
    assert "student/majority_answer_share" in ANSWER_METRICS
    metrics = {"student/accuracy": 0.5, "student/majority_answer_share": 0.75}
    [_, student, _] = summary_lines(*validated(make_config()), tmp_path, metrics, chance=None)
    assert student == "  student      accuracy 0.500 | most frequent answer 0.750"


class Answering:
    """An answerer that answers choice 0 after an empty rationale and 1 after any other, counting its passes."""

    reads_rationales = True

    def __init__(self):
        self.passes = []

    def predict(self, records):
        return [{"id": r.id, "output": "", "rationale": "r", "predicted": 1} for r in records]

    def answers_after(self, records, rationales, desc):
        self.passes.append(desc)
        return [0 if rationale == "" else 1 for rationale in rationales]

    def answers_after_perturbed(self, records, rationales, share, rng, desc):
        return self.answers_after(records, rationales, desc)


def empty_rationale_answers(answerer, given: PassInputs) -> None:
    """The extension a contributor adds: the answer after an empty rationale."""
    for row, answer in zip(given.rows, answerer.answers_after(given.test, [""] * len(given.test), "empty")):
        row["empty_rationale_predicted"] = answer


def test_a_metric_declares_the_answering_pass_it_needs(monkeypatch):
    def no_rationale_accuracy(rows):
        return share([row["empty_rationale_predicted"] == row["answer"] for row in rows])

    def empty_rationale_change(rows):
        return share([row["empty_rationale_predicted"] != row["predicted"] for row in rows])

    # Two metrics declaring one pass: it runs once, after the passes declared before it, with no edit of the loop.
    for key, metric in [("student/no_rationale_accuracy", no_rationale_accuracy),
                        ("student/empty_rationale_change", empty_rationale_change)]:
        monkeypatch.setitem(ANSWER_METRICS, key, (Metric(key, key, "student"), metric, (empty_rationale_answers,)))
    test = [RationaleRecord(f"q{i}", "q", ["a", "b"], answer, 1 - answer, answer, "gold", "greedy", {})
            for i, answer in enumerate([0, 1, 0, 0])]  # fmt: skip
    answerer = Answering()
    metrics, rows = answer_metrics(answerer, test, perturb_share=0.5, seed=0)
    assert answerer.passes == ["oracle answers", "perturbed answers", "empty"]
    assert metrics["student/no_rationale_accuracy"] == 0.75 and metrics["student/empty_rationale_change"] == 1.0
    assert metrics["student/accuracy"] == 0.25 and [row["empty_rationale_predicted"] for row in rows] == [0] * 4
