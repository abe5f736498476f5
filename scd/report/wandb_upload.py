"""``python -m scd.report <sweep> --wandb``: the report's table and each cell's test rationales in a W&B run."""

from __future__ import annotations

import os
from pathlib import Path

from scd.report.collect import collect_runs, group_cells
from scd.report.samples import cell_samples
from scd.report.tables import metric_columns, report_rows


def log_to_wandb(sweep_dir: Path, samples: int = 20) -> None:
    """Log the report table and each cell's teacher rationales side by side to a W&B run in the sweep's group
    (offline unless WANDB_MODE=online). Metrics a cell did not measure are empty cells, not 0."""
    import wandb

    from scd.evaluation.wandb_log import log_rationale_samples, log_report_table

    runs = collect_runs(sweep_dir)
    cells = group_cells(runs)
    by_cell = {s.cell.label: list(s.teacher["gold"].values()) for s in cell_samples(cells)}
    experiment = wandb.init(project="scd", group=sweep_dir.name, job_type="report", name=f"{sweep_dir.name}-report",
                            dir=str(sweep_dir), mode=os.environ.get("WANDB_MODE", "offline"))
    try:
        log_report_table(experiment, report_rows(cells, metric_columns(runs)))
        if by_cell:
            log_rationale_samples(experiment, by_cell, samples)
    finally:
        wandb.finish()
