"""ToyWorld's tables in a paired comparison (``scd.compare``): per cell of the spec, the checker's label shares of the
teacher's and the student's test rationales and the shares that entail the gold answer, from the per-item files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scd.compare import Job, cell_jobs, cell_label, common_cells_line, spec_cells, without_common
from scd.toyworld.checker import LABELS


def _share(jobs: Sequence[Job], column: str, value: Any) -> float:
    """The mean over the cell's seeds of the share of items whose ``column`` is ``value``."""
    return float(np.mean([np.mean([row.get(column) == value for row in job.items]) for job in jobs]))


def label_tables(jobs: Sequence[Job], spec: Mapping[str, Any]) -> str:
    """The label shares per cell; the student's columns only where the items have a student (not in a teacher study)."""
    students = any("student_label" in row for job in jobs for row in job.items[:1])
    who = ("teacher", "student") if students else ("teacher",)
    header = " | ".join(f"{w}: {label}" for w in who for label in LABELS)
    common = spec.get("cells") or {}
    lines = ["### Checker labels of the test rationales per cell (shares, mean over seeds)", "",
             *([common_cells_line(common), ""] if common else []),
             f"| cell | seeds | {header} | teacher entails gold |", "|" + " --- |" * (3 + len(who) * len(LABELS))]
    for selector in spec_cells(spec):
        found = list(cell_jobs(jobs, selector).values())
        if not found:
            continue
        shares = [f"{_share(found, f'{w}_label', label):.3f}" for w in who for label in LABELS]
        entails = float(np.mean([np.mean([row.get("teacher_entails", 0) for row in job.items]) for job in found]))
        cell = without_common(cell_label(selector), common)
        lines.append(f"| {cell} | {len(found)} | " + " | ".join(shares) + f" | {entails:.3f} |")
    return "\n".join(lines + [""])
