"""``python -m scd.report <dir>``: write the report of a sweep (or of one run) into its directory."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from scd.io import atomic_write_text
from scd.report.collect import (ReportError, Run, collect_runs, group_cells, mixed_datasets, mixed_provenance,
                                repeated_jobs, run_tasks)
from scd.report.html import write_html
from scd.report.plots import write_figures
from scd.report.tables import markdown_table, metric_columns, report_rows, write_csv
from scd.report.wandb_upload import log_to_wandb
from scd.summary import chance_level


def sweep_chance(runs: Sequence[Run]) -> float | None:
    """The chance accuracy of the runs' test split where every completed run that has one agrees on it; None else
    (a sweep over data sets has no one chance line)."""
    levels = [level for run in runs if run.status == "completed" for level in [chance_level(run.path)]
              if level is not None]  # fmt: skip
    if not levels or not all(math.isclose(level, levels[0]) for level in levels):
        return None
    return levels[0]


def write_report(directory: Path, runs: Sequence[Run] | None = None, *, html: bool = False) -> str:
    """Write table.md, table.csv and the figures into ``directory`` (and report.html with ``html``); return the
    markdown table, with the warnings about repeated jobs below it."""
    directory = Path(directory)
    runs = collect_runs(directory) if runs is None else list(runs)
    if not runs:
        raise ReportError(f"{directory}: no runs (no <job>/.hydra/config.yaml below it)")
    cells = group_cells(runs)
    columns = metric_columns(runs)
    warnings = repeated_jobs(runs) + mixed_provenance(runs)
    note = mixed_datasets(runs)
    markdown = markdown_table(cells, columns, warnings, note)
    atomic_write_text(directory / "table.md", markdown)
    write_csv(directory / "table.csv", report_rows(cells, columns))
    write_figures(directory, cells, sweep_chance(runs), run_tasks(runs))
    if html:
        write_html(directory, runs, cells, columns, [note, *warnings] if note else warnings)
    return markdown


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scd.report",
                                     description="Results table, figures and report page of a sweep or a run.")
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun directory, or one run's directory")
    parser.add_argument("--html", action="store_true",
                        help="also write report.html: table, figures, teacher and student side by side, config "
                             "differences")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the table and rationale samples per cell to W&B, in the sweep's group")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"scd: error: {args.sweep_dir} is not a directory")
    try:
        runs = collect_runs(args.sweep_dir)
        print(write_report(args.sweep_dir, runs, html=args.html))
        for warning in repeated_jobs(runs) + mixed_provenance(runs):
            print(f"scd: warning: {warning}", file=sys.stderr)
        if args.html:
            print(f"scd.report: wrote {args.sweep_dir / 'report.html'}")
        if args.wandb:
            log_to_wandb(args.sweep_dir)
    except (ReportError, OSError) as error:
        # An unwritable directory too: its OSError names the file (atomic_write_text) or the figure.
        raise SystemExit(f"scd: error: {error}") from None
