"""Answer metrics computed from prediction rows, and shown by the run's summary once declared."""

from __future__ import annotations

import pytest

from scd.config import validate
from scd.evaluation.answers import ANSWER_METRICS, majority_answer_share
from scd.summary import summary_lines


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
    [_, student, _] = summary_lines(validate(make_config()), tmp_path, metrics, chance=None)
    assert student == "  student      accuracy 0.500 | most frequent answer 0.750"
