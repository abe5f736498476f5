"""ToyWorld's own report figure (``ToyWorldTask.figures``): how far the student follows the wording cue."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from scd.report.collect import Cell
from scd.report.plots import (REFERENCE_COLOR, FigureContext, draw_point, finish_scatter, marker_handle, new_figure,
                              paired, reference_handle)

CUE_AGREES, CUE_OPPOSES = "toyworld/accuracy_cue_agrees", "toyworld/accuracy_cue_opposes"
# The cue is a yes/no question's wording: accuracy by the cue is over yes/no questions, where a guess scores 0.5.
YES_NO_CHANCE = 0.5


def cue_agrees_vs_opposes(cells: Sequence[Cell], context: FigureContext) -> Figure | None:
    """ToyWorld: accuracy where the question's wording cue agrees with the gold answer against where it opposes it, a
    point per cell, ± the sample std over seeds."""
    styles = context.styles
    points = paired(cells, CUE_AGREES, CUE_OPPOSES)
    if not points:
        return None
    figure = new_figure(7.0, 4.6)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="#999999", linewidth=0.8, zorder=0)
    handles: list = []
    for cell, agrees, opposes in points:
        style = styles[cell]
        draw_point(axes, style, agrees.mean, opposes.mean, agrees.spread, opposes.spread)
        handles.append(marker_handle(cell, style))
    # Beneath the cells (hollow), so a cell that always follows the cue still shows.
    axes.plot(1.0, 0.0, marker="X", color=REFERENCE_COLOR, fillstyle="none", markersize=11, linestyle="", zorder=2,
              clip_on=False)
    axes.axvline(YES_NO_CHANCE, color=REFERENCE_COLOR, linestyle=":", linewidth=1.2, zorder=1)
    axes.axhline(YES_NO_CHANCE, color=REFERENCE_COLOR, linestyle=":", linewidth=1.2, zorder=1)
    handles += [
        Line2D([], [], color=REFERENCE_COLOR, marker="X", fillstyle="none", linestyle="", markersize=11,
               label="always following the cue"),
        reference_handle(f"chance on yes/no: {YES_NO_CHANCE}", ":"),
        reference_handle("equal accuracy: no shortcut", "-", "#999999"),
    ]
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    return finish_scatter(figure, axes, handles, "accuracy where the cue agrees", "accuracy where the cue opposes",
                          "Shortcut reliance (ToyWorld; ± std over seeds)")
