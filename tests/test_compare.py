"""scd.compare: paired differences with intervals over seeds and item clusters, Holm within a hypothesis, power lines.

The calibration tests simulate sweeps whose truth is known: a planted effect is found and covered, and null sweeps
give a verdict other than "inconclusive" at about the nominal rate, which an item-level bootstrap that ignores the
clusters exceeds (the test's own check that it can fail)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from scd.compare import (LAS, CompareError, Job, Mean, Settings, compare, holm, needed, paired_claim,
                         run_comparison, t_quantile)
from scd.evaluation.items import write_items
from scd.evaluation.las import leakage_adjusted_simulatability
from tests.conftest import ROOT


# The simulated world: a test set of rules (clusters) with a difficulty each; each arm suits some rules better than
# others (an arm x rule interaction, fixed for the test set); each job's student learns some rules better (job x
# rule) and is better or worse overall (a seed shift shared by the paired jobs of a seed); answers are Bernoulli.
SD = {"rule": 1.0, "arm_rule": 0.8, "job_rule": 0.8, "seed": 0.2}


def synthetic_items(rng: np.random.Generator, logits: np.ndarray, per_cluster: int) -> list[dict]:
    """Items whose correctness is logistic in their rule's logit for this job: errors cluster by rule."""
    return [{"id": f"q{c}_{k}", "cluster": f"rule{c}", "correct": int(rng.random() < 1 / (1 + math.exp(-logit)))}
            for c, logit in enumerate(logits) for k in range(per_cluster)]


def cell_jobs(rng: np.random.Generator, effect_a: float, seeds: int = 5, n_clusters: int = 40,
              per_cluster: int = 8) -> list[Job]:  # fmt: skip
    """One simulated sweep: arms a (``effect_a`` better on the logit scale) and b, ``seeds`` paired seeds."""
    rule = rng.normal(0, SD["rule"], n_clusters)
    arm_rule = {name: rng.normal(0, SD["arm_rule"], n_clusters) for name in "ab"}
    jobs = []
    for seed in range(seeds):
        shift = rng.normal(0, SD["seed"])
        for name, effect in (("a", effect_a), ("b", 0.0)):
            logits = rule + arm_rule[name] + rng.normal(0, SD["job_rule"], n_clusters) + shift + effect
            jobs.append(Job(Path(f"/sweep/{name}{seed}"), {"arm": name}, OmegaConf.create({"seed": seed}), seed,
                            None, synthetic_items(rng, logits, per_cluster)))  # fmt: skip
    return jobs


def one_claim(metric: str = "correct", kind: str = "> 0", **extra) -> dict:
    return {"hypotheses": {"H": {"statement": "a beats b",
                                 "claims": [{"a": {"arm": "a"}, "b": {"arm": "b"}, "metric": metric, "claim": kind,
                                             **extra}]}}}  # fmt: skip


def true_difference(effect: float) -> float:
    """The population difference of accuracies (over rules, arms' rule affinities, jobs and seeds), by Monte Carlo."""
    rng = np.random.default_rng(0)
    n = 1_000_000
    shared = rng.normal(0, SD["rule"], n) + rng.normal(0, SD["seed"], n)
    a = shared + rng.normal(0, SD["arm_rule"], n) + rng.normal(0, SD["job_rule"], n) + effect
    b = shared + rng.normal(0, SD["arm_rule"], n) + rng.normal(0, SD["job_rule"], n)
    return float(np.mean(1 / (1 + np.exp(-a)) - 1 / (1 + np.exp(-b))))


def test_a_planted_effect_is_found_and_its_interval_covers_the_truth():
    jobs = cell_jobs(np.random.default_rng(7), effect_a=0.6)
    result = compare(jobs, one_claim(), Settings(resamples=4000))["H"]
    claim = result["claims"][0]
    truth = true_difference(0.6)
    assert 0.10 < truth < 0.14
    assert claim.ci_low < truth < claim.ci_high
    assert claim.verdict == "holds" and result["verdict"] == "holds"
    assert claim.n_items == 320 and claim.n_clusters == 40 and claim.seeds == [0, 1, 2, 3, 4]
    # The seed-level t-interval is printed beside it and covers the truth too.
    assert claim.t_low < truth < claim.t_high


def null_sweeps(cluster_aware: bool, sweeps: int = 150) -> tuple[float, float]:
    """Over simulated null sweeps: the share with a verdict other than "inconclusive", and the mean standard error
    over the standard deviation of the estimates (1 for an honest standard error)."""
    rng = np.random.default_rng(2026)
    decided, estimates, errors = 0, [], []
    for _ in range(sweeps):
        jobs = cell_jobs(rng, effect_a=0.0)
        if not cluster_aware:
            for job in jobs:
                for row in job.items:
                    row["cluster"] = row["id"]
        claim = compare(jobs, one_claim(), Settings(resamples=400))["H"]["claims"][0]
        decided += claim.verdict != "inconclusive"
        estimates.append(claim.estimate)
        errors.append(claim.se)
    return decided / sweeps, float(np.mean(errors) / np.std(estimates))


@pytest.mark.slow
def test_null_sweeps_decide_at_about_the_nominal_rate_and_ignoring_clusters_does_not():
    # Null: both arms draw from one distribution; "holds" or "does not hold" should come out about 5% of the time.
    rate, calibration = null_sweeps(cluster_aware=True)
    print(f"cluster-aware: decided {rate:.3f}, mean SE / SD of estimates {calibration:.3f}")
    assert rate <= 0.10 and 0.85 <= calibration <= 1.25
    # Treating the 8 items of a rule as independent understates the variance: its errors are too small.
    naive_rate, naive_calibration = null_sweeps(cluster_aware=False)
    print(f"items as independent: decided {naive_rate:.3f}, mean SE / SD of estimates {naive_calibration:.3f}")
    assert naive_calibration < 0.8 and naive_rate > rate


def test_a_claim_has_its_own_random_stream():
    jobs = cell_jobs(np.random.default_rng(3), effect_a=0.3)
    alone = compare(jobs, one_claim(), Settings(resamples=1000))["H"]["claims"][0]
    spec = one_claim()
    spec["hypotheses"]["G"] = {"statement": "another", "claims": [dict(spec["hypotheses"]["H"]["claims"][0],
                                                                       metric="correct", claim="< 0")]}
    spec["hypotheses"] = {"G": spec["hypotheses"]["G"], "H": spec["hypotheses"]["H"]}  # the new claim comes first
    beside = compare(jobs, spec, Settings(resamples=1000))["H"]["claims"][0]
    assert (alone.ci_low, alone.ci_high) == (beside.ci_low, beside.ci_high)


def test_holm_adjusts_within_a_hypothesis():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_t_quantiles_match_the_tables():
    assert t_quantile(0.975, 2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(0.975, 4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(0.975, 200) == pytest.approx(1.972, abs=1e-3)


def test_las_under_unit_weights_is_the_pipelines_las():
    rng = np.random.default_rng(1)
    student, xe, x, e = (rng.integers(0, 3, 200) for _ in range(4))
    rows = [{"id": str(k), "predicted": int(student[k]), "sim_xe": int(xe[k]), "sim_x": int(x[k]), "sim_e": int(e[k])}
            for k in range(200)]
    rows[0]["predicted"] = None  # unparsable: not simulated, left out as the pipeline leaves it out
    expected = leakage_adjusted_simulatability(student[1:], xe[1:], x[1:], e[1:], bootstrap_samples=1).las
    assert LAS().weighted([rows], np.ones((1, 200)))[0, 0] == pytest.approx(expected, abs=1e-12)


def test_mean_with_where_and_equals():
    rows = [{"id": "1", "label": "supporting", "cue_opposes": 1}, {"id": "2", "label": "generic", "cue_opposes": 0},
            {"id": "3", "label": "supporting", "cue_opposes": None}]
    ones = np.ones((1, 3))
    assert Mean("label", equals="supporting").weighted([rows], ones)[0, 0] == pytest.approx(2 / 3)
    assert Mean("label", equals="supporting", where="cue_opposes").weighted([rows], ones)[0, 0] == 1.0
    assert Mean("label", equals="supporting", where="!cue_opposes").weighted([rows], ones)[0, 0] == 0.0
    both = [{"id": "4", "label": "generic", "cue_opposes": 1, "mc": 0},
            {"id": "5", "label": "supporting", "cue_opposes": 1, "mc": 1}]
    assert Mean("label", equals="supporting", where=["cue_opposes", "!mc"]).weighted([both], np.ones((1, 2)))[0, 0] == 0.0
    with pytest.raises(CompareError, match=r"metrics.m.where: give a column name, \"!name\", or a list of them; got 3"):
        compare(cell_jobs(np.random.default_rng(4), effect_a=0.0, seeds=2),
                {"metrics": {"m": {"mean": "correct", "where": 3}}, **one_claim(metric="m")}, Settings())


def test_a_metric_restricted_by_where_is_compared_on_its_items_alone():
    """A `where` metric gives the claim that the jobs holding only its items give: the same interval, item and cluster
    counts (before, clusters without a counted item were drawn in the bootstrap as empty units, and the counts and
    power line included items never measured)."""
    jobs = cell_jobs(np.random.default_rng(4), effect_a=0.5)
    for job in jobs:
        for row in job.items:
            row["kept"] = int(int(row["cluster"][4:]) % 3 == 0)
    restricted = compare(jobs, {"metrics": {"m": {"mean": "correct", "where": "kept"}}, **one_claim(metric="m")},
                         Settings(resamples=2000, target_half_width=0.05))["H"]["claims"][0]  # fmt: skip
    subset = [Job(j.path, j.choices, j.config, j.seed, j.provenance, [r for r in j.items if r["kept"]]) for j in jobs]
    alone = compare(subset, {"metrics": {"m": {"mean": "correct"}}, **one_claim(metric="m")},
                    Settings(resamples=2000, target_half_width=0.05))["H"]["claims"][0]  # fmt: skip
    assert (restricted.n_items, restricted.n_clusters) == (alone.n_items, alone.n_clusters) == (14 * 8, 14)
    for field in ("estimate", "ci_low", "ci_high", "df"):
        assert getattr(restricted, field) == pytest.approx(getattr(alone, field), rel=1e-12)
    assert (restricted.seeds_for_target, restricted.items_for_target) == (alone.seeds_for_target, alone.items_for_target)


def test_non_inferiority_holds_inside_the_margin_and_not_far_below_it():
    jobs = cell_jobs(np.random.default_rng(5), effect_a=0.0)
    assert compare(jobs, one_claim(kind="non-inferior", margin=0.2), Settings(resamples=2000))["H"]["verdict"] == "holds"
    worse = cell_jobs(np.random.default_rng(5), effect_a=-2.5)
    assert compare(worse, one_claim(kind="non-inferior", margin=0.05),
                   Settings(resamples=2000))["H"]["verdict"] == "does not hold"  # fmt: skip


def test_power_line_plans_seeds_and_items_for_a_target_half_width():
    jobs = cell_jobs(np.random.default_rng(9), effect_a=0.2)
    claim = compare(jobs, one_claim(), Settings(resamples=2000, target_half_width=0.05))["H"]["claims"][0]
    assert claim.min_detectable_effect == pytest.approx(
        (t_quantile(0.975, claim.df) + t_quantile(0.8, claim.df)) * claim.se, rel=1e-6)
    assert (claim.ci_high - claim.ci_low) / 2 > 0.05
    c = claim.variance_components

    def half_width(seeds: float, clusters: float) -> float:
        return 1.96 * math.sqrt(c["seed"] / seeds + c["cluster"] / clusters + c["interaction"] / (seeds * clusters))

    # These errors cluster by rule: more items reach the target (one cluster fewer does not), more seeds cannot.
    clusters = claim.items_for_target / 8
    assert clusters > 40 and half_width(5, clusters) <= 0.05 + 1e-9 < half_width(5, clusters - 1)
    assert claim.seeds_for_target is None and half_width(10**6, 40) > 0.05
    # Where seeds dominate, seeds are planned the same way.
    assert needed(0.02, per_unit=0.004, fixed=0.0, units=3) == math.ceil(0.004 / (0.02 / 1.959963984540054) ** 2)


def test_a_cell_that_did_not_run_is_reported_and_unpaired_jobs_are_refused():
    jobs = cell_jobs(np.random.default_rng(1), effect_a=0.0)
    missing = compare(jobs, {"hypotheses": {"H": {"claims": [{"a": {"arm": "c"}, "b": {"arm": "b"},
                                                              "metric": "correct"}]}}}, Settings(resamples=100))["H"]
    assert missing["verdict"] == "not run"
    assert missing["not_run"] == ["correct: no job of the sweep matches cell 'arm=c'"]
    for job in jobs:
        job.seed = 0
    with pytest.raises(CompareError, match="seed 0 ran in both"):
        compare(jobs, one_claim(), Settings(resamples=100))


def write_sweep(root: Path, jobs: list[Job], commits: dict[str, str] | None = None) -> None:
    """The jobs as a sweep directory: config, Hydra's choices, status with provenance, per-item file."""
    for k, job in enumerate(jobs):
        job_dir = root / str(k)
        (job_dir / ".hydra").mkdir(parents=True)
        (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": job.seed, "dataset": {}}))
        (job_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": job.choices}}}))
        commit = (commits or {}).get(job.choices["arm"], "abc")
        (job_dir / "status.json").write_text(json.dumps({"status": "completed", "provenance": {
            "git_commit": commit, "threads": 1, "cpu": "x", "torch": "2", "transformers": "5", "scd": "0",
            "pytorch_lightning": "2", "git_dirty": False, "gpu": None}}))  # fmt: skip
        write_items(job_dir / "predictions" / "items.jsonl.gz", job.items)


def test_the_command_line_writes_both_files_and_warns_on_mixed_commits(tmp_path):
    jobs = cell_jobs(np.random.default_rng(4), effect_a=0.6, seeds=3)
    write_sweep(tmp_path / "sweep", jobs, commits={"a": "abc", "b": "def"})
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(one_claim()))
    result = subprocess.run([sys.executable, "-m", "scd.compare", str(tmp_path / "sweep"), str(spec), "--resamples",
                             "500", "--target-half-width", "0.02"], capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "sweep" / "hypotheses.json").read_text())
    assert report["hypotheses"]["H"]["verdict"] == "holds"
    assert report["warnings"] == [
        "cells ran with different git_commit ('abc': arm=a seed 0, arm=a seed 1, arm=a seed 2; "
        "'def': arm=b seed 0, arm=b seed 1, arm=b seed 2)"]
    text = (tmp_path / "sweep" / "hypotheses.md").read_text()
    assert "**Warning:** cells ran with different git_commit" in text
    assert "half-width 0.02 needs no number of seeds at 320 items, or about" in text
    assert "Multiplicity: Holm within each hypothesis" in text


def test_a_bad_spec_is_one_line(tmp_path):
    jobs = cell_jobs(np.random.default_rng(4), effect_a=0.0, seeds=2)
    write_sweep(tmp_path / "sweep", jobs)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(one_claim(kind=">= 0")))
    result = subprocess.run([sys.executable, "-m", "scd.compare", str(tmp_path / "sweep"), str(spec)],
                            capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == "scd: error: hypotheses.H.claims: claim '>= 0' is not one of > 0, < 0, non-inferior\n"


def test_the_specs_common_cells_are_said_once_in_the_report_and_kept_whole_in_the_json(tmp_path):
    jobs = cell_jobs(np.random.default_rng(4), effect_a=0.6, seeds=2)
    for job in jobs:
        job.choices["world"] = "w1"
    write_sweep(tmp_path / "sweep", jobs)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"cells": {"world": "w1"}, **one_claim()}))
    report = run_comparison(tmp_path / "sweep", spec, tmp_path / "out", resamples=200, target_half_width=0.05)
    claim = report["hypotheses"]["H"]["claims"][0]
    assert (claim["a"], claim["b"]) == ("world=w1 arm=a", "world=w1 arm=b")
    text = (tmp_path / "out" / "hypotheses.md").read_text()
    assert text.count("world=w1") == 1
    assert "Every cell also sets world=w1." in text
    assert "| arm=a | arm=b | correct | > 0 |" in text
    assert "- power, arm=a − arm=b, correct: half-width" in text


def test_run_comparison_is_recomputed_from_the_files_alone(tmp_path):
    jobs = cell_jobs(np.random.default_rng(8), effect_a=0.4, seeds=3)
    write_sweep(tmp_path / "sweep", jobs)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(one_claim()))
    first = run_comparison(tmp_path / "sweep", spec, tmp_path / "one", resamples=300)
    again = run_comparison(tmp_path / "sweep", spec, tmp_path / "two", resamples=300)
    assert first["hypotheses"] == again["hypotheses"]
    in_memory = compare(jobs, one_claim(), Settings(resamples=300))["H"]["claims"][0]
    assert first["hypotheses"]["H"]["claims"][0]["estimate"] == pytest.approx(in_memory.estimate, abs=1e-15)
    direct = paired_claim({j.seed: j for j in jobs if j.choices["arm"] == "a"},
                          {j.seed: j for j in jobs if j.choices["arm"] == "b"}, Mean("correct"), resamples=100,
                          rng=np.random.default_rng(0))  # fmt: skip
    means = [np.mean([r["correct"] for r in j.items]) for j in jobs]
    assert direct["estimate"] == pytest.approx(np.mean(means[0::2]) - np.mean(means[1::2]), abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(("study", "spec", "analysis"), [
    ("toyworld_v4T", "study-T.yaml", "."), ("toyworld_v4T", "study-T-yes-no.yaml", "yes_no_only"),
    ("toyworld_v4S", "study-S.yaml", "."), ("toyworld_v4S", "study-S-yes-no.yaml", "yes_no_only"),
    ("toyworld_v4S", "study-S-multiple-choice.yaml", "multiple_choice_only"),
])
def test_the_committed_v4_verdicts_are_recomputed_from_their_committed_per_item_files(tmp_path, study, spec, analysis):
    results = ROOT / "experiments" / "results" / study
    committed = json.loads((results / analysis / "hypotheses.json").read_text())
    settings = committed["settings"]
    again = run_comparison(results / "jobs", ROOT / "experiments" / "toyworld" / spec, tmp_path,
                           resamples=settings["resamples"], target_half_width=settings["target_half_width"])  # fmt: skip
    assert json.loads(json.dumps(again["hypotheses"], default=str)) == committed["hypotheses"]


@pytest.mark.parametrize(("spec_change", "message"), [
    ({"resample": 500}, "unknown keys ['resample']; a spec has alpha, cells, hypotheses, items, metrics, multiplicity, "
                        "resamples, seed, target_half_width"),
    ({"resamples": "many"}, "resamples must be an integer, got 'many'"),
    ({"alpha": 5}, "alpha must be a number in (0, 1), got 5"),
])
def test_a_misspelled_or_mistyped_setting_is_named(tmp_path, spec_change, message):
    write_sweep(tmp_path / "sweep", cell_jobs(np.random.default_rng(4), effect_a=0.0, seeds=2))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**one_claim(), **spec_change}))
    with pytest.raises(CompareError) as raised:
        run_comparison(tmp_path / "sweep", spec, tmp_path / "out")
    assert str(raised.value) == f"{spec}: {message}"


def test_an_unknown_claim_key_is_named():
    jobs = cell_jobs(np.random.default_rng(1), effect_a=0.0, seeds=2)
    spec = one_claim(kind="> 0")
    spec["hypotheses"]["H"]["claims"][0]["margn"] = 0.1
    with pytest.raises(CompareError, match=r"^hypotheses.H.claims: unknown keys \['margn'\]; a claim has a, b, claim, "
                                           r"margin, metric$"):
        compare(jobs, spec, Settings(resamples=100))
