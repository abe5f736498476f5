"""Paper-style results table and plots for a Hydra multirun sweep: ``python -m scd.report <sweep dir>``.

Every directory under the sweep holding ``.hydra/config.yaml`` is a run. A run is completed when it wrote a readable
``metrics.json`` and its ``status.json`` (if any) says ``completed``; any other run, and a run whose config cannot be
read, is shown as failed. Runs are grouped by their overrides (``.hydra/overrides.yaml``) except ``seed``: a cell is
decoding x training (``decoding.name``, ``training.mode``) x every other override that varies in the sweep, one
column each, in sweep order; the seeds of a cell are summarized as mean ± sample std. The sweep directory receives
``table.md``, ``table.csv``, ``las_vs_accuracy.png`` and ``teacher_metrics.png``, and with ``--html`` ``report.html``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from omegaconf import DictConfig, ListConfig, OmegaConf

from scd.data.records import RationaleRecord
from scd.io import RationaleFileError, read_rationales
from scd.task import build_task

STUDENT_COLUMNS = (
    "student/accuracy",
    "student/las",
    "student/perturbed_consistency",
    "student/counterfactual_consistency",
)
LAS_INTERVAL = ("student/las_ci_low", "student/las_ci_high")
EXTRA_PREFIXES = ("teacher/", "toyworld/")
MISSING = "–"
# Overrides that tell seeds of one cell apart, not cells.
SEED_KEYS = {"seed"}
# Group overrides already shown as the decoding and training columns (by the option's name in the run's config).
NAMED_GROUPS = {"decoding", "training"}
# A varying override that a run does not set: the config's default applies.
DEFAULT = "(default)"
PLOTS = ("las_vs_accuracy.png", "teacher_metrics.png")
# Rationale files a decoding writes for the test split: for the gold answer, and for the perturbed answer.
SIDES = (("test.jsonl", "gold"), ("test_counterfactual.jsonl", "perturbed"))


class ReportError(ValueError):
    """A sweep the report cannot tabulate, or a run directory whose config lacks what the report needs."""


@dataclass
class Run:
    """One job of the sweep: its cell, seed, status and (if completed) its flat metrics.

    ``overrides`` are the job's command-line overrides (key -> value, seed included); ``config`` is the job's
    ``.hydra/config.yaml`` (None when it cannot be read: the run is then failed)."""

    path: Path
    decoding: str
    training: str
    seed: int | None
    status: str
    overrides: dict[str, str] = field(default_factory=dict)
    config: DictConfig | None = None
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def group(self) -> tuple[Any, ...]:
        """What tells this run's cell from the others: decoding, training and every override but the seed."""
        overrides = tuple(sorted((k, v) for k, v in self.overrides.items() if k not in SEED_KEYS))
        return self.decoding, self.training, overrides


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
    """One row of the table: the runs of one decoding x training x setting of the varying overrides."""

    decoding: str
    training: str
    settings: dict[str, str]
    completed: list[Run]
    failed: list[Run]

    @property
    def status(self) -> str:
        if not self.failed:
            return "completed"
        return "failed" if not self.completed else f"partial ({len(self.failed)} failed)"

    @property
    def label(self) -> str:
        """``decoding/training`` and the cell's settings, for plot legends and headings."""
        return " ".join([f"{self.decoding}/{self.training}", *(f"{k}={v}" for k, v in self.settings.items())])

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


def read_overrides(run_dir: Path) -> dict[str, str]:
    """The job's overrides from ``.hydra/overrides.yaml`` as key -> value (``+``/``++`` prefixes dropped); {} when
    the file is absent. Raises ReportError naming the file when it is not a list of ``key=value`` strings."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    try:
        items = OmegaConf.load(path)
    except Exception as error:  # yaml's own errors, with the line number
        raise ReportError(f"{path}: cannot parse: {' '.join(str(error).split())}") from error
    if not isinstance(items, ListConfig) or not all(isinstance(item, str) and "=" in item for item in items):
        raise ReportError(f"{path}: expected a list of key=value overrides")
    pairs = (item.split("=", 1) for item in items)
    return {key.lstrip("+"): value for key, value in pairs}


def load_run(run_dir: Path) -> Run:
    """Read one run directory (the one holding ``.hydra``). A config that cannot be read marks the run failed, with
    the reason naming the file, so one broken job does not hide the others."""
    config_path = run_dir / ".hydra" / "config.yaml"
    try:
        overrides = read_overrides(run_dir)
        try:
            cfg = OmegaConf.load(config_path)
        except Exception as error:  # omegaconf raises yaml's own errors, which carry the line number
            raise ReportError(f"{config_path}: cannot parse: {' '.join(str(error).split())}") from error
        if not isinstance(cfg, DictConfig):
            raise ReportError(f"{config_path}: expected a mapping of config groups")
        decoding = str(_config_value(config_path, cfg, "decoding.name"))
        training = str(_config_value(config_path, cfg, "training.mode"))
    except ReportError as error:
        return Run(run_dir, MISSING, MISSING, None, "failed", error=str(error))
    seed = OmegaConf.select(cfg, "seed", default=None, throw_on_resolution_failure=False)

    status, _ = _read_json(run_dir / "status.json")
    metrics, metrics_error = _read_json(run_dir / "metrics.json")
    state = status.get("status") if status else None
    place = {"overrides": overrides, "config": cfg}
    if metrics is not None and state in (None, "completed"):
        return Run(run_dir, decoding, training, seed, "completed", **place, metrics=_flatten(metrics))
    if state in ("failed", "interrupted"):
        reason = str(status.get("error") or "failed without an error message")
    elif state == "running":
        reason = "did not finish (status.json still says running)"
    else:
        reason = metrics_error or f"status.json says {state!r}"
    return Run(run_dir, decoding, training, seed, "failed", **place, error=" ".join(reason.split()))


def _job_order(path: Path) -> list[tuple[int, Any]]:
    """Sort key putting job 2 before job 10: digit runs compare as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in path.parts]


def collect_runs(sweep_dir: Path) -> list[Run]:
    """All runs under ``sweep_dir`` (Hydra multirun layout ``<sweep>/<job>/.hydra``), in job order."""
    configs = Path(sweep_dir).glob("**/.hydra/config.yaml")
    run_dirs = sorted((config.parent.parent for config in configs), key=_job_order)
    return [load_run(run_dir) for run_dir in run_dirs]


def varying_keys(runs: Sequence[Run]) -> list[str]:
    """The overrides whose value differs between runs, in the order they first appear; seeds and the decoding and
    training groups (their own columns) left out."""
    keys = dict.fromkeys(key for run in runs for key in run.overrides if key not in SEED_KEYS | NAMED_GROUPS)
    return [key for key in keys if len({run.overrides.get(key) for run in runs}) > 1]


def group_cells(runs: Sequence[Run]) -> list[Cell]:
    """Runs grouped by decoding, training and every override but the seed; cells in the order the sweep first ran
    them. Each cell's ``settings`` hold its values of the overrides that vary in the sweep."""
    keys = varying_keys(runs)
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return [
        Cell(
            members[0].decoding,
            members[0].training,
            {key: members[0].overrides.get(key, DEFAULT) for key in keys},
            [run for run in members if run.status == "completed"],
            [run for run in members if run.status != "completed"],
        )
        for members in groups.values()
    ]


def metric_columns(runs: Sequence[Run]) -> list[str]:
    """The table's metric columns: the student's four, then every teacher/* and toyworld/* metric present."""
    present = {metric for run in runs for metric in run.metrics}
    extras = sorted(metric for metric in present if metric.startswith(EXTRA_PREFIXES))
    return [*STUDENT_COLUMNS, *extras]


@dataclass
class RationaleSet:
    """The test rationales one decoding wrote (shared by every run that used it): by side, then by question id."""

    name: str
    records: dict[str, dict[str, RationaleRecord]]
    labeller: Callable[[RationaleRecord], str | None] | None


def _labeller(run: Run) -> Callable[[RationaleRecord], str | None] | None:
    """The label the run's task gives each rationale (``Task.label_rationale``; ToyWorld: the checker's), or None
    for a run saved without a ``dataset.task``."""
    if run.config is None or OmegaConf.select(run.config, "dataset.task", default=None) is None:
        return None
    try:
        # The saved config holds what a task reads where the validated one would (dataset.task and its keys).
        return build_task(run.config).label_rationale
    except ValueError as error:
        raise ReportError(f"{run.path / '.hydra' / 'config.yaml'}: {error}") from error


def rationale_sets(runs: Sequence[Run]) -> list[RationaleSet]:
    """One set per distinct content of the runs' test rationales (jobs that differ only in training share one), named
    by the decoding and the settings its runs have in common."""
    keys = varying_keys(runs)
    by_digest: dict[str, list[Run]] = {}
    for run in runs:
        paths = [run.path / "rationales" / file for file, _ in SIDES]
        if run.config is None or not paths[0].is_file():
            continue
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in paths if p.is_file())).hexdigest()
        by_digest.setdefault(digest, []).append(run)
    sets = []
    for members in by_digest.values():
        first = members[0]
        common = [f"{key}={first.overrides.get(key, DEFAULT)}" for key in keys
                  if len({run.overrides.get(key) for run in members}) == 1]
        records = {}
        for file, side in SIDES:
            path = first.path / "rationales" / file
            try:
                records[side] = {r.id: r for r in read_rationales(path)} if path.is_file() else {}
            except RationaleFileError as error:
                raise ReportError(str(error)) from error
        sets.append(RationaleSet(" ".join([first.decoding, *common]), records, _labeller(first)))
    return sets


def _number(value: float) -> str:
    return f"{value:.3f}"


def cell_text(cell: Cell, metric: str) -> str:
    """One metric of a cell as the tables show it: mean ± std, LAS with its interval, (n=..) where runs lack it."""
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


def seeds_text(cell: Cell) -> str:
    return str(len(cell.completed)) + (f" (+{len(cell.failed)} failed)" if cell.failed else "")


def table_header(cells: Sequence[Cell], columns: Sequence[str]) -> list[str]:
    settings = list(cells[0].settings) if cells else []
    return ["decoding", "training", *settings, "seeds", *columns]


def table_row(cell: Cell, columns: Sequence[str]) -> list[str]:
    return [cell.decoding, cell.training, *cell.settings.values(), seeds_text(cell),
            *(cell_text(cell, metric) for metric in columns)]


TABLE_NOTE = ("Values are mean ± sample std over seeds; LAS shows its bootstrap 95% interval (mean of the runs' "
              "bounds).")


def failed_runs(cells: Sequence[Cell]) -> list[str]:
    """One line per failed run: its job, cell, seed and error."""
    return [
        f"job `{run.path.name}` ({cell.label}, seed {run.seed}): {run.error}" for cell in cells for run in cell.failed
    ]


def markdown_table(cells: Sequence[Cell], columns: Sequence[str]) -> str:
    """The table as GitHub markdown, followed by the list of failed runs and their errors."""
    header = table_header(cells, columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(table_row(cell, columns)) + " |" for cell in cells]
    lines += ["", TABLE_NOTE]
    failed = failed_runs(cells)
    if failed:
        lines += ["", "Failed runs:", *(f"- {line}" for line in failed)]
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
            **cell.settings,
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


def plot_las_vs_accuracy(cells: Sequence[Cell], path: Path) -> bool:
    """Scatter of each completed run's LAS (with its interval) against accuracy, colored and labeled by cell; False
    if no run has both."""
    wanted = {"student/accuracy", "student/las"}
    points = [(c, [run for run in c.completed if wanted <= run.metrics.keys()]) for c in cells]
    points = [(cell, runs) for cell, runs in points if runs]
    if not points:
        return False
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for index, (cell, runs) in enumerate(points):
        color = f"C{index % 10}"
        for run in runs:
            x, y = run.metrics["student/accuracy"], run.metrics["student/las"]
            if set(LAS_INTERVAL) <= run.metrics.keys():
                low, high = (run.metrics[bound] for bound in LAS_INTERVAL)
                axes.errorbar(x, y, yerr=[[y - low], [high - y]], fmt="o", capsize=3, color=color)
            else:
                axes.plot(x, y, "o", color=color)
            axes.annotate(cell.label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xlabel("student accuracy")
    axes.set_ylabel("student LAS")
    axes.set_title("LAS against accuracy, one point per run")
    figure.savefig(path, dpi=120)
    return True


def plot_teacher_metrics(cells: Sequence[Cell], path: Path) -> bool:
    """One panel per teacher metric with a bar per decoding and setting (mean over its completed runs, whatever the
    training); False if no data."""
    teacher = sorted({m for cell in cells for run in cell.completed for m in run.metrics if m.startswith("teacher/")})
    if not teacher:
        return False
    bars: dict[str, list[Run]] = {}
    for cell in cells:
        label = " ".join([cell.decoding, *(f"{k}={v}" for k, v in cell.settings.items())])
        bars.setdefault(label, []).extend(cell.completed)
    figure = Figure(figsize=(3.2 * len(teacher), 3.5), layout="constrained")
    for index, metric in enumerate(teacher):
        axes = figure.add_subplot(1, len(teacher), index + 1)
        means = []
        for runs in bars.values():
            values = [run.metrics[metric] for run in runs if metric in run.metrics]
            means.append(float(np.mean(values)) if values else 0.0)
        axes.bar(list(bars), means, color=[f"C{i % 10}" for i in range(len(bars))])
        name = metric.removeprefix("teacher/")
        axes.set_title("fluency (perplexity, lower is better)" if name == "fluency" else name, fontsize=10)
        axes.tick_params(axis="x", labelrotation=30)
    figure.suptitle("Teacher rationale quality per decoding")
    figure.savefig(path, dpi=120)
    return True


def write_report(sweep_dir: Path, runs: Sequence[Run] | None = None, *, html: bool = False) -> str:
    """Write table.md, table.csv and the plots into ``sweep_dir`` (and report.html with ``html``); return the
    markdown table."""
    sweep_dir = Path(sweep_dir)
    runs = collect_runs(sweep_dir) if runs is None else list(runs)
    if not runs:
        raise ReportError(f"{sweep_dir}: no runs (no <job>/.hydra/config.yaml below it)")
    cells = group_cells(runs)
    columns = metric_columns(runs)
    markdown = markdown_table(cells, columns)
    (sweep_dir / "table.md").write_text(markdown)
    write_csv(sweep_dir / "table.csv", report_rows(cells, columns))
    for plot, name in zip((plot_las_vs_accuracy, plot_teacher_metrics), PLOTS):
        if not plot(cells, sweep_dir / name):
            (sweep_dir / name).unlink(missing_ok=True)  # an earlier report's plot would no longer be true
    if html:
        from scd.report_html import write_html

        write_html(sweep_dir, runs, cells, columns)
    return markdown


def log_to_wandb(sweep_dir: Path, samples: int = 20) -> None:
    """Log the report table and each decoding's test rationales side by side to a W&B run in the sweep's group
    (offline unless WANDB_MODE=online)."""
    import wandb

    from scd.evaluation.wandb_log import log_rationale_samples, log_report_table

    runs = collect_runs(sweep_dir)
    by_decoding = {s.name: list(s.records["gold"].values()) for s in rationale_sets(runs)}
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
    parser.add_argument("--html", action="store_true",
                        help="also write report.html: table, plots, rationales side by side, config differences")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the table and rationale samples per decoding to W&B, in the sweep's group")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"scd.report: {args.sweep_dir} is not a directory")
    try:
        print(write_report(args.sweep_dir, html=args.html))
        if args.html:
            print(f"scd.report: wrote {args.sweep_dir / 'report.html'}")
        if args.wandb:
            log_to_wandb(args.sweep_dir)
    except ReportError as error:
        raise SystemExit(f"scd.report: {error}") from None


if __name__ == "__main__":
    main()
