"""Paired comparisons of a sweep's cells with honest intervals, for any task:

    python -m scd.compare <sweep dir> <spec.yaml> [--out DIR] [--resamples N] [--target-half-width H]
                          [--multiplicity holm|none]

The spec (YAML) names hypotheses, each a list of claims. A claim names two cells by their override values (a config
group's choice such as ``decoding: greedy``, or any dotted key such as ``training.tags: none``), a metric, and its
kind: ``"> 0"`` or ``"< 0"`` for the difference A − B, or ``non-inferior`` with a ``margin`` (A − B > −margin).
Every job of the sweep with a per-item file (``predictions/items.jsonl.gz``, ``scd.evaluation.items``) is one
(cell, seed) pair, so the whole analysis is recomputed from the per-item files alone.

For each claim:
- the estimate is the mean over the seeds both cells ran of metric(A) − metric(B) on the items both have;
- its 95% interval treats seeds and item clusters (the task's ``cluster_key``, e.g. a synthetic task's rules; an item is its own
  cluster otherwise) as crossed random factors. Three bootstraps (10,000 resamples each by default; seeds only,
  clusters only, both; the same draw for both cells) give the variance components, from which the variance over new
  seeds and new clusters follows without the double counting of a plain two-way bootstrap (``crossed_variance``);
  the interval is estimate ± t·SE with Satterthwaite's degrees of freedom. Each claim draws from an RNG seeded by
  the claim itself, so that adding a claim moves no other interval;
- the seed-level t-interval (seed differences on all items, t with seeds − 1 degrees of freedom) is printed beside it;
- one-sided p-values for the claim and against it, adjusted within the hypothesis (Holm by default);
- the verdict: ``holds`` when the adjusted p for the claim is below α/2 (for one claim: the interval lies on the
  claim's side), ``does not hold`` when the adjusted p against it is, ``inconclusive`` otherwise. A hypothesis holds
  when all its claims hold and does not hold when any does not;
- a power line: the smallest effect this design detects with 80% power, and, from the variance components, the
  seeds (at these items) or the items (at these seeds) that bring the half-width to ``--target-half-width``.

Writes ``hypotheses.md`` and ``hypotheses.json`` (into ``--out``, default the sweep directory), with the task's own
tables (``Task.comparison_tables``), and warns in one line per field when the jobs compared ran from different
commits, library versions, thread counts or CPU models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from scd.evaluation.items import ITEM_DIRS, ITEMS_FILE, read_items
from scd.provenance import differing_fields
from scd.rundir import read_status
from scd.task import Task, task_class

Z_975, Z_80 = 1.959963984540054, 0.8416212335729143
CLAIM_KINDS = ("> 0", "< 0", "non-inferior")
CLAIM_KEYS = {"a", "b", "metric", "claim", "margin"}
SPEC_SECTIONS = {"cells", "metrics", "hypotheses"}
MULTIPLICITY = ("holm", "none")
CHUNK = 2000  # bootstrap replicates per block: bounds the (replicates x items) weight matrix


class CompareError(ValueError):
    """A sweep or spec that cannot be compared; the message names the file or key."""


class MissingCell(CompareError):
    """A claim whose cell did not run in the sweep: the claim is reported as not run."""


# --------------------------------------------------------------------------------------------------- the sweep's jobs


@dataclass
class Job:
    """One job: its directory, the values cells are chosen by, its seed, provenance and per-item rows."""

    path: Path
    choices: dict[str, str]
    config: Any
    seed: int
    provenance: dict[str, Any] | None
    items: list[dict[str, Any]]
    task: type[Task] = Task

    def value(self, key: str) -> Any:
        """A group's choice (``decoding``) or a dotted config key (``training.tags``); None where absent."""
        if key in self.choices:
            return self.choices[key]
        return OmegaConf.select(self.config, key, default=None)


def read_job(job_dir: Path, items_dir: str = "predictions") -> Job:
    hydra_dir = job_dir / ".hydra"
    try:
        config = OmegaConf.load(hydra_dir / "config.yaml")
        choices = OmegaConf.to_container(OmegaConf.load(hydra_dir / "hydra.yaml").hydra.runtime.choices)
    except (OSError, OmegaConfBaseException, yaml.YAMLError) as err:
        raise CompareError(f"{hydra_dir}: cannot read the job's config ({str(err).splitlines()[0]})") from None
    try:
        task = task_class(config.dataset.task) if config.dataset.get("task") else Task
    except (ImportError, ValueError, KeyError):
        task = Task
    return Job(job_dir, {k: str(v) for k, v in choices.items()}, config, int(config.seed),
               read_status(job_dir).get("provenance"), read_items(job_dir / items_dir / ITEMS_FILE), task)


def read_sweep(sweep_dir: Path, items_dir: str = "predictions") -> list[Job]:
    """Every completed job under ``sweep_dir`` that wrote a per-item file in ``items_dir`` (``predictions``: the
    student's answers; ``rationales``: the teacher's test rationales)."""
    if items_dir not in ITEM_DIRS:
        raise CompareError(f"items: {items_dir!r} is not one of {', '.join(ITEM_DIRS)}")
    if not sweep_dir.is_dir():
        raise CompareError(f"{sweep_dir}: not a directory (give a sweep directory, hydra.sweep.dir)")
    files = sorted(f for f in sweep_dir.rglob(ITEMS_FILE) if f.parent.name == items_dir)
    job_dirs = [f.parent.parent for f in files if read_status(f.parent.parent).get("status", "completed") == "completed"]
    if not job_dirs:
        raise CompareError(f"{sweep_dir}: no completed job with {items_dir}/{ITEMS_FILE}")
    return [read_job(d, items_dir) for d in job_dirs]


def cell_label(selector: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in selector.items())


def common_cells_line(common: Mapping[str, Any] | None) -> str:
    """The sentence a report says once instead of repeating the spec's common ``cells`` in every row."""
    return f"Every cell also sets {cell_label(common)}." if common else ""


def without_common(label: str, common: Mapping[str, Any] | None) -> str:
    """A cell's label less the ``key=value`` pairs of the spec's common ``cells`` (said once per report)."""
    shared = set(cell_label(common or {}).split(" "))
    return " ".join(part for part in label.split(" ") if part not in shared) or "(the common cell)"


def spec_cells(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every cell the spec's claims name (with the spec's common ``cells`` values), in order of first mention."""
    common, cells = spec.get("cells") or {}, []
    for entry in (spec.get("hypotheses") or {}).values():
        for claim in entry.get("claims") or []:
            for side in ("a", "b"):
                selector = {**common, **(claim.get(side) or {})}
                if selector not in cells:
                    cells.append(selector)
    return cells


def _matches(job: Job, selector: Mapping[str, Any]) -> bool:
    return all(job.value(key) is not None and str(job.value(key)) == str(value) for key, value in selector.items())


def cell_jobs(jobs: Sequence[Job], selector: Mapping[str, Any]) -> dict[int, Job]:
    """The cell's job per seed; refuses a cell with two jobs of one seed (the selector names too few keys)."""
    by_seed: dict[int, Job] = {}
    for job in jobs:
        if _matches(job, selector):
            if job.seed in by_seed:
                raise CompareError(f"cell {cell_label(selector)!r}: seed {job.seed} ran in both {by_seed[job.seed].path} "
                                   f"and {job.path}; name the key that tells them apart")  # fmt: skip
            by_seed[job.seed] = job
    return dict(sorted(by_seed.items()))


# ----------------------------------------------------------------------------------------------------------- metrics


def _column(rows: Sequence[Mapping[str, Any]], name: str, equals: Any = None) -> np.ndarray:
    """A per-item column as floats (NaN where the item lacks it); with ``equals``, 1.0 where it has that value."""
    values = [row.get(name) for row in rows]
    if equals is not None:
        return np.array([math.nan if v is None else float(v == equals) for v in values])
    return np.array([math.nan if v is None else float(v) for v in values])


Parts = list[tuple[np.ndarray, np.ndarray]]


class Statistic:
    """A metric of one job's items as ratios of weighted sums: ``parts`` reads the per-item rows once into
    (numerator, denominator) arrays (seeds × items) per ratio, and ``evaluate`` computes the metric under bootstrap
    weights (replicates × items) from them, as often as the bootstrap needs, without reading the rows again."""

    def parts(self, rows: Sequence[Sequence[Mapping[str, Any]]]) -> Parts:
        raise NotImplementedError

    def combine(self, ratios: list[np.ndarray]) -> np.ndarray:
        """The metric from its ratios (each replicates × seeds)."""
        (ratio,) = ratios
        return ratio

    def evaluate(self, parts: Parts, weights: np.ndarray) -> np.ndarray:
        """(replicates × seeds) values under ``weights``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.combine([(weights @ numerator.T) / (weights @ denominator.T) for numerator, denominator in parts])

    def weighted(self, rows: Sequence[Sequence[Mapping[str, Any]]], weights: np.ndarray) -> np.ndarray:
        return self.evaluate(self.parts(rows), weights)


@dataclass
class Mean(Statistic):
    """The mean of a per-item column (or of ``column == equals``), over the items where it is defined and where each
    ``where`` condition holds: a column that is 1, or 0 for ``"!name"``; a list of them must all hold."""

    column: str
    equals: Any = None
    where: str | Sequence[str] | None = None

    def parts(self, rows: Sequence[Sequence[Mapping[str, Any]]]) -> Parts:
        conditions = [self.where] if isinstance(self.where, str) else list(self.where or [])
        numerators, denominators = [], []
        for seed_rows in rows:
            values = _column(seed_rows, self.column, self.equals)
            keep = ~np.isnan(values)
            for condition in conditions:
                name, wanted = (condition[1:], 0.0) if condition.startswith("!") else (condition, 1.0)
                keep &= _column(seed_rows, name) == wanted
            numerators.append(np.where(keep, values, 0.0))
            denominators.append(keep.astype(float))
        return [(np.stack(numerators), np.stack(denominators))]


class LAS(Statistic):
    """Leakage-adjusted simulatability (``scd.evaluation.las``) from the per-item simulator answers: the unweighted
    mean over leaked and non-leaked items of (simulator right from question+rationale − right from the question),
    on the items whose answer the simulator saw; an empty group is skipped."""

    def parts(self, rows: Sequence[Sequence[Mapping[str, Any]]]) -> Parts:
        groups = []
        for leaked_wanted in (True, False):
            numerators, denominators = [], []
            for seed_rows in rows:
                student = _column(seed_rows, "predicted")
                xe, x, e = (_column(seed_rows, f"sim_{view}") for view in ("xe", "x", "e"))
                usable = ~np.isnan(student) & ~np.isnan(xe)
                gain = (xe == student).astype(float) - (x == student)
                in_group = usable & ((e == student) == leaked_wanted)
                numerators.append(np.where(in_group, gain, 0.0))
                denominators.append(in_group.astype(float))
            groups.append((np.stack(numerators), np.stack(denominators)))
        return groups

    def combine(self, ratios: list[np.ndarray]) -> np.ndarray:
        return _nanmean_pair(*ratios)


def _nanmean_pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise mean of two arrays skipping NaN (NaN where both are)."""
    count = (~np.isnan(a)).astype(float) + ~np.isnan(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.nan_to_num(a) + np.nan_to_num(b)) / np.where(count > 0, count, np.nan)


def build_metric(name: str, definitions: Mapping[str, Any]) -> Statistic:
    """A metric by name: ``las``, one the spec's ``metrics`` defines (``{mean: column, equals: ..., where: ...}``), or
    any per-item column (its mean)."""
    if name in definitions:
        definition = definitions[name]
        if not isinstance(definition, Mapping) or "mean" not in definition or set(definition) - {"mean", "equals", "where"}:
            raise CompareError(f"metrics.{name}: give `mean: <column>`, and optionally `equals:` and `where:`")
        where = definition.get("where")
        if where is not None and not (isinstance(where, str) or (isinstance(where, Sequence) and where
                                                                 and all(isinstance(w, str) for w in where))):
            raise CompareError(f"metrics.{name}.where: give a column name, \"!name\", or a list of them; got {where!r}")
        return Mean(str(definition["mean"]), definition.get("equals"), where)
    if name == "las":
        return LAS()
    return Mean(name)


# ------------------------------------------------------------------------------------------------------- statistics


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function with ``df`` degrees of freedom (the normal's for infinite ``df``): the
    density integrated by Simpson's rule (numpy has no t distribution, and scd does not depend on scipy)."""
    if math.isinf(df):
        return 0.5 * (1 + math.erf(t / math.sqrt(2)))
    if t < 0:
        return 1 - t_cdf(-t, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    steps = 4000
    xs = np.linspace(0.0, t, steps + 1)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(xs**2 / df))
    simpson = density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum()
    return min(1.0, 0.5 + float(simpson) * t / steps / 3)


def t_quantile(p: float, df: float) -> float:
    """The ``p``-quantile (p > 0.5) of Student's t, by bisection on ``t_cdf``."""
    low, high = 0.0, 1000.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def needed(target_half_width: float, per_unit: float, fixed: float, units: int) -> int | None:
    """The fewest units (seeds, or clusters) n >= 1 with 1.96·sqrt(per_unit/n + fixed) <= ``target_half_width``;
    None where ``fixed`` (the variance the other factor leaves) is already too large, or past 100x ``units``."""
    room = (target_half_width / Z_975) ** 2 - fixed
    if room <= 0:
        return None
    n = max(1, math.ceil(per_unit / room))
    return n if n <= 100 * units else None


def claim_rng(spec_seed: int, key: str) -> np.random.Generator:
    """The claim's own random stream, from the spec's seed and the claim itself."""
    return np.random.default_rng([spec_seed, int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)])


@dataclass
class ClaimResult:
    hypothesis: str
    a: str
    b: str
    metric: str
    claim: str
    margin: float | None
    estimate: float
    ci_low: float
    ci_high: float
    t_low: float | None
    t_high: float | None
    seeds: list[int]
    n_items: int
    n_clusters: int
    p_for: float
    p_against: float
    p_for_adjusted: float = math.nan
    p_against_adjusted: float = math.nan
    verdict: str = "inconclusive"
    df: float = math.inf
    se: float = math.nan
    variance_components: dict[str, float] = field(default_factory=dict)
    min_detectable_effect: float = math.nan
    seeds_for_target: int | None = None
    items_for_target: int | None = None
    seed_differences: list[float] = field(default_factory=list)


def _replicates(parts_a: Parts, parts_b: Parts, metric: Statistic, cluster_of: np.ndarray, n_clusters: int, *,
                resample_seeds: bool, resample_clusters: bool, resamples: int, rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """Bootstrap replicates of the paired difference, resampling seeds, clusters or both (the same draw for A and B)."""
    seeds = parts_a[0][0].shape[0]
    replicates = []
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        if resample_clusters:
            counts = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=size)
            weights = counts[:, cluster_of].astype(float)
        else:
            weights = np.ones((size, len(cluster_of)))
        differences = metric.evaluate(parts_a, weights) - metric.evaluate(parts_b, weights)  # replicates × seeds
        if resample_seeds:
            seed_counts = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=size).astype(float)
        else:
            seed_counts = np.ones((size, seeds))
        seed_counts[np.isnan(differences)] = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates.append(np.nansum(np.nan_to_num(differences) * seed_counts, axis=1) / seed_counts.sum(axis=1))
    values = np.concatenate(replicates)
    return values[~np.isnan(values)]


def crossed_variance(v_seeds: float, v_clusters: float, v_both: float, seeds: int, clusters: int
                     ) -> tuple[float, float, dict[str, float]]:  # fmt: skip
    """The variance of the estimate over new seeds and new item clusters, and its Satterthwaite degrees of freedom,
    from the variances of three bootstraps (seeds only, clusters only, both).

    Seeds and clusters are crossed random factors: difference = seed effect + cluster effect + interaction. Resampling
    both counts the interaction three times, resampling one misses the other factor; for a mean, the three bootstrap
    variances are (S-1)/S·MS_S/(SC), (C-1)/C·MS_C/(SC) and their sum plus (S-1)(C-1)/(SC)·MS_E/(SC), from which the
    unbiased (MS_S + MS_C - MS_E)/(SC) follows (kept at least σ²_e/(SC), which it estimates from below). Also
    returns the variance components (``seed``, ``cluster``, ``interaction``: σ²_seed, σ²_cluster, σ²_e) that plan
    other designs: variance(S, C) = σ²_seed/S + σ²_cluster/C + σ²_e/(SC)."""
    seed_term = v_seeds * seeds / (seeds - 1) if seeds > 1 else 0.0
    cluster_term = v_clusters * clusters / (clusters - 1) if clusters > 1 else 0.0
    interaction = max(0.0, v_both - v_seeds - v_clusters)
    interaction_term = interaction * seeds * clusters / ((seeds - 1) * (clusters - 1)) if seeds > 1 and clusters > 1 else 0.0
    # Not floored at either one-factor variance: with a seed component near 0, that floor would bias it upwards.
    variance = max(seed_term + cluster_term - interaction_term, interaction_term)
    parts = [(seed_term, seeds - 1), (cluster_term, clusters - 1), (interaction_term, (seeds - 1) * (clusters - 1))]
    denominator = sum(term**2 / df for term, df in parts if df > 0 and term > 0)
    df = variance**2 / denominator if denominator > 0 else math.inf
    interaction_sigma = interaction_term * seeds * clusters
    components = {"seed": max(0.0, seed_term * seeds - interaction_sigma / clusters),
                  "cluster": max(0.0, cluster_term * clusters - interaction_sigma / seeds),
                  "interaction": interaction_sigma}  # fmt: skip
    return variance, max(1.0, df), components


def paired_claim(jobs_a: Mapping[int, Job], jobs_b: Mapping[int, Job], metric: Statistic, *, resamples: int,
                 rng: np.random.Generator) -> dict[str, Any]:  # fmt: skip
    """The paired difference metric(A) − metric(B) over shared seeds and items, the seed-level differences, and the
    variance of the difference over seeds and item clusters with its degrees of freedom (see ``crossed_variance``)."""
    seeds = sorted(set(jobs_a) & set(jobs_b))
    if not seeds:
        raise CompareError("the two cells share no seed")
    jobs = [job for seed in seeds for job in (jobs_a[seed], jobs_b[seed])]
    shared = sorted(set.intersection(*({row["id"] for row in job.items} for job in jobs)))
    if not shared:
        raise CompareError(f"the two cells share no test item ({jobs[0].path}, {jobs[1].path})")

    def aligned(job: Job) -> list[Mapping[str, Any]]:
        by_id = {row["id"]: row for row in job.items}
        return [by_id[item] for item in shared]

    rows_a, rows_b = [aligned(jobs_a[s]) for s in seeds], [aligned(jobs_b[s]) for s in seeds]
    # The rows are read into arrays once; every bootstrap chunk below reuses them.
    parts_a, parts_b = metric.parts(rows_a), metric.parts(rows_b)
    # Only the items the metric counts (a `where`, a missing value) enter the bootstrap and the item counts: clusters
    # without one would be drawn as empty units, and the power line would scale items that were never measured.
    counted = np.zeros(len(shared), dtype=bool)
    for _, denominator in parts_a + parts_b:
        counted |= (denominator > 0).any(axis=0)
    if not counted.any():
        counted[:] = True  # nothing measured: the claim is reported as not measured
    parts_a, parts_b = ([(n[:, counted], d[:, counted]) for n, d in parts] for parts in (parts_a, parts_b))
    counted_rows = [row for row, keep in zip(rows_a[0], counted) if keep]
    clusters = sorted({str(row.get("cluster", row["id"])) for row in counted_rows})
    index = {cluster: k for k, cluster in enumerate(clusters)}
    cluster_of = np.array([index[str(row.get("cluster", row["id"]))] for row in counted_rows])
    ones = np.ones((1, len(counted_rows)))
    per_seed = (metric.evaluate(parts_a, ones) - metric.evaluate(parts_b, ones))[0]
    estimate = float(np.nanmean(per_seed)) if not np.isnan(per_seed).all() else math.nan
    streams = rng.spawn(3)
    variances = {}
    for (name, by_seeds, by_clusters), stream in zip((("seeds", True, False), ("clusters", False, True),
                                                      ("both", True, True)), streams):  # fmt: skip
        values = _replicates(parts_a, parts_b, metric, cluster_of, len(clusters), resample_seeds=by_seeds,
                             resample_clusters=by_clusters, resamples=resamples, rng=stream)  # fmt: skip
        variances[name] = float(np.var(values, ddof=1)) if len(values) > 1 else math.nan
    variance, df, components = crossed_variance(variances["seeds"], variances["clusters"], variances["both"],
                                                len(seeds), len(clusters))  # fmt: skip
    return {"seeds": seeds, "n_items": len(counted_rows), "n_clusters": len(clusters), "estimate": estimate,
            "per_seed": per_seed, "variance": variance, "df": df, "components": components}  # fmt: skip


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (a NaN, a claim not measured, stays NaN and does not count)."""
    measured = [k for k, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    for k, value in zip(measured, _holm([p_values[k] for k in measured])):
        adjusted[k] = value
    return adjusted


def _holm(p_values: Sequence[float]) -> list[float]:
    order = sorted(range(len(p_values)), key=lambda k: p_values[k])
    adjusted, running = [math.nan] * len(p_values), 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[k]))
        adjusted[k] = running
    return adjusted


def overall(verdicts: Sequence[str]) -> str:
    if not verdicts:
        return "not run"
    if all(v == "not measured" for v in verdicts):
        return "not measured"
    if "does not hold" in verdicts:
        return "does not hold"
    return "holds" if all(v == "holds" for v in verdicts) else "inconclusive"


@dataclass
class Settings:
    resamples: int = 10_000
    seed: int = 0
    multiplicity: str = "holm"
    alpha: float = 0.05
    target_half_width: float | None = None
    # Whose per-item files: the student's (predictions/) or the teacher's test rationales (rationales/).
    items: str = "predictions"


def evaluate_claim(hypothesis: str, claim: Mapping[str, Any], jobs: Sequence[Job], common: Mapping[str, Any],
                   metrics: Mapping[str, Any], settings: Settings) -> ClaimResult:  # fmt: skip
    where = f"hypotheses.{hypothesis}.claims"
    try:
        a, b, metric_name = {**common, **claim["a"]}, {**common, **claim["b"]}, str(claim["metric"])
    except (KeyError, TypeError):
        raise CompareError(f"{where}: each claim needs a, b (override values) and metric") from None
    if set(claim) - CLAIM_KEYS:
        raise CompareError(f"{where}: unknown keys {sorted(set(claim) - CLAIM_KEYS)}; a claim has "
                           f"{', '.join(sorted(CLAIM_KEYS))}")  # fmt: skip
    kind = str(claim.get("claim", "> 0"))
    if kind not in CLAIM_KINDS:
        raise CompareError(f"{where}: claim {kind!r} is not one of {', '.join(CLAIM_KINDS)}")
    margin = claim.get("margin")
    if kind == "non-inferior" and (margin is None or float(margin) < 0):
        raise CompareError(f"{where}: a non-inferior claim needs margin >= 0")
    jobs_a, jobs_b = cell_jobs(jobs, a), cell_jobs(jobs, b)
    for selector, found in ((a, jobs_a), (b, jobs_b)):
        if not found:
            raise MissingCell(f"no job of the sweep matches cell {cell_label(selector)!r}")
    key = json.dumps([hypothesis, a, b, metric_name, kind], sort_keys=True, default=str)
    paired = paired_claim(jobs_a, jobs_b, build_metric(metric_name, metrics), resamples=settings.resamples,
                          rng=claim_rng(settings.seed, key))  # fmt: skip
    threshold = -float(margin) if kind == "non-inferior" else 0.0
    se, df, estimate = math.sqrt(paired["variance"]), paired["df"], paired["estimate"]
    if math.isnan(estimate) or math.isnan(se):
        low = high = below = math.nan  # the metric was not measured (no LAS without parsable answers, say)
    elif se > 0:
        half = t_quantile(0.975, df) * se
        low, high = estimate - half, estimate + half
        below = t_cdf((threshold - estimate) / se, df)  # P(difference <= threshold) under the estimate
    else:
        # No variation at all: the sign decides, and a difference exactly at the threshold decides nothing.
        low = high = estimate
        below = 0.0 if estimate > threshold else 1.0 if estimate < threshold else 0.5
    p_for, p_against = (1 - below, below) if kind == "< 0" else (below, 1 - below)
    per_seed = paired["per_seed"][~np.isnan(paired["per_seed"])]
    t_low = t_high = None
    if len(per_seed) >= 2:
        seed_half = t_quantile(0.975, len(per_seed) - 1) * float(np.std(per_seed, ddof=1)) / math.sqrt(len(per_seed))
        t_low, t_high = float(per_seed.mean()) - seed_half, float(per_seed.mean()) + seed_half
    n_seeds, n_clusters = len(paired["seeds"]), paired["n_clusters"]
    result = ClaimResult(hypothesis, cell_label(a), cell_label(b), metric_name, kind,
                         None if margin is None else float(margin), paired["estimate"], low, high, t_low, t_high,
                         paired["seeds"], paired["n_items"], n_clusters, p_for, p_against, df=df, se=se,
                         variance_components=paired["components"],
                         seed_differences=[float(v) for v in paired["per_seed"]])  # fmt: skip
    result.min_detectable_effect = (t_quantile(0.975, df) + t_quantile(0.8, df)) * se
    if settings.target_half_width and se > 0:
        c = paired["components"]
        result.seeds_for_target = needed(settings.target_half_width, c["seed"] + c["interaction"] / n_clusters,
                                         c["cluster"] / n_clusters, n_seeds)  # fmt: skip
        clusters_needed = needed(settings.target_half_width, c["cluster"] + c["interaction"] / n_seeds,
                                 c["seed"] / n_seeds, n_clusters)  # fmt: skip
        if clusters_needed is not None:
            result.items_for_target = math.ceil(clusters_needed * paired["n_items"] / n_clusters)
    return result


def compare(jobs: Sequence[Job], spec: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Every hypothesis's claims (``ClaimResult``s, Holm-adjusted within the hypothesis) and its verdict."""
    hypotheses = spec.get("hypotheses")
    if not isinstance(hypotheses, Mapping) or not hypotheses:
        raise CompareError("spec: give `hypotheses:`, a mapping of names to {statement, claims}")
    common, metrics = spec.get("cells") or {}, spec.get("metrics") or {}
    tail = settings.alpha / 2
    report = {}
    for name, entry in hypotheses.items():
        results, not_run = [], []
        for claim in entry.get("claims") or []:
            try:
                results.append(evaluate_claim(str(name), claim, jobs, common, metrics, settings))
            except MissingCell as missing:
                not_run.append(f"{claim.get('metric')}: {missing}")
        adjust = holm if settings.multiplicity == "holm" else list
        for result, p_for, p_against in zip(results, adjust([r.p_for for r in results]),
                                             adjust([r.p_against for r in results])):  # fmt: skip
            result.p_for_adjusted, result.p_against_adjusted = p_for, p_against
            result.verdict = ("not measured" if math.isnan(p_for) else "holds" if p_for < tail
                              else "does not hold" if p_against < tail else "inconclusive")
        report[str(name)] = {"statement": str(entry.get("statement", "")), "verdict": overall([r.verdict for r in results]),
                             "claims": results, "not_run": not_run}  # fmt: skip
    return report


def provenance_warnings(jobs: Sequence[Job], report: Mapping[str, Any]) -> list[str]:
    """One line per provenance field in which the compared jobs differ."""
    compared = {(c.a, seed) for entry in report.values() for c in entry["claims"] for seed in c.seeds}
    compared |= {(c.b, seed) for entry in report.values() for c in entry["claims"] for seed in c.seeds}
    cells = {}
    for label, seed in sorted(compared):
        selector = dict(part.split("=", 1) for part in label.split(" "))
        job = cell_jobs(jobs, selector).get(seed)
        if job is not None:
            cells[f"{label} seed {seed}"] = job.provenance
    return differing_fields(cells)


# ------------------------------------------------------------------------------------------------------------ output


def _number(value: float | None, sign: str = "+") -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:{sign}.3f}"


def _claim_text(r: ClaimResult) -> str:
    return f"> -{r.margin:g} (non-inferior)" if r.claim == "non-inferior" else r.claim


def markdown(report: Mapping[str, Any], settings: Settings, warnings: Sequence[str],
             common: Mapping[str, Any] | None = None) -> str:
    adjusted = "Holm within each hypothesis" if settings.multiplicity == "holm" else "none (unadjusted p-values)"
    lines = [f"Paired differences A − B over shared seeds and items. 95% interval: seeds and item clusters as crossed "
             f"random factors, variance from bootstraps over each ({settings.resamples} resamples, an RNG per claim), "
             f"t with Satterthwaite's degrees of freedom; the seed-level t-interval beside it. "
             f"Multiplicity: {adjusted}; a claim holds when its adjusted one-sided p < {settings.alpha / 2:g}. "
             f"{common_cells_line(common)}".rstrip(), ""]
    lines += [f"**Warning:** {warning}" for warning in warnings] + ([""] if warnings else [])
    for name, entry in report.items():
        lines += [f"### {name}: {entry['statement']} — **{entry['verdict']}**", "",
                  "| A | B | metric | claim | A − B | 95% interval (df) | seed t 95% | seeds | items (clusters) | "
                  "p adj. for / against | verdict |", "|" + " --- |" * 11]  # fmt: skip
        for r in entry["claims"]:
            t = f"[{_number(r.t_low)}, {_number(r.t_high)}]" if r.t_low is not None else (
                "n/a (one seed)" if len(r.seeds) == 1 else "n/a")
            lines.append(f"| {without_common(r.a, common)} | {without_common(r.b, common)} | {r.metric} | "
                         f"{_claim_text(r)} | {_number(r.estimate)} | "
                         f"[{_number(r.ci_low)}, {_number(r.ci_high)}] ({r.df:.0f}) | {t} | {len(r.seeds)} | "
                         f"{r.n_items} ({r.n_clusters}) | {_number(r.p_for_adjusted, '')} / {_number(r.p_against_adjusted, '')} | "
                         f"{r.verdict} |")  # fmt: skip
        lines += [f"| (not run: {text}) |" + " |" * 10 for text in entry["not_run"]]
        lines.append("")
        lines += [power_line(r, settings.target_half_width, common) for r in entry["claims"]]
        lines.append("")
    return "\n".join(lines)


def power_line(r: ClaimResult, target: float | None, common: Mapping[str, Any] | None = None) -> str:
    """What the design could detect, and what a target half-width would need."""
    line = (f"- power, {without_common(r.a, common)} − {without_common(r.b, common)}, {r.metric}: "
            f"half-width {_number((r.ci_high - r.ci_low) / 2, '')}; smallest effect detected with 80% power "
            f"{_number(r.min_detectable_effect, '')}")
    if target and not r.se > 0:
        line += "; no variance measured, nothing to plan from"
    elif target:
        seeds = f"about {r.seeds_for_target} seeds" if r.seeds_for_target else "no number of seeds"
        items = f"about {r.items_for_target} items" if r.items_for_target else "no number of items"
        line += (f"; half-width {target:g} needs {seeds} at {r.n_items} items, or {items} at {len(r.seeds)} "
                 "seeds")
    return line


def load_spec(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CompareError(f"{path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise CompareError(f"{path}: not YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise CompareError(f"{path}: a spec is a mapping with `hypotheses:`")
    return spec


def run_comparison(sweep_dir: Path, spec_path: Path, out: Path | None = None, **overrides: Any) -> dict[str, Any]:
    """Compare ``sweep_dir``'s cells as ``spec_path`` says; write and return the report."""
    spec = load_spec(spec_path)
    known = set(Settings.__dataclass_fields__)
    unknown = set(spec) - known - SPEC_SECTIONS
    if unknown:
        raise CompareError(f"{spec_path}: unknown keys {sorted(unknown)}; a spec has "
                           f"{', '.join(sorted(SPEC_SECTIONS | known))}")  # fmt: skip
    settings = Settings(**{k: v for k, v in spec.items() if k in known})
    for key, value in overrides.items():
        if value is not None:
            setattr(settings, key, value)
    for key in ("resamples", "seed"):
        if not isinstance(getattr(settings, key), int):
            raise CompareError(f"{spec_path}: {key} must be an integer, got {getattr(settings, key)!r}")
    for key in ("alpha", "target_half_width"):
        value = getattr(settings, key)
        if value is not None and (not isinstance(value, (int, float)) or not 0 < value < 1):
            raise CompareError(f"{spec_path}: {key} must be a number in (0, 1), got {value!r}")
    if settings.multiplicity not in MULTIPLICITY:
        raise CompareError(f"multiplicity {settings.multiplicity!r}: use one of {', '.join(MULTIPLICITY)}")
    if settings.resamples < 100:
        raise CompareError(f"resamples must be >= 100, got {settings.resamples}")
    jobs = read_sweep(sweep_dir, settings.items)
    report = compare(jobs, spec, settings)
    warnings = provenance_warnings(jobs, report)
    sections = [markdown(report, settings, warnings, spec.get("cells"))]
    tasks = {job.task for job in jobs}
    for task in sorted(tasks, key=lambda t: t.__name__):
        sections.append(task.comparison_tables([job for job in jobs if job.task is task], spec))
    out = out or sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    result = {"sweep": str(sweep_dir), "spec": spec, "settings": asdict(settings), "warnings": warnings,
              "hypotheses": {name: {**entry, "claims": [asdict(c) for c in entry["claims"]]}
                             for name, entry in report.items()}}  # fmt: skip
    (out / "hypotheses.json").write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    text = "\n".join(section for section in sections if section)
    (out / "hypotheses.md").write_text(text, encoding="utf-8")
    print(text)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scd.compare", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("spec", type=Path, help="the claims, a YAML file (see the README's 'Comparing arms')")
    parser.add_argument("--out", type=Path, default=None, help="where hypotheses.md/json go (default: the sweep dir)")
    parser.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default 10000)")
    parser.add_argument("--target-half-width", type=float, default=None,
                        help="the 95%% half-width the power line plans for (seeds or items needed)")
    parser.add_argument("--multiplicity", choices=MULTIPLICITY, default=None, help="default: holm")
    args = parser.parse_args(argv)
    try:
        run_comparison(args.sweep_dir, args.spec, args.out, resamples=args.resamples,
                       target_half_width=args.target_half_width, multiplicity=args.multiplicity)  # fmt: skip
    except (CompareError, OSError) as err:
        print(f"scd: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
