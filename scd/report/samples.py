"""What a cell wrote for the test questions: the teacher's rationales and its student's own rationale and answer.

Each cell shows the files of one run: its first completed run with test rationales (else any run of it with them).
The label beside a rationale is the one the run's task gives it (``Task.label_rationale``: a checker's, say),
for the teacher's rationales and for the student's own.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from scd.data.records import RationaleFileError, RationaleRecord, read_rationales
from scd.report.collect import Cell, ReportError, Run
from scd.task import build_task

# Rationale files a decoding writes for the test split: for the gold answer, and for the perturbed answer.
SIDES = (("test.jsonl", "gold"), ("test_counterfactual.jsonl", "perturbed"))
PREDICTIONS = Path("predictions") / "test.jsonl"

Labeller = Callable[[RationaleRecord], str | None]


@dataclass
class CellSamples:
    """One cell's test files: the teacher's rationales by side then question id, and the student's prediction rows
    (``predictions/test.jsonl``: ``rationale``, ``predicted``, ...) by question id."""

    cell: Cell
    run: Run
    teacher: dict[str, dict[str, RationaleRecord]]
    predictions: dict[str, dict[str, Any]]
    labeller: Labeller | None

    def label(self, record: RationaleRecord) -> str | None:
        return self.labeller(record) if self.labeller is not None else None

    def student_record(self, question_id: str) -> RationaleRecord | None:
        """The student's own rationale for a test question, as a record its task can label; None without one."""
        prediction = self.predictions.get(question_id)
        question = self.teacher["gold"].get(question_id)
        if prediction is None or question is None:
            return None
        return dataclasses.replace(question, rationale=prediction.get("rationale") or "")


def _labeller(run: Run, cache: dict[str, Labeller | None]) -> Labeller | None:
    """The label the run's task gives each rationale, or None for a run saved without a ``dataset.task``; one task
    per distinct dataset config (building a task may generate its data)."""
    if run.config is None or OmegaConf.select(run.config, "dataset.task", default=None) is None:
        return None
    key = OmegaConf.to_yaml(run.config.dataset)
    if key not in cache:
        try:
            # The saved config holds what a task reads where the validated one would (dataset.task and its keys).
            cache[key] = build_task(run.config).label_rationale
        except ValueError as error:
            raise ReportError(f"{run.path / '.hydra' / 'config.yaml'}: {error}") from error
    return cache[key]


def _read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    rows: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ReportError(f"{path}:{number}: not a JSON line: {error}") from error
        if not isinstance(row, dict) or "id" not in row:
            raise ReportError(f"{path}:{number}: expected an object with an id")
        rows[str(row["id"])] = row
    return rows


def _shown_run(cell: Cell) -> Run | None:
    with_rationales = [run for run in cell.runs if run.config is not None
                       and (run.path / "rationales" / SIDES[0][0]).is_file()]  # fmt: skip
    return with_rationales[0] if with_rationales else None


def cell_samples(cells: Sequence[Cell]) -> list[CellSamples]:
    """The test files of every cell that has test rationales, in cell order."""
    labellers: dict[str, Labeller | None] = {}
    samples = []
    for cell in cells:
        run = _shown_run(cell)
        if run is None:
            continue
        teacher = {}
        for file, side in SIDES:
            path = run.path / "rationales" / file
            try:
                teacher[side] = {r.id: r for r in read_rationales(path)} if path.is_file() else {}
            except RationaleFileError as error:
                raise ReportError(str(error)) from error
        predictions = _read_predictions(run.path / PREDICTIONS)
        samples.append(CellSamples(cell, run, teacher, predictions, _labeller(run, labellers)))
    return samples
