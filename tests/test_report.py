import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scd.report import collect_runs, group_cells, main, write_report
from tests.helpers import make_run, metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "multirun" / "2024-01-01" / "12-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    make_run(sweep, 0, "greedy", "standard", 0, metrics(0.70, 0.10, 0.05, 0.15, 0.5, 20.0), {"status": "completed"})
    make_run(sweep, 1, "greedy", "standard", 1, metrics(0.74, 0.14, 0.08, 0.20, 0.5, 20.0))
    make_run(sweep, 2, "contrast_wrong", "counterfactual", 0, None,
             {"status": "failed", "error": "RuntimeError: CUDA out of memory"})
    return sweep


def test_runs_are_read_with_their_cell_seed_and_status(sweep):
    runs = collect_runs(sweep)
    assert [(r.decoding, r.training, r.seed, r.status) for r in runs] == [
        ("greedy", "standard", 0, "completed"),
        ("greedy", "standard", 1, "completed"),
        ("contrast_wrong", "counterfactual", 0, "failed"),
    ]
    assert runs[2].error == "RuntimeError: CUDA out of memory"


def test_markdown_table_has_mean_std_interval_and_failed_marker(sweep):
    markdown = write_report(sweep)
    assert markdown == (sweep / "table.md").read_text()
    lines = markdown.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "decoding", "training", "seeds", "student/accuracy", "student/las", "student/perturbed_consistency",
        "student/counterfactual_consistency", "teacher/fluency", "teacher/new_info", "toyworld/rationale_exact",
    ]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in lines[2:4]}
    # std of (0.70, 0.74) with ddof=1 is 0.0283; LAS interval is the mean of the runs' bounds
    assert rows["greedy"] == [
        "greedy", "standard", "2", "0.720 ± 0.028", "0.120 ± 0.028 [0.065, 0.175]", "0.800 ± 0.000",
        "0.600 ± 0.000", "20.000 ± 0.000", "0.500 ± 0.000", "0.900 ± 0.000",
    ]
    assert rows["contrast_wrong"] == ["contrast_wrong", "counterfactual", "0 (+1 failed)"] + ["failed"] * 7
    assert "job `2` (contrast_wrong / counterfactual, seed 0): RuntimeError: CUDA out of memory" in markdown


def test_csv_holds_numbers_and_status(sweep):
    write_report(sweep)
    with (sweep / "table.csv").open() as handle:
        rows = {row["decoding"]: row for row in csv.DictReader(handle)}
    greedy, failed = rows["greedy"], rows["contrast_wrong"]
    assert greedy["cell"] == "greedy / standard"
    assert greedy["status"] == "completed" and greedy["n_seeds"] == "2" and greedy["n_failed"] == "0"
    assert float(greedy["student/accuracy/mean"]) == pytest.approx(0.72)
    assert float(greedy["student/accuracy/std"]) == pytest.approx(0.0282843, rel=1e-5)
    assert float(greedy["student/las_ci_low/mean"]) == pytest.approx(0.065)
    assert failed["status"] == "failed" and failed["n_failed"] == "1"
    assert failed["student/accuracy/mean"] == "" and failed["student/accuracy/n"] == "0"


def test_figures_are_written(sweep):
    write_report(sweep)
    for name in ("las_vs_accuracy", "teacher_quality", "student_faithfulness"):
        data = (sweep / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000
        assert (sweep / f"{name}.svg").is_file()
    assert not (sweep / "cue_agrees_vs_opposes.png").exists()  # no ToyWorld cue metrics in this sweep


def test_a_run_without_metrics_or_still_running_is_failed(tmp_path):
    make_run(tmp_path, 0, "greedy", "standard", 0)
    make_run(tmp_path, 1, "greedy", "standard", 1, metrics(0.7, 0.1, 0.0, 0.2, 0.5, 20.0), {"status": "running"})
    make_run(tmp_path, 2, "greedy", "standard", 2, metrics(0.7, 0.1, 0.0, 0.2, 0.5, 20.0))
    (tmp_path / "2" / "metrics.json").write_text('{"student/acc')  # killed while writing
    runs = collect_runs(tmp_path)
    assert [r.status for r in runs] == ["failed"] * 3
    assert runs[0].error == "no metrics.json"
    assert "still says running" in runs[1].error
    assert runs[2].error.startswith("unreadable metrics.json")
    markdown = write_report(tmp_path)
    assert "| greedy | standard | 0 (+3 failed) | failed |" in markdown


def test_a_config_without_the_decoding_name_marks_the_job_naming_file_and_field(tmp_path):
    run_dir = make_run(tmp_path, 0, "greedy", "standard", 0)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 0\ntraining:\n  mode: standard\n")
    [run] = collect_runs(tmp_path)
    assert run.status == "failed"
    assert run.error == (f"{run_dir}/.hydra/config.yaml: field 'decoding.name' is missing; the report needs it to "
                         "place the run")


def test_one_unparsable_config_marks_its_job_and_the_others_are_tabulated(sweep):
    (sweep / "1" / ".hydra" / "config.yaml").write_text("seed: 1\ndecoding: {name: greedy\n")  # cut short
    runs = collect_runs(sweep)
    assert [run.status for run in runs] == ["completed", "failed", "failed"]
    assert runs[1].error.startswith(f"{sweep}/1/.hydra/config.yaml: cannot parse: ")
    assert "line 2" in runs[1].error
    markdown = write_report(sweep)
    assert "| greedy | standard | 1 | 0.700 |" in markdown
    assert "| – | – | 0 (+1 failed) | failed |" in markdown
    assert f"- job `1` (– / –, seed None): {sweep}/1/.hydra/config.yaml: cannot parse" in markdown


def test_runs_group_by_every_override_but_the_seed(tmp_path):
    """A sweep over decoding.lam: each lam is a cell of its own, its seeds summarized; the varying key is a column."""
    for job, (lam, seed, accuracy) in enumerate([(0.5, 0, 0.6), (0.5, 1, 0.8), (0.9, 0, 0.3), (0.9, 1, 0.5)]):
        run_dir = make_run(tmp_path, job, "contrast_wrong", "standard", seed,
                           metrics(accuracy, 0.1, 0.0, 0.2, 0.5, 20.0))
        (run_dir / ".hydra" / "overrides.yaml").write_text(
            f"- experiment=smoke\n- decoding=contrast_wrong\n- decoding.lam={lam}\n- seed={seed}\n"
        )
    runs = collect_runs(tmp_path)
    assert runs[2].overrides == {"experiment": "smoke", "decoding": "contrast_wrong", "decoding.lam": "0.9",
                                 "seed": "0"}
    lines = write_report(tmp_path).splitlines()
    assert lines[0].startswith("| decoding | training | decoding.lam | seeds | student/accuracy |")
    assert lines[2].startswith("| contrast_wrong | standard | 0.5 | 2 | 0.700 ± 0.141 |")
    assert lines[3].startswith("| contrast_wrong | standard | 0.9 | 2 | 0.400 ± 0.141 |")
    assert len([line for line in lines if line.startswith("| contrast_wrong")]) == 2
    with (tmp_path / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["decoding.lam"], row["n_seeds"], row["student/accuracy/mean"]) for row in rows] == [
        ("0.5", "2", "0.7"), ("0.9", "2", "0.4")]


def test_an_override_set_in_some_runs_only_shows_the_default_elsewhere(tmp_path):
    make_run(tmp_path, 0, "greedy", "standard", 0, metrics(0.7, 0.1, 0.0, 0.2, 0.5, 20.0))
    run_dir = make_run(tmp_path, 1, "greedy", "standard", 0, metrics(0.5, 0.1, 0.0, 0.2, 0.5, 20.0))
    (run_dir / ".hydra" / "overrides.yaml").write_text("- training.alpha=0.9\n- seed=0\n")
    lines = write_report(tmp_path).splitlines()
    assert lines[0].startswith("| decoding | training | training.alpha | seeds |")
    assert lines[2].startswith("| greedy | standard | (default) | 1 | 0.700 |")
    assert lines[3].startswith("| greedy | standard | 0.9 | 1 | 0.500 |")
    # Names in figures and pages: a setting the cell leaves at its default is not spelled out.
    assert [cell.label for cell in group_cells(collect_runs(tmp_path))] == [
        "greedy / standard", "greedy / standard · training.alpha=0.9"]


def test_a_bad_overrides_file_marks_its_job(tmp_path):
    run_dir = make_run(tmp_path, 0, "greedy", "standard", 0, metrics(0.7, 0.1, 0.0, 0.2, 0.5, 20.0))
    (run_dir / ".hydra" / "overrides.yaml").write_text("decoding: greedy\n")
    [run] = collect_runs(tmp_path)
    assert run.status == "failed"
    assert run.error == f"{run_dir}/.hydra/overrides.yaml: expected a list of key=value overrides"


def test_cli_errors_are_one_line(tmp_path):
    with pytest.raises(SystemExit) as usage:
        main([])
    assert usage.value.code == 2  # argparse's exit status for a bad command line
    with pytest.raises(SystemExit, match="is not a directory"):
        main([str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="no runs"):
        main([str(tmp_path)])


def test_cli_prints_the_table(sweep):
    result = subprocess.run(
        [sys.executable, "-m", "scd.report", str(sweep)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "| greedy | standard | 2 | 0.720 ± 0.028 |" in result.stdout
    failed = subprocess.run(
        [sys.executable, "-m", "scd.report", str(sweep / "nope")], cwd=ROOT, capture_output=True, text=True
    )
    assert failed.returncode != 0 and failed.stderr.strip().endswith("is not a directory")


def test_jobs_and_cells_keep_sweep_order(tmp_path):
    for job, decoding in [(10, "greedy"), (2, "contrast_wrong"), (1, "greedy")]:
        make_run(tmp_path, job, decoding, "standard", job, metrics(0.7, 0.1, 0.0, 0.2, 0.5, 20.0))
    assert [run.path.name for run in collect_runs(tmp_path)] == ["1", "2", "10"]
    rows = [line.split("|")[1].strip() for line in write_report(tmp_path).splitlines()[2:4]]
    assert rows == ["greedy", "contrast_wrong"]


def test_wandb_report_logs_table_and_side_by_side_rationales(sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    record = {"id": "q1", "question": "Is ice cold?", "choices": ["yes", "no"], "answer": 0, "perturbed_answer": 1,
              "rationale_for": 0, "rationale": "Ice is frozen water.", "decoding": "greedy"}
    (sweep / "0" / "rationales").mkdir()
    (sweep / "0" / "rationales" / "test.jsonl").write_text(json.dumps(record) + "\n")
    main([str(sweep), "--wandb"])
    media = sweep / "wandb"
    [table] = media.glob("offline-run-*/files/media/table/report/table_*.table.json")
    [samples] = media.glob("offline-run-*/files/media/table/teacher/rationale_samples_*.table.json")
    assert ["greedy / standard", "greedy", "standard"] == json.loads(table.read_text())["data"][0][:3]
    assert "Ice is frozen water." in samples.read_text()


def test_a_metric_not_measured_reads_n_a_and_is_empty_in_the_csv(tmp_path):
    """NaN in metrics.json (a share of no items) and an absent key both mean not measured: never 0.000."""
    values = metrics(0.0, 0.1, 0.0, 0.2, 0.5, 20.0)
    values["student/perturbed_consistency"] = float("nan")
    del values["student/counterfactual_consistency"]
    make_run(tmp_path, 0, "greedy", "standard", 0, values)
    markdown = write_report(tmp_path)
    assert "| greedy | standard | 1 | 0.000 | 0.100 [0.000, 0.200] | n/a | n/a | 20.000 |" in markdown
    assert "n/a: not measured." in markdown
    with (tmp_path / "table.csv").open() as handle:
        [row] = csv.DictReader(handle)
    assert row["student/perturbed_consistency/mean"] == "" and row["student/perturbed_consistency/n"] == "0"


def test_copies_of_one_sweep_are_kept_apart_with_a_warning_naming_them(tmp_path, capsys):
    """Two copies of a two-seed sweep in one directory: each copy is a cell of two distinct seeds, not four."""
    for copy, accuracy in (("copyA", 0.6), ("copyB", 0.8)):
        for seed in (0, 1):
            make_run(tmp_path / copy, seed, "greedy", "standard", seed,
                     metrics(accuracy, 0.1, 0.0, 0.2, 0.5, 20.0))  # fmt: skip
    main([str(tmp_path)])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("| decoding | training | copy | seeds | student/accuracy |")
    assert lines[2].startswith("| greedy | standard | copyA | 2 | 0.600 ± 0.000 |")
    assert lines[3].startswith("| greedy | standard | copyB | 2 | 0.800 ± 0.000 |")
    warning = (f"runs {tmp_path}/copyA/0, {tmp_path}/copyB/0 share every override and seed 0: kept apart as copies "
               "(copyA, copyB), not pooled as seeds")
    assert f"- {warning}" in out
    assert f"scd: warning: {warning}" in err.splitlines()
    cells = group_cells(collect_runs(tmp_path))
    assert [(cell.label, cell.n_seeds) for cell in cells] == [
        ("greedy / standard · copy=copyA", 2), ("greedy / standard · copy=copyB", 2)]


def test_runs_of_one_directory_that_repeat_a_seed_are_kept_apart_one_by_one(tmp_path):
    """Single runs side by side (outputs/<date>/<time>) with the same overrides and seed: one cell each."""
    for time, accuracy in (("12-00-00", 0.6), ("13-00-00", 0.8)):
        run_dir = make_run(tmp_path / "2024-01-01", 0, "greedy", "standard", 0, metrics(accuracy, 0.1, 0.0, 0.2, 0.5,
                                                                                      20.0))
        run_dir.rename(tmp_path / "2024-01-01" / time)
    rows = write_report(tmp_path).splitlines()[2:4]
    assert rows[0].startswith("| greedy | standard | 12-00-00 | 1 | 0.600 |")
    assert rows[1].startswith("| greedy | standard | 13-00-00 | 1 | 0.800 |")


def test_the_seed_count_is_of_distinct_seeds(tmp_path):
    make_run(tmp_path, 0, "greedy", "standard", 0, metrics(0.6, 0.1, 0.0, 0.2, 0.5, 20.0))
    make_run(tmp_path, 1, "greedy", "standard", 1, metrics(0.8, 0.1, 0.0, 0.2, 0.5, 20.0))
    make_run(tmp_path, 2, "greedy", "standard", 2, None, {"status": "failed", "error": "killed"})
    [cell] = group_cells(collect_runs(tmp_path))
    assert cell.n_seeds == 2
    assert "| greedy | standard | 2 (+1 failed) | 0.700 ± 0.141 |" in write_report(tmp_path)
