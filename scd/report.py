"""Paper-style results table and plots for a Hydra multirun sweep: ``python -m scd.report <sweep dir>``.

Every directory under the sweep holding ``.hydra/config.yaml`` is a run. A run is completed when it wrote a readable
``metrics.json`` and its ``status.json`` (if any) says ``completed``; any other run is shown as failed. Rows are
decoding x training (from ``decoding.name`` and ``training.mode``), in sweep order; the seeds of a cell are
summarized as mean ± sample std. The sweep directory receives ``table.md``, ``table.csv``, ``las_vs_accuracy.png`` and ``teacher_metrics.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from omegaconf import OmegaConf

STUDENT_COLUMNS = (
    "student/accuracy",
    "student/las",
    "student/perturbed_consistency",
    "student/counterfactual_consistency",
)
LAS_INTERVAL = ("student/las_ci_low", "student/las_ci_high")
EXTRA_PREFIXES = ("teacher/", "toyworld/")
MISSING = "–"


class ReportError(ValueError):
    """A run directory whose config lacks what the report needs."""


@dataclass
class Run:
    """One job of the sweep: its cell, seed, status and (if completed) its flat metrics."""

    path: Path
    decoding: str
    training: str
    seed: int | None
    status: str
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Summary:
    """Mean, sample std (None for one value) and count of one metric over a cell's completed runs."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None, len(values))


@dataclass
class Cell:
    """One row of the table: the runs of a decoding x training pair."""

    decoding: str
    training: str
    completed: list[Run]
    failed: list[Run]

    @property
    def status(self) -> str:
        if not self.failed:
            return "completed"
        return "failed" if not self.completed else f"partial ({len(self.failed)} failed)"

    def summary(self, metric: str) -> Summary | None:
        values = [run.metrics[metric] for run in self.completed if metric in run.metrics]
        return Summary.of(values) if values else None


def _flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a possibly nested dict, keyed by their '/'-joined path; null and non-finite values dropped."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The JSON object in ``path`` (None if absent or unreadable) and why it could not be read."""
    if not path.is_file():
        return None, f"no {path.name}"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        return None, f"unreadable {path.name}: {error}"
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object"
    return data, ""


def _config_value(config_path: Path, cfg: Any, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    if value is None:
        raise ReportError(f"{config_path}: field {key!r} is missing; the report needs it to place the run")
    return value


def load_run(run_dir: Path) -> Run:
    """Read one run directory (the one holding ``.hydra``)."""
    config_path = run_dir / ".hydra" / "config.yaml"
    try:
        cfg = OmegaConf.load(config_path)
    except Exception as error:  # omegaconf raises yaml's own errors, which carry the line number
        # Marks this job only, as an unreadable metrics.json does; the cell it belongs to is unknown.
        reason = " ".join(f"{config_path}: cannot parse: {error}".split())
        return Run(run_dir, "unknown", "unknown", None, "failed", error=reason)
    decoding = str(_config_value(config_path, cfg, "decoding.name"))
    training = str(_config_value(config_path, cfg, "training.mode"))
    seed = OmegaConf.select(cfg, "seed", default=None, throw_on_resolution_failure=False)

    status, _ = _read_json(run_dir / "status.json")
    metrics, metrics_error = _read_json(run_dir / "metrics.json")
    state = status.get("status") if status else None
    if metrics is not None and state in (None, "completed"):
        return Run(run_dir, decoding, training, seed, "completed", metrics=_flatten(metrics))
    if state in ("failed", "interrupted"):
        reason = str(status.get("error") or "failed without an error message")
    elif state == "running":
        reason = "did not finish (status.json still says running)"
    else:
        reason = metrics_error or f"status.json says {state!r}"
    return Run(run_dir, decoding, training, seed, "failed", error=" ".join(reason.split()))


def _job_order(path: Path) -> list[tuple[int, Any]]:
    """Sort key putting job 2 before job 10: digit runs compare as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in path.parts]


def collect_runs(sweep_dir: Path) -> list[Run]:
    """All runs under ``sweep_dir`` (Hydra multirun layout ``<sweep>/<job>/.hydra``), in job order."""
    configs = Path(sweep_dir).glob("**/.hydra/config.yaml")
    run_dirs = sorted((config.parent.parent for config in configs), key=_job_order)
    return [load_run(run_dir) for run_dir in run_dirs]


def group_cells(runs: Sequence[Run]) -> list[Cell]:
    """Runs grouped by (decoding, training), cells in the order the sweep first ran them."""
    keys = list(dict.fromkeys((run.decoding, run.training) for run in runs))
    return [
        Cell(
            decoding,
            training,
            [r for r in runs if (r.decoding, r.training) == (decoding, training) and r.status == "completed"],
            [r for r in runs if (r.decoding, r.training) == (decoding, training) and r.status != "completed"],
        )
        for decoding, training in keys
    ]


def metric_columns(runs: Sequence[Run]) -> list[str]:
    """The table's metric columns: the student's four, then every teacher/* and toyworld/* metric present."""
    present = {metric for run in runs for metric in run.metrics}
    extras = sorted(metric for metric in present if metric.startswith(EXTRA_PREFIXES))
    return [*STUDENT_COLUMNS, *extras]


def _number(value: float) -> str:
    return f"{value:.3f}"


def _markdown_cell(cell: Cell, metric: str) -> str:
    if not cell.completed:
        return "failed"
    summary = cell.summary(metric)
    if summary is None:
        return MISSING
    text = _number(summary.mean) if summary.std is None else f"{_number(summary.mean)} ± {_number(summary.std)}"
    if metric == "student/las":
        low, high = (cell.summary(bound) for bound in LAS_INTERVAL)
        if low is not None and high is not None:
            text += f" [{_number(low.mean)}, {_number(high.mean)}]"
    if summary.n != len(cell.completed):
        text += f" (n={summary.n})"
    return text


def markdown_table(cells: Sequence[Cell], columns: Sequence[str]) -> str:
    """The table as GitHub markdown, followed by the list of failed runs and their errors."""
    header = ["decoding", "training", "seeds", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell in cells:
        seeds = str(len(cell.completed)) + (f" (+{len(cell.failed)} failed)" if cell.failed else "")
        row = [cell.decoding, cell.training, seeds, *(_markdown_cell(cell, metric) for metric in columns)]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "Values are mean ± sample std over seeds; LAS shows its bootstrap 95% interval (mean of the runs' bounds)."
    )
    failed = [run for cell in cells for run in cell.failed]
    if failed:
        lines += ["", "Failed runs:"]
        lines += [
            f"- job `{run.path.name}` ({run.decoding}/{run.training}, seed {run.seed}): {run.error}" for run in failed
        ]
    return "\n".join(lines) + "\n"


def report_rows(cells: Sequence[Cell], columns: Sequence[str]) -> list[dict[str, Any]]:
    """One flat dict per cell, numbers unformatted: what ``table.csv`` and the W&B report table hold."""
    metrics = [*columns]
    if "student/las" in metrics:
        position = metrics.index("student/las") + 1
        metrics[position:position] = LAS_INTERVAL
    rows = []
    for cell in cells:
        row: dict[str, Any] = {
            "decoding": cell.decoding,
            "training": cell.training,
            "status": cell.status,
            "n_completed": len(cell.completed),
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
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)


def plot_las_vs_accuracy(runs: Sequence[Run], path: Path) -> bool:
    """Scatter of each completed run's LAS (with its interval) against accuracy, labeled by cell; False if no data."""
    wanted = {"student/accuracy", "student/las"}
    points = [run for run in runs if run.status == "completed" and wanted <= run.metrics.keys()]
    if not points:
        return False
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes = figure.add_subplot()
    colors = {cell: f"C{i}" for i, cell in enumerate(dict.fromkeys((run.decoding, run.training) for run in points))}
    for run in points:
        x, y = run.metrics["student/accuracy"], run.metrics["student/las"]
        color = colors[run.decoding, run.training]
        if set(LAS_INTERVAL) <= run.metrics.keys():
            low, high = (run.metrics[bound] for bound in LAS_INTERVAL)
            axes.errorbar(x, y, yerr=[[y - low], [high - y]], fmt="o", capsize=3, color=color)
        else:
            axes.plot(x, y, "o", color=color)
        axes.annotate(f"{run.decoding}/{run.training}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("student accuracy")
    axes.set_ylabel("student LAS")
    axes.set_title("LAS against accuracy, one point per run")
    figure.savefig(path, dpi=120)
    return True


def plot_teacher_metrics(cells: Sequence[Cell], path: Path) -> bool:
    """One panel per teacher metric with a bar per decoding (mean over its completed runs); False if no data."""
    decodings = list(dict.fromkeys(cell.decoding for cell in cells))
    teacher = sorted({m for cell in cells for run in cell.completed for m in run.metrics if m.startswith("teacher/")})
    if not teacher:
        return False
    figure = Figure(figsize=(3.2 * len(teacher), 3.5), layout="constrained")
    for index, metric in enumerate(teacher):
        axes = figure.add_subplot(1, len(teacher), index + 1)
        means = []
        for decoding in decodings:
            runs = [run for cell in cells if cell.decoding == decoding for run in cell.completed]
            values = [run.metrics[metric] for run in runs if metric in run.metrics]
            means.append(float(np.mean(values)) if values else 0.0)
        axes.bar(decodings, means, color=[f"C{i}" for i in range(len(decodings))])
        name = metric.removeprefix("teacher/")
        axes.set_title("fluency (perplexity, lower is better)" if name == "fluency" else name, fontsize=10)
        axes.tick_params(axis="x", labelrotation=30)
    figure.suptitle("Teacher rationale quality per decoding")
    figure.savefig(path, dpi=120)
    return True


def write_report(sweep_dir: Path, runs: Sequence[Run] | None = None) -> str:
    """Write table.md, table.csv and the plots into ``sweep_dir``; return the markdown table."""
    sweep_dir = Path(sweep_dir)
    runs = collect_runs(sweep_dir) if runs is None else list(runs)
    if not runs:
        raise ReportError(f"{sweep_dir}: no runs (no <job>/.hydra/config.yaml below it)")
    cells = group_cells(runs)
    columns = metric_columns(runs)
    markdown = markdown_table(cells, columns)
    (sweep_dir / "table.md").write_text(markdown)
    write_csv(sweep_dir / "table.csv", report_rows(cells, columns))
    plot_las_vs_accuracy(runs, sweep_dir / "las_vs_accuracy.png")
    plot_teacher_metrics(cells, sweep_dir / "teacher_metrics.png")
    return markdown


def log_to_wandb(sweep_dir: Path, samples: int = 20) -> None:
    """Log the report table and each decoding's test rationales side by side to a W&B run in the sweep's group
    (offline unless WANDB_MODE=online)."""
    import wandb

    from scd.evaluation.wandb_log import log_rationale_samples, log_report_table
    from scd.io import read_split

    runs = collect_runs(sweep_dir)
    by_decoding = {}
    for run in runs:
        rationales = run.path / "rationales" / "test.jsonl"
        if run.decoding not in by_decoding and rationales.is_file():
            by_decoding[run.decoding] = read_split(rationales.parent, "test")
    experiment = wandb.init(project="scd", group=sweep_dir.name, job_type="report", name=f"{sweep_dir.name}-report",
                            dir=str(sweep_dir), mode=os.environ.get("WANDB_MODE", "offline"))
    try:
        log_report_table(experiment, report_rows(group_cells(runs), metric_columns(runs)))
        if by_decoding:
            log_rationale_samples(experiment, by_decoding, samples)
    finally:
        wandb.finish()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scd.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun directory")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the table and rationale samples per decoding to W&B, in the sweep's group")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"scd.report: {args.sweep_dir} is not a directory")
    try:
        print(write_report(args.sweep_dir))
        if args.wandb:
            log_to_wandb(args.sweep_dir)
    except ReportError as error:
        raise SystemExit(f"scd.report: {error}") from None


if __name__ == "__main__":
    main()
