"""ToyWorld's tables in a paired comparison (``scd.compare``): per cell of the spec, the checker's label shares of the
teacher's and the student's test rationales and the shares that entail the gold answer, from the per-item files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from scd.compare import Job, cell_jobs, cell_label, spec_cells
from scd.toyworld.checker import LABELS


def _share(jobs: Sequence[Job], column: str, value: Any) -> float:
    """The mean over the cell's seeds of the share of items whose ``column`` is ``value``."""
    return float(np.mean([np.mean([row.get(column) == value for row in job.items]) for job in jobs]))


def label_tables(jobs: Sequence[Job], spec: Mapping[str, Any]) -> str:
    lines = ["### Checker labels of the test rationales per cell (shares, mean over seeds)", "",
             "| cell | seeds | teacher: " + " | teacher: ".join(LABELS) + " | teacher entails gold | student: "
             + " | student: ".join(LABELS) + " |", "|" + " --- |" * (3 + 2 * len(LABELS))]  # fmt: skip
    for selector in spec_cells(spec):
        found = list(cell_jobs(jobs, selector).values())
        if not found:
            continue
        teacher = [f"{_share(found, 'teacher_label', label):.3f}" for label in LABELS]
        entails = float(np.mean([np.mean([row.get("teacher_entails", 0) for row in job.items]) for job in found]))
        student = [f"{_share(found, 'student_label', label):.3f}" for label in LABELS]
        lines.append(f"| {cell_label(selector)} | {len(found)} | " + " | ".join(teacher) + f" | {entails:.3f} | "
                     + " | ".join(student) + " |")  # fmt: skip
    return "\n".join(lines + [""])
