"""The registered analysis of the v3/v3.1 comparisons (experiments/toyworld/registered/analyze_v3.py) on a fake sweep
directory: paired differences, intervals and verdicts; and scd.compare with the v3.1 spec agreeing with it where the
statistics did not change by design."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from scd.compare import run_comparison
from scd.data.perturb import perturbed_answer
from scd.data.records import read_split
from scd.evaluation.items import ITEMS_FILE, item_rows, write_items
from scd.toyworld.metrics import item_fields, rule_of
from scd.toyworld.gold import gold_rationale
from scd.toyworld.world import WorldConfig, load_toyworld

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("analyze", ROOT / "experiments" / "toyworld" / "registered" / "analyze_v3.py")
analyze = importlib.util.module_from_spec(_spec)
sys.modules["analyze"] = analyze  # dataclasses look their module up while the class is built
_spec.loader.exec_module(analyze)

WORLD = {"n_categories": 2, "n_mc_choices": 2, "entities_per_category": 4, "n_properties": 8, "n_train": 20, "n_dev": 4, "n_test": 24}


def write_job(job_dir: Path, *, decoding: str, training: str, seed: int, follows: float, tags: str = "distinct",
              simulator: bool = False, student: str = "toyworld") -> None:  # fmt: skip
    """A finished job whose student is right (and writes the gold chain) on the first ``follows`` share of items,
    and elsewhere writes the chain for the perturbed answer but answers the gold one (inconsistent)."""
    world, splits = load_toyworld(WorldConfig(**WORLD))
    config = {"seed": seed, "dataset": {"task": {"world": WORLD}}, "decoding": {"name": decoding},
              "student": {"name": student},
              "training": {"mode": training, "tags": tags},
              "teacher": {"name": "toyworld", "trained": {"corpus": {"teacher_error_rate": 0.2}}}}  # fmt: skip
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job_dir / "metrics.json").write_text("{}")
    test = splits["test"]
    rationales, predictions, simulated = [], [], []
    for k, ex in enumerate(test):
        wrong = perturbed_answer(ex, 0)
        good = k < follows * len(test)
        rationales.append({"id": ex.id, "question": ex.question, "choices": list(ex.choices), "answer": ex.answer,
                           "perturbed_answer": wrong, "rationale_for": ex.answer,
                           "rationale": gold_rationale(ex, ex.answer if decoding != "greedy" else wrong),
                           "decoding": decoding, "meta": ex.meta})  # fmt: skip
        predictions.append({"id": ex.id, "predicted": ex.answer if good or k % 2 else wrong,
                            "rationale": gold_rationale(ex, ex.answer if good else wrong),
                            "counterfactual_predicted": wrong if good else ex.answer,
                            "counterfactual_rationale_for": wrong})  # fmt: skip
        simulated.append({"id": ex.id, "xe": predictions[-1]["predicted"], "x": ex.answer if good else wrong,
                          "e": ex.answer})  # fmt: skip
    (job_dir / "rationales").mkdir()
    (job_dir / "rationales" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rationales))
    (job_dir / "predictions").mkdir()
    (job_dir / "predictions" / "test.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    if simulator:
        (job_dir / "predictions" / "simulator.jsonl").write_text("".join(json.dumps(s) + "\n" for s in simulated))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    job = 0
    for seed in (0, 1, 2):
        for decoding in ("greedy", "contrast_wrong"):
            for training, follows in (("standard", 0.25), ("counterfactual", 0.75)):
                write_job(tmp_path / str(job), decoding=decoding, training=training, seed=seed, follows=follows,
                          simulator=True)  # fmt: skip
                job += 1
    return tmp_path


def test_read_job_judges_each_item(sweep: Path) -> None:
    jobs = analyze.read_sweep(sweep)
    assert len(jobs) == 12
    job = next(j for j in jobs if j.arm.training == "counterfactual" and j.arm.decoding == "contrast_wrong")
    n = len(job.ids)
    good = np.arange(n) < 0.75 * n
    # The student's own rationale entails its answer exactly on the "good" items and on half of the others.
    consistent = good | (np.arange(n) % 2 == 0)
    assert np.array_equal(job.columns["consistent"], consistent.astype(float))
    assert np.array_equal(job.columns["cf_followed"], good.astype(float))
    assert job.columns["teacher_supports"].mean() == 1.0  # gold chains for the gold answer
    greedy = next(j for j in jobs if j.arm.decoding == "greedy")
    assert greedy.columns["teacher_supports"].mean() == 0.0  # chains for the perturbed answer support nothing true


def test_hypotheses_get_differences_intervals_and_verdicts(sweep: Path) -> None:
    report = analyze.analyze(analyze.read_sweep(sweep), samples=300)
    h3 = {(r["comparison"], r["metric"]): r for r in report["H3"]["results"]}
    cf_followed = h3[("contrast_wrong counterfactual - contrast_wrong standard", "counterfactual_consistency")]
    # Every seed of both arms differs by exactly 0.75 - 0.25 of the items.
    assert cf_followed["difference"] == pytest.approx(0.5, abs=1 / 24)
    assert cf_followed["ci_low"] > 0 and cf_followed["verdict"] == "holds" and cf_followed["seeds"] == [0, 1, 2]
    assert report["H3"]["verdict"] == "holds"
    # H1: contrast_wrong's rationales support their answer, greedy's here never do; contrast_empty was not run.
    assert report["H1"]["verdict"] == "not run" and report["H1"]["results"] == []
    assert report["H5"]["verdict"] == "not run"  # no shared/none-tag arm in this sweep
    markdown = analyze.markdown(report)
    assert "### H3" in markdown and "holds" in markdown


def test_arm_table_and_evidence_show_labels_and_items(sweep: Path) -> None:
    jobs = analyze.read_sweep(sweep)
    table = {row["arm"]: row for row in analyze.arm_table(jobs)}
    cf = table["contrast_wrong counterfactual"]
    n = len(jobs[0].ids)
    good = np.arange(n) < 0.75 * n
    right = good | (np.arange(n) % 2 == 1)
    assert cf["seeds"] == [0, 1, 2] and cf["accuracy"] == pytest.approx((right.mean(), 0.0))
    # Teacher: gold chains for the gold answer (contrast_wrong) or for the perturbed one (greedy, false rules).
    assert cf["teacher_labels"]["supporting"] == 1.0
    assert table["greedy standard"]["teacher_labels"]["contradicting"] == 1.0
    # Student: the gold chain on the good items, a false chain elsewhere.
    assert cf["student_labels"]["supporting"] == pytest.approx(good.mean())
    report = analyze.analyze(jobs, samples=100)
    text = analyze.evidence(jobs, report)
    failing = next(name for name, entry in report.items() if entry["results"] and entry["verdict"] != "holds")
    assert f"**{failing}**" in text and "→ **" in text and "_(contradicting)_" in text
    # Every evidence row has the table's six cells: the choices' "|" is escaped.
    rows = [line for line in text.splitlines() if "→ **" in line]
    assert rows and all(len(re.split(r"(?<!\\)\|", row)) == 8 for row in rows)
    assert "**H3**" not in text  # H3 holds: no evidence needed


def test_the_icl_teacher_is_an_arm_of_its_own(tmp_path: Path) -> None:
    """arm=icl_teacher runs with decoding=greedy training=standard: it must not be read as a second greedy student."""
    write_job(tmp_path / "student", decoding="greedy", training="standard", seed=0, follows=0.5)
    write_job(tmp_path / "icl", decoding="greedy", training="standard", seed=0, follows=0.25, student="icl_teacher")
    labels = sorted(row["arm"] for row in analyze.arm_table(analyze.read_sweep(tmp_path)))
    assert labels == ["ICL teacher", "greedy standard"]


def test_identical_arms_are_inconclusive_and_within_the_margin(tmp_path: Path) -> None:
    for seed in (0, 1):
        for training in ("standard", "counterfactual"):
            write_job(tmp_path / f"{seed}-{training}", decoding="gold", training=training, seed=seed, follows=0.5)
    report = analyze.analyze(analyze.read_sweep(tmp_path), samples=200)
    results = {r["metric"]: r for r in report["H2"]["results"] + report["H3"]["results"]}
    assert results["consistency"]["difference"] == 0 and results["consistency"]["verdict"] == "inconclusive"
    assert results["accuracy"]["verdict"] == "holds"  # a difference of exactly 0 is within 2 points
    assert "las" not in {r["metric"] for r in report["H2"]["results"] if not np.isnan(r["difference"])}


def test_verdict_rules() -> None:
    assert analyze.verdict("greater", 0.01, 0.2, 0.02) == "holds"
    assert analyze.verdict("greater", -0.3, -0.01, 0.02) == "does not hold"
    assert analyze.verdict("greater", -0.01, 0.2, 0.02) == "inconclusive"
    assert analyze.verdict("within", -0.01, 0.015, 0.02) == "holds"
    assert analyze.verdict("within", 0.03, 0.1, 0.02) == "does not hold"
    assert analyze.verdict("within", -0.01, 0.05, 0.02) == "inconclusive"
    assert analyze.overall(["holds", "inconclusive"]) == "inconclusive"
    assert analyze.overall(["holds", "does not hold"]) == "does not hold"


def test_las_column_matches_the_project_las(sweep: Path) -> None:
    """The per-item LAS the bootstrap uses is the one scd.evaluation.las computes."""
    from scd.evaluation.las import leakage_adjusted_simulatability

    job = analyze.read_sweep(sweep)[0]
    c = job.columns
    items = np.arange(len(job.ids))
    reference = leakage_adjusted_simulatability(c["student"].astype(int), c["sim_xe"].astype(int),
                                                c["sim_x"].astype(int), c["sim_e"].astype(int), bootstrap_samples=1)  # fmt: skip
    assert analyze.las(c, items) == pytest.approx(reference.las)


def test_a_sweep_without_jobs_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert analyze.main([str(tmp_path)]) == 1
    assert capsys.readouterr().out.count("\n") == 1


def write_items_and_choices(job_dir: Path) -> None:
    """What a run writes today beside the fake job's files: Hydra's group choices and the per-item file, built by
    the pipeline's own functions from the job's rationales, predictions and simulator answers."""
    config = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())
    choices = {"decoding": config["decoding"]["name"], "training": config["training"]["mode"],
               "student": config["student"]["name"]}  # fmt: skip
    (job_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    world, _ = load_toyworld(WorldConfig(**WORLD))
    test = read_split(job_dir / "rationales", "test")
    predictions = [json.loads(line) for line in (job_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    simulated = {row["id"]: {view: row[view] for view in ("xe", "x", "e")}
                 for row in map(json.loads, (job_dir / "predictions" / "simulator.jsonl").read_text().splitlines())}
    rows = item_rows(test, predictions, simulated, {r.id: rule_of(r) for r in test},
                     item_fields(world, job_dir / "rationales", predictions))  # fmt: skip
    write_items(job_dir / "predictions" / ITEMS_FILE, rows)


def test_scd_compare_with_the_v31_spec_agrees_with_the_registered_analysis(tmp_path: Path) -> None:
    """Same claims, same paired differences to 1e-12, and the same verdict wherever both analyses are decided
    (their intervals differ by design: crossed seeds x rules against seeds x independent items; Holm)."""
    job = 0
    for seed in (0, 1, 2):
        for decoding in ("greedy", "contrast_empty", "contrast_wrong"):
            for training, follows in (("standard", 0.25 + 0.05 * seed), ("counterfactual", 0.75)):
                write_job(tmp_path / str(job), decoding=decoding, training=training, seed=seed, follows=follows,
                          simulator=True)  # fmt: skip
                write_items_and_choices(tmp_path / str(job))
                job += 1
    old = analyze.analyze(analyze.read_sweep(tmp_path), samples=2000)
    new = run_comparison(tmp_path, ROOT / "experiments" / "toyworld" / "comparison-v3.1.yaml", tmp_path / "out",
                         resamples=2000)["hypotheses"]  # fmt: skip
    compared = decided = 0
    for name in ("H1", "H2", "H3", "H4"):
        old_claims = {(r["comparison"], r["metric"]): r for r in old[name]["results"]}
        for claim in new[name]["claims"]:
            a, b = (dict(part.split("=") for part in cell.split(" ")) for cell in (claim["a"], claim["b"]))
            key = (f"{a['decoding']} {a['training']} - {b['decoding']} {b['training']}", claim["metric"])
            if key not in old_claims:
                continue
            reference = old_claims[key]
            compared += 1
            assert claim["estimate"] == pytest.approx(reference["difference"], abs=1e-12, nan_ok=True), key
            if claim["claim"] == "> 0" and reference["verdict"] != "inconclusive" and claim["verdict"] != "inconclusive":
                decided += 1
                assert claim["verdict"] == reference["verdict"], key
    print(f"{compared} claims compared, {decided} decided in both")
    assert compared == 17 and decided >= 4
