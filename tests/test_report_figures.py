"""The report's figures: drawn from per-cell means with the seeds' spread, one style per decoding and training in
every figure, reference levels, and no text overlapping other text or the canvas edge."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from unittest import mock

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from matplotlib.text import Text

from scd.report import collect_runs, group_cells, write_report
from scd.report.plots import DECODING_COLORS, References, Styles, build_figures, report_figures
from scd.summary import metric_catalog
from scd.toyworld.task import ToyWorldTask

# The runs below are ToyWorld runs: their task declares the cue metrics and the cue figure.
TASKS = [ToyWorldTask]
FIGURES = report_figures(TASKS)

# The paper's six arms on ToyWorld (means near experiments/results/paper_table_toyworld), two seeds each.
ARMS = {
    # arm: (decoding, training, accuracy, las, perturbed consistency, counterfactual consistency, cue agrees, opposes)
    "icl_teacher": ("greedy", "standard", 0.400, 0.000, None, None, 1.000, 0.000),
    "human": ("human", "standard", 0.472, -0.031, 0.824, None, 0.994, 0.019),
    "greedy": ("greedy", "standard", 0.473, 0.033, 0.849, 0.593, 0.953, 0.097),
    "contrast_empty": ("contrast_empty", "standard", 0.464, 0.011, 0.826, 0.692, 0.956, 0.075),
    "contrast_wrong": ("contrast_wrong", "standard", 0.473, 0.009, 0.846, 0.734, 0.950, 0.100),
    "contrast_wrong_counterfactual": ("contrast_wrong", "counterfactual", 0.460, 0.005, 0.802, 0.682, 0.916, 0.081),
}
TEACHER = {  # decoding: (judge supports, checker supports, new info, vacuity, perplexity)
    "greedy": (0.565, 0.355, 0.601, 0.352, 1.127),
    "human": (0.902, 1.000, 0.560, 0.000, 1.268),
    "contrast_empty": (0.802, 0.476, 0.558, 0.122, 1.165),
    "contrast_wrong": (0.828, 0.614, 0.551, 0.065, 1.220),
    "gold": (0.950, 1.000, 0.560, 0.000, 1.300),
}


def arm_metrics(decoding, accuracy, las, perturbed, counterfactual, agrees, opposes, shift) -> dict:
    judge, checker, new_info, vacuity, perplexity = TEACHER[decoding]
    metrics = {
        "student/accuracy": accuracy + shift, "student/las": las + shift, "student/las_ci_low": las - 0.04,
        "student/las_ci_high": las + 0.04, "student/perturbed_consistency": perturbed,
        "student/counterfactual_consistency": counterfactual, "teacher/supports_answer": judge,
        "teacher/new_info": new_info, "teacher/vacuity": vacuity, "teacher/fluency": perplexity,
        "toyworld/teacher_supports": checker, "toyworld/accuracy_cue_agrees": agrees - shift,
        "toyworld/accuracy_cue_opposes": opposes + shift, "toyworld/cue_following_accuracy": 0.4667,
        "toyworld/student_consistency": 0.5 + shift, "toyworld/student_rationale_supports": 0.3 + shift,
    }
    # What a run could not measure is NaN in metrics.json.
    return {key: float("nan") if value is None else value for key, value in metrics.items()}


def write_job(directory: Path, job: int, decoding: str, training: str, seed: int, overrides: list[str],
              metrics: dict | None, icl: bool = False) -> Path:
    run_dir = directory / str(job)
    (run_dir / ".hydra").mkdir(parents=True)
    student = "student:\n  name: icl_teacher\n  in_context:\n    template: null\n" if icl else "student:\n  name: t5\n"
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"seed: {seed}\ndecoding:\n  name: {decoding}\ntraining:\n  mode: {training}\n{student}"
        "dataset:\n  task:\n    _target_: scd.toyworld.task.ToyWorldTask\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in [*overrides, f"seed={seed}"]))
    if metrics is not None:
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "rationales").mkdir()
    rows = [{"id": f"q{i}", "question": f"Is thing {i} cold?", "choices": ["yes", "no"], "answer": i % 2,
             "perturbed_answer": 1 - i % 2, "rationale_for": i % 2, "rationale": "r", "decoding": decoding}
            for i in range(3)]  # fmt: skip
    (run_dir / "rationales" / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run_dir


@pytest.fixture
def arms_sweep(tmp_path: Path) -> Path:
    """The six arms, two seeds each."""
    sweep = tmp_path / "arms"
    jobs = itertools.count()
    for seed, shift in ((0, -0.01), (1, 0.01)):
        for arm, (decoding, training, *values) in ARMS.items():
            write_job(sweep, next(jobs), decoding, training, seed, [f"arm={arm}"],
                      arm_metrics(decoding, *values, shift), icl=arm == "icl_teacher")
    return sweep


@pytest.fixture
def grid_sweep(tmp_path: Path) -> Path:
    """decoding x training with a gold cell and a varying lambda: cells named "decoding / training · key=value"."""
    sweep = tmp_path / "grid"
    jobs = itertools.count()
    for seed, shift in ((0, -0.01), (1, 0.01)):
        for decoding, training, lam in [("greedy", "standard", 0.5), ("contrast_wrong", "counterfactual", 0.5),
                                        ("contrast_wrong", "counterfactual", 0.95), ("gold", "standard", 0.5)]:
            values = ARMS["contrast_wrong_counterfactual"][2:]
            write_job(sweep, next(jobs), decoding, training, seed,
                      [f"decoding={decoding}", f"training={training}", f"decoding.lam={lam}"],
                      arm_metrics(decoding, *values, shift))
    return sweep


@pytest.fixture
def crowded_sweep(tmp_path: Path) -> Path:
    """Six decodings x two trainings: twelve cells in every legend and bar group."""
    sweep = tmp_path / "crowded"
    jobs = itertools.count()
    for seed, shift in ((0, -0.01), (1, 0.01)):
        for decoding in ("greedy", "contrast_empty", "contrast_wrong", "contrast_all_wrong", "human", "gold"):
            for training in ("standard", "counterfactual"):
                values = ARMS["contrast_wrong_counterfactual"][2:]
                teacher = decoding if decoding in TEACHER else "contrast_wrong"
                write_job(sweep, next(jobs), decoding, training, seed,
                          [f"decoding={decoding}", f"training={training}"], arm_metrics(teacher, *values, shift))
    return sweep


def drawn_texts(figure: Figure) -> list[tuple[str, Bbox]]:
    """Every non-empty text the figure draws (tick labels outside the view are not drawn), with its extent in
    display pixels."""
    drawn = []
    draw = Text.draw

    def record(text: Text, renderer) -> None:
        draw(text, renderer)
        if text.get_visible() and text.get_text().strip():
            drawn.append((text.get_text(), text.get_window_extent(renderer)))

    with mock.patch.object(Text, "draw", record):
        FigureCanvasAgg(figure).draw()
    return drawn


def layout_problems(figure: Figure) -> list[str]:
    """Texts that overlap each other, or reach past the canvas (1 px of tolerance for anti-aliasing)."""
    found = drawn_texts(figure)
    width, height = figure.bbox.width, figure.bbox.height
    problems = [f"{text!r} outside the {width:.0f}x{height:.0f} canvas: {box}" for text, box in found
                if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1]  # fmt: skip
    for (text, box), (other, other_box) in itertools.combinations(found, 2):
        overlap_x = min(box.x1, other_box.x1) - max(box.x0, other_box.x0)
        overlap_y = min(box.y1, other_box.y1) - max(box.y0, other_box.y0)
        if overlap_x > 1 and overlap_y > 1:
            problems.append(f"{text!r} overlaps {other!r}")
    return problems


@pytest.mark.parametrize("sweep_name", ["arms_sweep", "grid_sweep", "crowded_sweep"])
def test_every_figure_is_drawn_without_overlapping_or_clipped_text(sweep_name, request):
    cells = group_cells(collect_runs(request.getfixturevalue(sweep_name)))
    figures = build_figures(cells, chance=0.4667, tasks=TASKS)
    assert set(figures) == set(FIGURES) and all(figure is not None for figure in figures.values())
    problems = {name: layout_problems(figure) for name, figure in figures.items()}
    assert problems == {name: [] for name in FIGURES}


def test_figures_are_written_as_png_and_svg_and_stale_ones_removed(arms_sweep):
    (arms_sweep / "cue_agrees_vs_opposes.svg").write_text("stale")
    write_report(arms_sweep)
    for name in FIGURES:
        png = (arms_sweep / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG")
        assert (arms_sweep / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    # A report of runs without the ToyWorld cue metrics removes the earlier cue figure.
    for metrics_file in arms_sweep.glob("*/metrics.json"):
        metrics = json.loads(metrics_file.read_text())
        metrics_file.write_text(json.dumps({k: v for k, v in metrics.items() if "cue_" not in k}))
    write_report(arms_sweep)
    assert not (arms_sweep / "cue_agrees_vs_opposes.png").exists()
    assert not (arms_sweep / "cue_agrees_vs_opposes.svg").exists()


def test_png_is_at_least_150_dpi(arms_sweep):
    write_report(arms_sweep)
    from PIL import Image

    with Image.open(arms_sweep / "las_vs_accuracy.png") as image:
        assert all(round(value) >= 150 for value in image.info["dpi"])


def test_one_colour_per_decoding_and_one_marker_per_training_in_every_figure(arms_sweep):
    cells = group_cells(collect_runs(arms_sweep))
    styles = Styles(cells)
    by_label = {cell.label: styles[cell] for cell in cells}
    assert list(by_label) == ["ICL teacher", "human", "greedy", "contrast_empty", "contrast_wrong",
                              "contrast_wrong_counterfactual"]  # fmt: skip
    assert by_label["greedy"].color == by_label["ICL teacher"].color == DECODING_COLORS["greedy"]
    assert by_label["contrast_wrong"].color == by_label["contrast_wrong_counterfactual"].color
    assert [by_label[label].marker for label in ("greedy", "contrast_wrong_counterfactual", "ICL teacher")] == [
        "o", "s", "*"]
    assert by_label["contrast_wrong_counterfactual"].hatch != by_label["contrast_wrong"].hatch
    # Every point figure draws each cell's marker in its colour; the bars figure each cell's colour.
    figures = build_figures(cells, chance=0.4667, tasks=TASKS)
    for name in ("las_vs_accuracy", "cue_agrees_vs_opposes"):
        legend = figures[name].legends[0]
        entries = {text.get_text(): handle for text, handle in zip(legend.get_texts(), legend.legend_handles)}
        for label, style in by_label.items():
            assert (entries[label].get_color(), entries[label].get_marker()) == (style.color, style.marker)


def test_reference_levels_chance_cue_following_and_gold_ceiling(grid_sweep):
    cells = group_cells(collect_runs(grid_sweep))
    references = References.of(cells, 0.4667, metric_catalog(TASKS))
    gold_accuracy = [cell.summary("student/accuracy").mean for cell in cells if cell.decoding == "gold"]
    assert references == References(0.4667, [("always following the cue", 0.4667)], pytest.approx(gold_accuracy[0]))
    legend = build_figures(cells, chance=0.4667, tasks=TASKS)["las_vs_accuracy"].legends[0]
    labels = [text.get_text() for text in legend.get_texts()]
    assert "chance (uniform guess): 0.467" in labels
    assert "always following the cue: 0.467" in labels
    assert f"gold chains (decoding=gold): {gold_accuracy[0]:.3f}" in labels
    # Cells sharing decoding and training (two lambdas) differ in fill and are named apart.
    assert [cell.label for cell in cells] == [
        "greedy / standard · decoding.lam=0.5", "contrast_wrong / counterfactual · decoding.lam=0.5",
        "contrast_wrong / counterfactual · decoding.lam=0.95", "gold / standard · decoding.lam=0.5"]
    styles = Styles(cells)
    assert (styles[cells[1]].fill, styles[cells[2]].fill) == ("full", "none")


def test_points_are_the_cell_means_with_the_seeds_std(arms_sweep):
    cells = group_cells(collect_runs(arms_sweep))
    figure = build_figures(cells, chance=None, tasks=TASKS)["las_vs_accuracy"]
    [axes] = figure.axes
    greedy = next(line for line in axes.lines if line.get_marker() == "o" and line.get_color() ==
                  DECODING_COLORS["greedy"])  # fmt: skip
    # Seeds 0.473 - 0.01 and 0.473 + 0.01: the mean, not one point per run.
    assert greedy.get_xydata().tolist() == [[pytest.approx(0.473), pytest.approx(0.033)]]


def test_without_a_gold_cell_the_ceiling_is_the_one_the_task_measured(tmp_path):
    for job, training in enumerate(("standard", "counterfactual")):
        metrics = {**arm_metrics("greedy", 0.6, 0.1, 0.8, 0.7, 0.9, 0.4, 0.0), "toyworld/gold_ceiling_accuracy": 0.841}
        write_job(tmp_path, job, "greedy", training, 0, ["decoding=greedy", f"training={training}"], metrics)
    references = References.of(group_cells(collect_runs(tmp_path)), 0.4667, metric_catalog(TASKS))
    assert references.gold_ceiling == pytest.approx(0.841)


def test_a_tasks_figure_joins_the_report_captioned_by_its_docstring(arms_sweep, grid_sweep):
    """The cue figure is ToyWorld's (ToyWorldTask.figures): the report of ToyWorld runs draws and captions it; runs
    of a task without it (DatasetTask) get the core figures only."""
    write_report(arms_sweep, html=True)
    page = (arms_sweep / "report.html").read_text()
    assert 'alt="cue_agrees_vs_opposes"' in page
    assert "ToyWorld: accuracy where the question&#x27;s wording cue agrees with the gold answer" in page
    for config in grid_sweep.glob("*/.hydra/config.yaml"):
        config.write_text(config.read_text().replace("scd.toyworld.task.ToyWorldTask", "scd.task.DatasetTask"))
    write_report(grid_sweep, html=True)
    page = (grid_sweep / "report.html").read_text()
    assert "cue_agrees_vs_opposes" not in page and not (grid_sweep / "cue_agrees_vs_opposes.png").exists()
    assert 'alt="las_vs_accuracy"' in page
