"""The results table: ``table.md`` (mean ± std per cell) and ``table.csv`` (the numbers, unformatted).

A metric no completed run of a cell measured reads "n/a" (never 0.000); a failed cell reads "failed".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scd.io import atomic_write_text
from scd.report.collect import Cell, Run
from scd.summary import LAS_INTERVAL, NOT_MEASURED

STUDENT_COLUMNS = (
    "student/accuracy",
    "student/las",
    "student/perturbed_consistency",
    "student/counterfactual_consistency",
)
# Metrics not shown as columns of their own: the other student/* ones, and the counts and times.
NOT_COLUMNS = ("student/", "time/", "rationales/")
TABLE_NOTE = ("Values are mean ± sample std over seeds; LAS shows its bootstrap 95% interval (mean of the runs' "
              f"bounds); {NOT_MEASURED}: not measured.")


def metric_columns(runs: Sequence[Run]) -> list[str]:
    """The table's metric columns: the student's four, then every other metric present (the teacher's and the
    task's), but the counts and times."""
    present = {metric for run in runs for metric in run.metrics}
    extras = sorted(metric for metric in present if not metric.startswith(NOT_COLUMNS))
    return [*STUDENT_COLUMNS, *extras]


def _number(value: float) -> str:
    return f"{value:.3f}"


def cell_text(cell: Cell, metric: str) -> str:
    """One metric of a cell as the tables show it: mean ± std, LAS with its interval, (n=..) where runs lack it."""
    if not cell.completed:
        return "failed"
    summary = cell.summary(metric)
    if summary is None:
        return NOT_MEASURED
    text = _number(summary.mean) if summary.std is None else f"{_number(summary.mean)} ± {_number(summary.std)}"
    if metric == "student/las":
        low, high = (cell.summary(bound) for bound in LAS_INTERVAL)
        if low is not None and high is not None:
            text += f" [{_number(low.mean)}, {_number(high.mean)}]"
    if summary.n != len(cell.completed):
        text += f" (n={summary.n})"
    return text


def seeds_text(cell: Cell) -> str:
    """The number of distinct seeds that completed, and how many runs failed."""
    return str(cell.n_seeds) + (f" (+{len(cell.failed)} failed)" if cell.failed else "")


def table_header(cells: Sequence[Cell], columns: Sequence[str]) -> list[str]:
    settings = list(cells[0].settings) if cells else []
    return ["decoding", "training", *settings, "seeds", *columns]


def table_row(cell: Cell, columns: Sequence[str]) -> list[str]:
    return [cell.decoding, cell.training, *cell.settings.values(), seeds_text(cell),
            *(cell_text(cell, metric) for metric in columns)]


def failed_runs(cells: Sequence[Cell]) -> list[str]:
    """One line per failed run: its job, cell, seed and error."""
    return [
        f"job `{run.path.name}` ({cell.label}, seed {run.seed}): {run.error}" for cell in cells for run in cell.failed
    ]


def markdown_table(cells: Sequence[Cell], columns: Sequence[str], warnings: Sequence[str] = (),
                   note: str | None = None) -> str:
    """The table as GitHub markdown, under ``note`` (the runs' data sets, where they are of several) and followed by
    the warnings and the list of failed runs and their errors."""
    header = table_header(cells, columns)
    lines = [note, ""] if note else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(table_row(cell, columns)) + " |" for cell in cells]
    lines += ["", TABLE_NOTE]
    if warnings:
        lines += ["", "Warnings:", *(f"- {line}" for line in warnings)]
    failed = failed_runs(cells)
    if failed:
        lines += ["", "Failed runs:", *(f"- {line}" for line in failed)]
    return "\n".join(lines) + "\n"


def report_rows(cells: Sequence[Cell], columns: Sequence[str]) -> list[dict[str, Any]]:
    """One flat dict per cell, numbers unformatted and None where not measured: what ``table.csv`` and the W&B
    report table hold."""
    metrics = [*columns]
    if "student/las" in metrics:
        position = metrics.index("student/las") + 1
        metrics[position:position] = LAS_INTERVAL
    rows = []
    for cell in cells:
        row: dict[str, Any] = {
            "cell": cell.label,
            "decoding": cell.decoding,
            "training": cell.training,
            **cell.settings,
            "status": cell.status,
            "n_seeds": cell.n_seeds,
            "n_failed": len(cell.failed),
        }
        for metric in metrics:
            summary = cell.summary(metric)
            row[f"{metric}/mean"] = summary.mean if summary else None
            row[f"{metric}/std"] = summary.std if summary else None
            row[f"{metric}/n"] = summary.n if summary else 0
        rows.append(row)
    return rows


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    atomic_write_text(path, text.getvalue())
