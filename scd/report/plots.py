"""The report's figures, drawn from the per-cell means with the seeds' sample std as error bars.

Every figure gives a decoding the same colour and a training (or the ICL teacher) the same marker and bar hatch
(``Styles``, built once per report); cells that share both differ in fill. Cells are named in a legend beside the
axes, never on the points, and reference levels are lines or points with a legend entry of their own. Each figure is
written as ``<name>.png`` (200 dpi) and ``<name>.svg``.

- ``las_vs_accuracy``: a point per cell; x: accuracy ± std over seeds, y: LAS with its bootstrap 95% interval (the
  mean of the seeds' bounds); lines at chance, at always following the cue and at the gold-chain student's accuracy.
- ``teacher_quality``: a bar per rationale set (the decoding and the settings the teacher sees) for each measure of
  its rationales, and its perplexity beside them.
- ``student_faithfulness``: a bar per cell for each consistency measure of the student; a cross where not measured.

A task adds figures of its own (``Task.figures``: dotted paths of functions like these, each taking the cells and the
report's ``FigureContext``); which metrics a figure draws, and their names, come from the declarations
(``scd.metrics``), never from a list of a task's keys here.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from hydra.utils import get_method

from scd.metrics import (ACCURACY_CEILING, ACCURACY_FLOOR, CONSISTENCY, FAITHFULNESS, JUDGE_SUPPORTS, PERPLEXITY,
                         RATIONALE_SHARE, Catalog)
from scd.report.collect import ARM_KEY, COPY_KEY, ICL_TEACHER, Cell, Summary
from scd.summary import ACCURACY, LAS_INTERVAL, metric_catalog
from scd.task import Task

DPI = 200
FONT_SIZE = 9
# Colour-blind-safe (Okabe & Ito), fixed per decoding so that every report colours a decoding alike.
DECODING_COLORS = {
    "greedy": "#0072B2",
    "contrast_empty": "#E69F00",
    "contrast_wrong": "#D55E00",
    "contrast_all_wrong": "#CC79A7",
    "human": "#009E73",
    "gold": "#8C6D1F",
}
OTHER_COLORS = ("#56B4E9", "#7F7F7F", "#BCBD22", "#17BECF", "#9467BD", "#8C564B")
TRAINING_MARKERS = {"standard": "o", "counterfactual": "s", ICL_TEACHER: "*"}
OTHER_MARKERS = ("^", "D", "v", "P", "X")
TRAINING_HATCHES = {"standard": "", "counterfactual": "///", ICL_TEACHER: ".."}
OTHER_HATCHES = ("xx", "\\\\\\", "++", "--")
# Cells with the same decoding and training: filled, hollow, half-filled markers; bars fading.
FILLS = ("full", "none", "left", "bottom")
BAR_ALPHAS = (1.0, 0.55, 0.3, 0.15)
REFERENCE_COLOR = "#333333"

LAS = "student/las"
# The judge prefers the answer a rationale was written for over the other one: a coin flip scores 0.5.
JUDGE_CHANCE = 0.5
GOLD_DECODING = "gold"
# Settings that do not change what the teacher writes: cells differing only in these share a rationale set.
STUDENT_SIDE_PREFIXES = (ARM_KEY, COPY_KEY, "training", "student", "simulator")


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    hatch: str
    fill: str
    alpha: float


class Styles:
    """Each cell's colour (by decoding), marker and hatch (by training, or ICL teacher) and fill (its rank among
    cells sharing both)."""

    def __init__(self, cells: Sequence[Cell]) -> None:
        decodings = list(dict.fromkeys(cell.decoding for cell in cells))
        kinds = list(dict.fromkeys(cell.training_kind for cell in cells))
        others = iter(OTHER_COLORS * (1 + len(decodings) // len(OTHER_COLORS)))
        self.colors = {d: DECODING_COLORS.get(d) or next(others) for d in decodings}
        unknown = [kind for kind in kinds if kind not in TRAINING_MARKERS]
        self.markers = {**TRAINING_MARKERS, **dict(zip(unknown, OTHER_MARKERS * (1 + len(unknown))))}
        self.hatches = {**TRAINING_HATCHES, **dict(zip(unknown, OTHER_HATCHES * (1 + len(unknown))))}
        self.cells: dict[int, Style] = {}
        seen: dict[tuple[str, str], int] = {}
        for cell in cells:
            key = (cell.decoding, cell.training_kind)
            rank = seen.get(key, 0) % len(FILLS)
            seen[key] = seen.get(key, 0) + 1
            self.cells[id(cell)] = Style(self.colors[cell.decoding], self.markers[cell.training_kind],
                                         self.hatches[cell.training_kind], FILLS[rank], BAR_ALPHAS[rank])  # fmt: skip

    def __getitem__(self, cell: Cell) -> Style:
        return self.cells[id(cell)]


@dataclass
class References:
    """Levels a reader compares accuracy with: a uniform guess, the floors the tasks declare (e.g. always following
    a shortcut; name, value) and the accuracy of a student distilled from gold rationales (``decoding=gold``)."""

    chance: float | None = None
    floors: list[tuple[str, float]] = field(default_factory=list)
    gold_ceiling: float | None = None

    @classmethod
    def of(cls, cells: Sequence[Cell], chance: float | None, catalog: Catalog) -> References:
        floors = []
        for key in catalog.with_role(ACCURACY_FLOOR):
            values = [s.mean for s in (cell.summary(key) for cell in cells) if s is not None]
            if values:
                floors.append((catalog.name(key), float(np.mean(values))))
        gold = [s.mean for cell in cells if cell.decoding == GOLD_DECODING
                for s in [cell.summary(ACCURACY)] if s is not None]  # fmt: skip
        if not gold:
            # Without a gold cell in the sweep: the ceiling a task measured beforehand, where it reports one.
            gold = [s.mean for key in catalog.with_role(ACCURACY_CEILING)
                    for s in (cell.summary(key) for cell in cells) if s is not None]  # fmt: skip
        return cls(chance, floors, max(gold) if gold else None)


@dataclass
class FigureContext:
    """What every figure shares: the cells' styles, the reference levels and the metric declarations."""

    styles: Styles
    references: References
    catalog: Catalog


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    figure.get_layout_engine().set(w_pad=0.06, h_pad=0.06)
    return figure


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))


# Height of one legend line and the margin around the legend, in inches (9 pt text, matplotlib's spacing).
LEGEND_LINE_IN, LEGEND_MARGIN_IN = 0.25, 0.5


def add_legend(figure: Figure, handles: list, title: str) -> None:
    """The legend right of the axes; the figure grows taller where the legend would not fit."""
    figure.legend(handles=handles, loc="outside right upper", title=title, fontsize=FONT_SIZE,
                  title_fontsize=FONT_SIZE, frameon=False, alignment="left")  # fmt: skip
    lines = 1 + sum(handle.get_label().count("\n") + 1 for handle in handles)
    width, height = figure.get_size_inches()
    figure.set_size_inches(width, max(height, lines * LEGEND_LINE_IN + LEGEND_MARGIN_IN))


def marker_handle(cell: Cell, style: Style) -> Line2D:
    return Line2D([], [], color=style.color, marker=style.marker, fillstyle=style.fill, linestyle="",
                  markersize=9 if style.marker == "*" else 7, label=_wrap(cell.label, 34))  # fmt: skip


def _bar_handle(label: str, style: Style) -> Patch:
    return Patch(facecolor=style.color, alpha=style.alpha, hatch=style.hatch, edgecolor="white", label=label)


def reference_handle(label: str, linestyle: str, color: str = REFERENCE_COLOR) -> Line2D:
    return Line2D([], [], color=color, linestyle=linestyle, linewidth=1.2, label=_wrap(label, 34))


def _accuracy_references(axes: Axes, references: References, vertical: bool) -> list[Line2D]:
    """Lines at chance, cue-following and gold accuracy across the axes; their legend handles."""
    draw = axes.axvline if vertical else axes.axhline
    handles = []
    levels = [(references.chance, "chance (uniform guess)", ":", REFERENCE_COLOR),
              *((value, name, "--", REFERENCE_COLOR) for name, value in references.floors),
              (references.gold_ceiling, "gold chains (decoding=gold)", "-.", DECODING_COLORS[GOLD_DECODING])]
    for value, label, linestyle, color in levels:
        if value is not None:
            draw(value, color=color, linestyle=linestyle, linewidth=1.2, zorder=1)
            handles.append(reference_handle(f"{label}: {value:.3f}", linestyle, color))
    return handles


def paired(cells: Sequence[Cell], x: str, y: str) -> list[tuple[Cell, Summary, Summary]]:
    """(cell, summary of ``x``, summary of ``y``) for the cells that measured both: one point each."""
    points = [(cell, cell.summary(x), cell.summary(y)) for cell in cells]
    return [(cell, a, b) for cell, a, b in points if a is not None and b is not None]


def draw_point(axes: Axes, style: Style, x: float, y: float, xerr: float | list, yerr: float | list) -> None:
    """One cell's point in its colour and marker, with its error bars."""
    axes.errorbar(x, y, xerr=xerr, yerr=yerr, color=style.color, marker=style.marker, fillstyle=style.fill,
                  markersize=9 if style.marker == "*" else 7, capsize=3, linewidth=1, zorder=3)


def finish_scatter(figure: Figure, axes: Axes, handles: list, xlabel: str, ylabel: str, title: str) -> Figure:
    """Label a point figure's axes, title it and add its legend of cells and references."""
    axes.set_xlabel(xlabel, fontsize=FONT_SIZE)
    axes.set_ylabel(ylabel, fontsize=FONT_SIZE)
    axes.tick_params(labelsize=FONT_SIZE)
    axes.set_title(title, fontsize=FONT_SIZE + 1)
    add_legend(figure, handles, "cells and references")
    return figure


def las_vs_accuracy(cells: Sequence[Cell], context: FigureContext) -> Figure | None:
    """LAS against accuracy, a point per cell: accuracy ± the sample std over seeds, LAS with its bootstrap 95%
    interval (the mean of the seeds' bounds)."""
    styles, references = context.styles, context.references
    points = paired(cells, ACCURACY, LAS)
    if not points:
        return None
    figure = new_figure(7.5, 4.2)
    axes = figure.add_subplot()
    handles: list = []
    for cell, accuracy, las in points:
        style = styles[cell]
        low, high = (cell.summary(bound) for bound in LAS_INTERVAL)
        if low is not None and high is not None:
            las_error = [[max(las.mean - low.mean, 0.0)], [max(high.mean - las.mean, 0.0)]]
        else:
            las_error = [[las.spread], [las.spread]]
        draw_point(axes, style, accuracy.mean, las.mean, accuracy.spread, las_error)
        handles.append(marker_handle(cell, style))
    axes.axhline(0.0, color="#999999", linewidth=0.8, zorder=0)
    handles += _accuracy_references(axes, references, vertical=True)
    handles.append(reference_handle("LAS 0: the rationale does not help a simulator", "-", "#999999"))
    return finish_scatter(figure, axes, handles, "student accuracy (mean ± std over seeds)",
                          "LAS (mean, bootstrap 95% interval)", "Simulatability against accuracy")


def _grouped_bars(axes: Axes, groups: Sequence[str], series: Sequence[tuple[Style, list[tuple[float, float] | None]]],
                  catalog: Catalog) -> tuple[np.ndarray, float]:
    """Bars per group, one per series ((mean, std) or None where not measured: a cross at 0); the group centres and
    one bar's width."""
    centres = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    for index, (style, values) in enumerate(series):
        offsets = centres - 0.4 + width * (index + 0.5)
        for x, value in zip(offsets, values):
            if value is None:
                axes.plot(x, 0.0, marker="x", color=style.color, markersize=6, linestyle="", zorder=3)
                continue
            mean, spread = value
            axes.bar(x, mean, width * 0.92, yerr=spread or None, color=style.color, alpha=style.alpha,
                     hatch=style.hatch, edgecolor="white", linewidth=0, capsize=2,
                     error_kw={"elinewidth": 0.8, "ecolor": REFERENCE_COLOR})  # fmt: skip
    axes.set_xticks(centres, [_wrap(catalog.name(group), 14) for group in groups], fontsize=FONT_SIZE)
    axes.tick_params(axis="y", labelsize=FONT_SIZE)
    axes.set_xlim(-0.5, len(groups) - 0.5)
    return centres, width


def _values(cells: Sequence[Cell], metric: str) -> tuple[float, float] | None:
    """The metric's mean and std over every completed run of the cells; None where none measured it."""
    values = [run.metrics[metric] for cell in cells for run in cell.completed if metric in run.metrics]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def rationale_sets(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    """Cells by the rationale set their teacher wrote: the decoding and the settings the teacher sees, named so."""
    sets: dict[str, list[Cell]] = {}
    for cell in cells:
        teacher_side = [f"{key}={value}" for key, value in cell.settings.items()
                        if not key.startswith(STUDENT_SIDE_PREFIXES)]  # fmt: skip
        sets.setdefault(" · ".join([cell.decoding, *teacher_side]), []).append(cell)
    return sets


def teacher_quality(cells: Sequence[Cell], context: FigureContext) -> Figure | None:
    """The teacher's rationales, a bar per decoding (rationale set): shares of its rationales, and its perplexity.
    "judge": a simulator trained on the rationales; "checker": a task's exact checker."""
    styles, catalog = context.styles, context.catalog
    sets = {name: members for name, members in rationale_sets(cells).items() if any(m.completed for m in members)}
    present = {metric for members in sets.values() for cell in members for run in cell.completed
               for metric in run.metrics}  # fmt: skip
    shares = [metric for metric in catalog.with_role(RATIONALE_SHARE) if metric in present]
    if not shares and PERPLEXITY not in present:
        return None
    figure = new_figure(8.5, 3.8)
    panels = figure.subplots(1, 2, width_ratios=[max(len(shares), 1), 1.4]) if shares else [None, figure.subplots()]
    set_styles = [Style(styles.colors[members[0].decoding], "o", "", "full", 1.0) for members in sets.values()]
    handles: list = [_bar_handle(_wrap(name, 34), style) for name, style in zip(sets, set_styles)]
    if shares:
        axes = panels[0]
        series = [(style, [_values(members, metric) for metric in shares])
                  for style, members in zip(set_styles, sets.values())]  # fmt: skip
        centres, _ = _grouped_bars(axes, shares, series, catalog)
        if JUDGE_SUPPORTS in shares:
            centre = centres[shares.index(JUDGE_SUPPORTS)]
            axes.hlines(JUDGE_CHANCE, centre - 0.45, centre + 0.45, color=REFERENCE_COLOR, linestyle=":",
                        linewidth=1.2, zorder=4)  # fmt: skip
            handles.append(reference_handle(f"judge's chance: {JUDGE_CHANCE}", ":"))
        axes.set_ylim(0, 1.05)
        axes.set_ylabel("share of rationales", fontsize=FONT_SIZE)
        axes.set_title("Rationale measures", fontsize=FONT_SIZE + 1)
    if PERPLEXITY in present:
        axes = panels[1]
        series = [(style, [_values(members, PERPLEXITY)]) for style, members in zip(set_styles, sets.values())]
        _grouped_bars(axes, [PERPLEXITY], series, catalog)
        axes.set_xticks([])
        axes.set_ylabel(catalog.name(PERPLEXITY), fontsize=FONT_SIZE)
        axes.set_title("Perplexity", fontsize=FONT_SIZE + 1)
    elif shares:
        panels[1].set_visible(False)
    add_legend(figure, handles, "teacher's decoding")
    return figure


def student_faithfulness(cells: Sequence[Cell], context: FigureContext) -> Figure | None:
    """The student's consistency measures, a bar per cell, mean ± the sample std over seeds; a cross marks a measure
    the cell did not measure."""
    styles, references, catalog = context.styles, context.references, context.catalog
    completed = [cell for cell in cells if cell.completed]
    consistencies = catalog.with_role(CONSISTENCY)
    metrics = [metric for metric in consistencies + catalog.with_role(FAITHFULNESS)
               if any(cell.summary(metric) for cell in completed)]  # fmt: skip
    if not metrics:
        return None
    figure = new_figure(8.5, 4.0)
    axes = figure.add_subplot()
    series = []
    for cell in completed:
        summaries = [cell.summary(metric) for metric in metrics]
        series.append((styles[cell], [(s.mean, s.spread) if s is not None else None for s in summaries]))
    centres, _ = _grouped_bars(axes, metrics, series, catalog)
    handles: list = [_bar_handle(_wrap(cell.label, 34), styles[cell]) for cell in completed]
    if any(value is None for _, values in series for value in values):
        handles.append(Line2D([], [], color=REFERENCE_COLOR, marker="x", linestyle="", label="not measured"))
    if references.chance is not None and any(metric in consistencies for metric in metrics):
        for centre, metric in zip(centres, metrics):
            if metric in consistencies:
                axes.hlines(references.chance, centre - 0.45, centre + 0.45, color=REFERENCE_COLOR, linestyle=":",
                            linewidth=1.2, zorder=4)  # fmt: skip
        handles.append(reference_handle(f"chance (a random answer): {references.chance:.3f}", ":"))
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("share of test questions (mean ± std over seeds)", fontsize=FONT_SIZE)
    axes.set_title("The student's faithfulness", fontsize=FONT_SIZE + 1)
    add_legend(figure, handles, "cells and references")
    return figure


FigureBuilder = Callable[[Sequence[Cell], FigureContext], Figure | None]
FIGURES: dict[str, FigureBuilder] = {
    "las_vs_accuracy": las_vs_accuracy,
    "teacher_quality": teacher_quality,
    "student_faithfulness": student_faithfulness,
}
FORMATS = ("png", "svg")


def report_figures(tasks: Sequence[type[Task]] = ()) -> dict[str, FigureBuilder]:
    """The core's figures, then those the tasks declare (``Task.figures``), by name."""
    return {**FIGURES, **{path.rsplit(".", 1)[-1]: get_method(path) for task in tasks for path in task.figures}}


def caption(builder: FigureBuilder) -> str:
    """A figure's caption: its builder's docstring, on one line."""
    return " ".join((builder.__doc__ or "").split())


def build_figures(cells: Sequence[Cell], chance: float | None, tasks: Sequence[type[Task]] = ()
                  ) -> dict[str, Figure | None]:  # fmt: skip
    """Every figure (None where no cell has its metrics), one style for all."""
    catalog = metric_catalog(tasks)
    context = FigureContext(Styles(cells), References.of(cells, chance, catalog), catalog)
    return {name: build(cells, context) for name, build in report_figures(tasks).items()}


def write_figures(directory: Path, cells: Sequence[Cell], chance: float | None, tasks: Sequence[type[Task]] = ()
                  ) -> list[str]:  # fmt: skip
    """Write each figure as PNG and SVG into ``directory``; remove an earlier report's file of a figure not drawn
    (it would no longer be true). Returns the names of the figures written."""
    written = []
    for name, figure in build_figures(cells, chance, tasks).items():
        for extension in FORMATS:
            path = directory / f"{name}.{extension}"
            if figure is None:
                path.unlink(missing_ok=True)
            else:
                figure.savefig(path, dpi=DPI)
        if figure is not None:
            written.append(name)
    return written
