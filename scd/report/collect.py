"""Reading a sweep: its runs, their cells, and the files a cell's runs wrote.

Every directory under the sweep holding ``.hydra/config.yaml`` is a run. A run is completed when it wrote a readable
``metrics.json`` and its ``status.json`` (if any) says ``completed``; any other run, and a run whose config cannot be
read, is failed. Runs are grouped by their overrides (``.hydra/overrides.yaml``) except ``seed``: a cell is decoding x
training (``decoding.name``, ``training.mode``) x every other override that varies in the sweep. Runs that share every
override and the seed (two copies of one job) are not pooled as seeds: each copy is a cell of its own, with a warning
naming the directories.

A metric that is absent or not finite (metrics.json's ``NaN``) was not measured in that run.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from scd.provenance import differing_fields
from scd.task import Task, task_class

MISSING = "–"
# Overrides that tell seeds of one cell apart, not cells.
SEED_KEYS = {"seed"}
# Overrides that change where a run writes, how fast it runs or what it logs, never what it measures: a rerun with
# another thread count or cache directory is the same cell.
SPEED_KEYS = {"threads", "overwrite", "ckpt_path", "logger", "trainer.enable_progress_bar"}
SPEED_PREFIXES = ("paths.", "logger.")
# The column that tells data sets apart where a directory holds runs of more than one (``dataset.name``).
DATASET_KEY = "dataset"
# Group overrides already shown as the decoding and training columns (by the option's name in the run's config).
NAMED_GROUPS = {"decoding", "training"}
# A varying override that a run does not set: the config's default applies.
DEFAULT = "(default)"
# The setting that keeps copies of one job apart (see ``repeated_jobs``).
COPY_KEY = "copy"
# The override naming one of the paper's arms (conf/arm/), which labels its cell.
ARM_KEY = "arm"
ICL_TEACHER = "ICL teacher"


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
    dataset: str = MISSING
    overrides: dict[str, str] = field(default_factory=dict)
    config: DictConfig | None = None
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    # What produced the run (``scd.provenance``: commit, library versions, threads, CPU, GPU); None where not recorded.
    provenance: dict[str, Any] | None = None

    @property
    def group(self) -> tuple[Any, ...]:
        """What tells this run's cell from the others: data set, decoding, training and every override but the seed
        and the speed-only ones."""
        overrides = tuple(sorted((k, v) for k, v in self.overrides.items() if k not in SEED_KEYS and not speed_only(k)))
        return self.dataset, self.decoding, self.training, overrides

    @property
    def icl_teacher(self) -> bool:
        """The teacher answered in context in the student's place (``student=icl_teacher``)."""
        if self.config is None:
            return False
        return OmegaConf.select(self.config, "student.in_context", default=None,
                                throw_on_resolution_failure=False) is not None  # fmt: skip


@dataclass
class Summary:
    """Mean, sample std (None for one value) and count of one metric over a cell's runs that measured it."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None, len(values))

    @property
    def spread(self) -> float:
        """The error bar the figures draw: the sample std, 0 for a single value."""
        return self.std or 0.0


@dataclass
class Cell:
    """One row of the table: the runs of one decoding x training x setting of the varying overrides."""

    decoding: str
    training: str
    settings: dict[str, str]
    completed: list[Run]
    failed: list[Run]

    @property
    def runs(self) -> list[Run]:
        return [*self.completed, *self.failed]

    @property
    def status(self) -> str:
        if not self.failed:
            return "completed"
        return "failed" if not self.completed else f"partial ({len(self.failed)} failed)"

    @property
    def icl_teacher(self) -> bool:
        return any(run.icl_teacher for run in self.runs)

    @property
    def training_kind(self) -> str:
        """What the student learned from: the training mode, or "ICL teacher" where no student was trained."""
        return ICL_TEACHER if self.icl_teacher else self.training

    @property
    def label(self) -> str:
        """The cell's one name in every table, figure and page: "ICL teacher", else the arm, else
        "decoding / training"; then any other setting that varies and this cell sets (the table's columns show the
        defaults)."""
        arm = self.settings.get(ARM_KEY, DEFAULT)
        if self.icl_teacher:
            head = ICL_TEACHER
        elif arm != DEFAULT:
            head = arm
        else:
            head = f"{self.decoding} / {self.training}"
        extras = [f"{key}={value}" for key, value in self.settings.items()
                  if key != ARM_KEY and value not in (MISSING, DEFAULT)]  # fmt: skip
        return " · ".join([head, *extras])

    @property
    def n_seeds(self) -> int:
        """How many distinct seeds the completed runs hold (a run whose config sets none counts on its own)."""
        return len({run.seed if run.seed is not None else run.path for run in self.completed})

    def summary(self, metric: str) -> Summary | None:
        """The metric over the completed runs that measured it; None where none did."""
        values = [run.metrics[metric] for run in self.completed if metric in run.metrics]
        return Summary.of(values) if values else None


def speed_only(key: str) -> bool:
    """Whether the override ``key`` changes only where a run writes, how fast it runs or what it logs."""
    return key in SPEED_KEYS or key.startswith(SPEED_PREFIXES)


def _flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a possibly nested dict, keyed by their '/'-joined path; null and non-finite values (not
    measured) dropped."""
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
    dataset = str(OmegaConf.select(cfg, "dataset.name", default=MISSING, throw_on_resolution_failure=False))

    status, _ = _read_json(run_dir / "status.json")
    metrics, metrics_error = _read_json(run_dir / "metrics.json")
    state = status.get("status") if status else None
    place = {"dataset": dataset, "overrides": overrides, "config": cfg, "provenance": (status or {}).get("provenance")}
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
    """All runs under ``sweep_dir`` (Hydra multirun layout ``<sweep>/<job>/.hydra``, or one run's own directory), in
    job order."""
    configs = Path(sweep_dir).glob("**/.hydra/config.yaml")
    run_dirs = sorted((config.parent.parent for config in configs), key=_job_order)
    return [load_run(run_dir) for run_dir in run_dirs]


def varying_keys(runs: Sequence[Run]) -> list[str]:
    """The overrides whose value differs between runs, in the order they first appear; seeds, speed-only keys and
    the data set, decoding and training groups (their own columns) left out."""
    keys = dict.fromkeys(key for run in runs for key in run.overrides
                         if key not in SEED_KEYS | NAMED_GROUPS | {DATASET_KEY} and not speed_only(key))
    return [key for key in keys if len({run.overrides.get(key) for run in runs}) > 1]


def _copies(runs: Sequence[Run]) -> tuple[dict[Path, str], list[str]]:
    """Which copy each run of a repeated job belongs to, and one warning per repeated job.

    A job is repeated when runs share every override and the seed. Every run of such a group is labelled with its
    parent directory relative to the runs' common directory (a copied sweep: ``copyA``, ``copyB``), or with its own
    directory where that does not tell the copies apart."""
    by_job: dict[tuple[Any, ...], list[Run]] = defaultdict(list)
    for run in runs:
        if run.seed is not None:
            by_job[(run.group, run.seed)].append(run)
    repeated = [members for members in by_job.values() if len(members) > 1]
    if not repeated:
        return {}, []
    root = Path(os.path.commonpath([run.path for run in runs]))
    repeated_groups = {members[0].group for members in repeated}
    members_of = [[run for run in runs if run.group == group] for group in repeated_groups]
    copies: dict[Path, str] = {}
    for members in members_of:
        parents = {run.path: str(run.path.parent.relative_to(root)) for run in members}
        distinct = len({(parents[run.path], run.seed) for run in members}) == len(members)
        copies.update({run.path: parents[run.path] if distinct else str(run.path.relative_to(root))
                       for run in members})
    warnings = [
        f"runs {', '.join(str(run.path) for run in members)} share every override and seed {members[0].seed}: "
        f"kept apart as copies ({', '.join(copies[run.path] for run in members)}), not pooled as seeds"
        for members in repeated
    ]
    return copies, warnings


def datasets(runs: Sequence[Run]) -> list[str]:
    """The data sets (``dataset.name``) of the runs whose config could be read, each once, in job order."""
    return list(dict.fromkeys(run.dataset for run in runs if run.dataset != MISSING))


def mixed_datasets(runs: Sequence[Run]) -> str | None:
    """The one line saying that the runs are of more than one data set and the table splits them; None else."""
    names = datasets(runs)
    if len(names) < 2:
        return None
    return (f"these runs are of {len(names)} data sets ({', '.join(names)}): each row is of one, named in the "
            f"{DATASET_KEY} column; compare rows of the same data set only")


def repeated_jobs(runs: Sequence[Run]) -> list[str]:
    """One warning per job that more than one run repeats (same overrides and seed), naming their directories."""
    return _copies(runs)[1]


def mixed_provenance(runs: Sequence[Run]) -> list[str]:
    """One warning per provenance field (commit, library version, threads, CPU model, GPU) in which the completed
    runs differ, naming the runs: their float results may differ for that reason alone."""
    completed = [run for run in runs if run.status == "completed"]
    common = Path(os.path.commonpath([run.path for run in completed])) if len(completed) > 1 else None
    names = {str(run.path.relative_to(common)) if common else str(run.path): run.provenance for run in completed}
    return differing_fields(names, noun="runs of this report")


def group_cells(runs: Sequence[Run]) -> list[Cell]:
    """Runs grouped by decoding, training and every override but the seed; cells in the order the sweep first ran
    them. Each cell's ``settings`` hold its data set where the runs are of more than one, its values of the overrides
    that vary in the sweep, and ``copy`` where copies of one job are kept apart."""
    keys = varying_keys(runs)
    split_by_dataset = len(datasets(runs)) > 1
    copies, _ = _copies(runs)
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.group, copies.get(run.path)), []).append(run)
    cells = []
    for (_, copy), members in groups.items():
        settings = {DATASET_KEY: members[0].dataset} if split_by_dataset else {}
        settings.update({key: members[0].overrides.get(key, DEFAULT) for key in keys})
        if copies:
            settings[COPY_KEY] = copy if copy is not None else MISSING
        cells.append(Cell(members[0].decoding, members[0].training, settings,
                          [run for run in members if run.status == "completed"],
                          [run for run in members if run.status != "completed"]))  # fmt: skip
    return cells


def run_tasks(runs: Sequence[Run]) -> list[type[Task]]:
    """The task classes the runs' configs name (``dataset.task._target_``), each once: their metric declarations and
    figures join the report's."""
    targets = dict.fromkeys(
        target for run in runs if run.config is not None
        for target in [OmegaConf.select(run.config, "dataset.task._target_", default=None,
                                        throw_on_resolution_failure=False)] if target
    )  # fmt: skip
    tasks = []
    for target in targets:
        try:
            tasks.append(task_class({"_target_": target}))
        except (ImportError, ValueError) as error:
            raise ReportError(f"dataset.task._target_ {target}: {error}") from None
    return tasks
