import time

import numpy as np
import pytest

from scd.evaluation.las import LASInputError, leakage_adjusted_simulatability


def test_mixed_groups_are_averaged_without_weights():
    student = [0, 1, 2, 0, 1, 2, 0]
    sim_e = [0, 1, 0, 1, 1, 0, 0]  # leaked: examples 0, 1, 4, 6
    sim_xe = [0, 1, 2, 0, 0, 2, 0]  # agrees with student: 1 1 1 1 0 1 1
    sim_x = [0, 0, 0, 0, 0, 0, 0]  # agrees with student: 1 0 0 1 0 0 1
    # gains: 0 1 1 0 0 1 0 -> leaked (0, 1, 4, 6): 1/4; non-leaked (2, 3, 5): 2/3
    result = leakage_adjusted_simulatability(student, sim_xe, sim_x, sim_e, bootstrap_samples=50)
    assert result.n_leaked == 4 and result.n_nonleaked == 3
    assert result.las_leaked == pytest.approx(1 / 4)
    assert result.las_nonleaked == pytest.approx(2 / 3)
    assert result.las == pytest.approx((1 / 4 + 2 / 3) / 2)  # not the pooled 3/7


def test_all_leaking_is_the_leaked_gain():
    student = [0, 1, 1, 0]
    sim_xe = [0, 1, 1, 1]  # agrees: 1 1 1 0
    sim_x = [1, 1, 0, 0]  # agrees: 0 1 0 1
    result = leakage_adjusted_simulatability(student, sim_xe, sim_x, sim_e=student, bootstrap_samples=50)
    assert (result.n_leaked, result.n_nonleaked) == (4, 0)
    assert result.las_nonleaked is None
    assert result.las == result.las_leaked == pytest.approx(1 / 4)


def test_none_leaking_is_the_nonleaked_gain():
    student = [0, 1, 0]
    sim_e = [1, 0, 1]
    sim_xe = [0, 1, 0]  # agrees: 1 1 1
    sim_x = [0, 0, 0]  # agrees: 1 0 1
    result = leakage_adjusted_simulatability(student, sim_xe, sim_x, sim_e, bootstrap_samples=50)
    assert (result.n_leaked, result.n_nonleaked) == (0, 3)
    assert result.las_leaked is None
    assert result.las == result.las_nonleaked == pytest.approx(1 / 3)


def _random_predictions(n: int, seed: int):
    rng = np.random.default_rng(seed)
    student = rng.integers(0, 4, n)
    noisy = lambda p: np.where(rng.random(n) < p, student, (student + 1) % 4)  # noqa: E731
    return student, noisy(0.8), noisy(0.5), noisy(0.4)


def test_bootstrap_is_deterministic_and_contains_the_estimate():
    predictions = _random_predictions(300, seed=3)
    first = leakage_adjusted_simulatability(*predictions, seed=7)
    again = leakage_adjusted_simulatability(*predictions, seed=7)
    other = leakage_adjusted_simulatability(*predictions, seed=8)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.ci_low < first.las < first.ci_high
    assert first.ci_high - first.ci_low < 0.3


def test_constant_gain_gives_a_degenerate_interval():
    student = np.zeros(20, dtype=int)
    result = leakage_adjusted_simulatability(student, student, np.ones(20, dtype=int), student, bootstrap_samples=100)
    assert result.las == result.ci_low == result.ci_high == 1.0


def test_bootstrap_is_fast_on_ten_thousand_examples():
    predictions = _random_predictions(10_000, seed=0)
    start = time.perf_counter()
    leakage_adjusted_simulatability(*predictions, bootstrap_samples=1000)
    assert time.perf_counter() - start < 2.0


def test_metric_keys():
    metrics = leakage_adjusted_simulatability([0, 1], [0, 1], [1, 1], [0, 0], bootstrap_samples=10).to_metrics()
    assert set(metrics) == {
        "student/las", "student/las_leaked", "student/las_nonleaked", "student/las_n_leaked",
        "student/las_n_nonleaked", "student/las_ci_low", "student/las_ci_high",
    }
    assert metrics["student/las_n_leaked"] == 1 and metrics["student/las"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (([0, 1], [0], [0, 1], [0, 1]), "differ in length"),
        (([], [], [], []), "at least one example"),
        (([0.5], [0], [0], [0]), "'student'.*integer"),
        (([[0]], [0], [0], [0]), "1-D"),
    ],
)
def test_bad_inputs_raise(arrays, message):
    with pytest.raises(LASInputError, match=message):
        leakage_adjusted_simulatability(*arrays)
