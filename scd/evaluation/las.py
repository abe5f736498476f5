"""Leakage-adjusted simulatability (LAS; Hase et al., Findings of EMNLP 2020).

A simulator is trained to predict the *student's* answer. It is asked three times per test example: from the question
and the rationale (``xe``), from the question alone (``x``) and from the rationale alone (``e``). A rationale *leaks*
when the simulator recovers the student's answer from it alone. LAS is the gain in simulator accuracy that the
rationale brings, acc(xe) - acc(x), computed separately in the leaked and non-leaked groups and averaged with equal
weight, so rationales that merely state the answer cannot dominate the score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# Bootstrap resamples are drawn in chunks so that 1000 x 10k examples never needs more than this many indices at once.
_MAX_INDICES_PER_CHUNK = 2_000_000


@dataclass(frozen=True)
class LASResult:
    """LAS with its per-group gains and a bootstrap 95% interval.

    ``las_leaked`` / ``las_nonleaked`` are ``None`` when the group is empty.
    """

    las: float
    las_leaked: float | None
    las_nonleaked: float | None
    n_leaked: int
    n_nonleaked: int
    ci_low: float
    ci_high: float

    def to_metrics(self, prefix: str = "student") -> dict[str, float | int | None]:
        """The keys written to ``metrics.json``."""
        return {
            f"{prefix}/las": self.las,
            f"{prefix}/las_leaked": self.las_leaked,
            f"{prefix}/las_nonleaked": self.las_nonleaked,
            f"{prefix}/las_n_leaked": self.n_leaked,
            f"{prefix}/las_n_nonleaked": self.n_nonleaked,
            f"{prefix}/las_ci_low": self.ci_low,
            f"{prefix}/las_ci_high": self.ci_high,
        }


class LASInputError(ValueError):
    """The prediction arrays cannot be compared (wrong shape, length or type)."""


def _as_index_array(name: str, values: ArrayLike) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise LASInputError(f"LAS input {name!r}: expected a 1-D array of answer indices, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise LASInputError(f"LAS input {name!r}: expected integer answer indices, got dtype {array.dtype}")
    return array


def _group_sums(
    leaked_gain: np.ndarray, nonleaked_gain: np.ndarray, leaked: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-group sums of the gain and group sizes along the last axis."""
    n_leaked = leaked.sum(axis=-1, dtype=np.int64)
    return (
        leaked_gain.sum(axis=-1, dtype=np.int64),
        nonleaked_gain.sum(axis=-1, dtype=np.int64),
        n_leaked,
        leaked.shape[-1] - n_leaked,
    )


def _las_from_sums(
    leaked_sum: np.ndarray, nonleaked_sum: np.ndarray, n_leaked: np.ndarray, n_nonleaked: np.ndarray
) -> np.ndarray:
    """Unweighted mean of the group gains, skipping an empty group."""
    with np.errstate(invalid="ignore", divide="ignore"):
        leaked_mean = leaked_sum / n_leaked
        nonleaked_mean = nonleaked_sum / n_nonleaked
    n_groups = (n_leaked > 0).astype(float) + (n_nonleaked > 0)
    total = np.where(n_leaked > 0, leaked_mean, 0.0) + np.where(n_nonleaked > 0, nonleaked_mean, 0.0)
    return total / n_groups


def leakage_adjusted_simulatability(
    student: ArrayLike,
    sim_xe: ArrayLike,
    sim_x: ArrayLike,
    sim_e: ArrayLike,
    *,
    bootstrap_samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> LASResult:
    """LAS of the student's rationales from the simulator's predictions, with a percentile bootstrap interval.

    All four arguments are answer indices, one per test example: the student's prediction and the simulator's
    predictions from question+rationale, question alone and rationale alone. Simulator accuracy means agreement with
    the student, not with the gold label. Examples are resampled with replacement (numpy ``Generator`` seeded with
    ``seed``); a resample in which a group is empty skips that group, as the point estimate does.

    >>> r = leakage_adjusted_simulatability([0, 1, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 1, 1, 0], seed=1)
    >>> r.las, r.n_leaked, r.n_nonleaked
    (0.5, 2, 2)
    """
    named = {"student": student, "sim_xe": sim_xe, "sim_x": sim_x, "sim_e": sim_e}
    arrays = {name: _as_index_array(name, values) for name, values in named.items()}
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise LASInputError(f"LAS inputs differ in length: {lengths}")
    if lengths["student"] == 0:
        raise LASInputError("LAS needs at least one example; all inputs are empty")
    if bootstrap_samples < 1:
        raise LASInputError(f"bootstrap_samples must be at least 1, got {bootstrap_samples}")
    if not 0 < confidence < 1:
        raise LASInputError(f"confidence must be in (0, 1), got {confidence}")

    target = arrays["student"]
    leaked = arrays["sim_e"] == target
    # Per-example gain in {-1, 0, 1}: right with the rationale minus right without it.
    gain = (arrays["sim_xe"] == target).astype(np.int8) - (arrays["sim_x"] == target).astype(np.int8)
    # Split by group once, as small ints, so each bootstrap resample is three gathers and three sums.
    columns = (gain * leaked, gain * ~leaked, leaked.astype(np.int8))

    leaked_sum, nonleaked_sum, n_leaked, n_nonleaked = _group_sums(*columns)
    las = float(_las_from_sums(leaked_sum, nonleaked_sum, n_leaked, n_nonleaked))

    rng = np.random.default_rng(seed)
    n = len(target)
    chunk = max(1, _MAX_INDICES_PER_CHUNK // n)
    replicates = []
    for start in range(0, bootstrap_samples, chunk):
        size = min(chunk, bootstrap_samples - start)
        index = rng.integers(0, n, size=(size, n))
        replicates.append(_las_from_sums(*_group_sums(*(column[index] for column in columns))))
    tail = (1 - confidence) / 2 * 100
    ci_low, ci_high = np.percentile(np.concatenate(replicates), [tail, 100 - tail])

    return LASResult(
        las=las,
        las_leaked=float(leaked_sum / n_leaked) if n_leaked else None,
        las_nonleaked=float(nonleaked_sum / n_nonleaked) if n_nonleaked else None,
        n_leaked=int(n_leaked),
        n_nonleaked=int(n_nonleaked),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
    )
