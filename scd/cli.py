"""The command line around the pipeline: one run's bookkeeping and errors, and a sweep's closing summary.

A single run exits non-zero with one ``scd: error: ...`` line for bad input (also for a bad command line, which Hydra
would otherwise report over several lines); a sweep job's failure is recorded in its ``status.json`` and the sweep
goes on, then ends with one summary line. SIGTERM or SIGINT ends a run (and a sweep: the later jobs do not run) with
``status.json`` "interrupted" and exit status 128 + the signal's number.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from scd.components import build_components
from scd.config import validate
from scd.io import atomic_write_text
from scd.pipeline import is_global_zero, is_multirun, run
from scd.provenance import now, provenance
from scd.rundir import claim_run_dir, holds_a_run, read_status, restore_hydra_files, sweep_resumption
from scd.signals import Interrupted, interrupt_on_signals

log = logging.getLogger(__name__)
# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates: noise on every run that users cannot act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=Warning)


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    atomic_write_text(run_dir / "status.json", json.dumps({"status": status, **extra}) + "\n")


# The numbered ways out Hydra lists under some errors ("2. To use it as string, quote the value: key='a,b'").
HINT_LINE = re.compile(r"\d+\. ")


def one_line(err: BaseException) -> str:
    """An error as one line: its first line (OmegaConf appends the full key and types on more lines), plus the
    numbered hints Hydra lists below it, the options Hydra lists for an unknown group option, and the first line of
    an OmegaConf cause Hydra wraps."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    hints = [line.strip() for line in lines[1:] if HINT_LINE.match(line.strip())]
    if hints:
        text = "; ".join([text, *hints])
    if isinstance(err, OverrideParseException):
        text = f"cannot parse the override {err.override!r}: {text}"
    if isinstance(err, MissingConfigException) and err.options:
        text += f"; options: {', '.join(sorted(err.options))}"
    if isinstance(err, HydraException) and isinstance(err.__cause__, OmegaConfBaseException):
        text += f" {one_line(err.__cause__)}"
    return text


def cli(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function so that a bad command line (unknown key or group option, a value of the wrong
    type, override syntax) ends in one line ``scd: error: ...`` and exit status 1, like every other bad input.

    Hydra reports these itself, over several lines, unless HYDRA_FULL_ERROR=1 makes it raise; a user who sets
    HYDRA_FULL_ERROR=1 gets Hydra's full report and traceback instead."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        print(f"scd: error: {one_line(err)}", file=sys.stderr)
        sys.exit(1)


class SweepSummary(Callback):
    """Hydra callback (``hydra.callbacks`` in conf/config.yaml) closing a sweep: a failed job does not stop the
    others, but once all have run the sweep prints one line and exits with status 1 if any failed, so scripts and CI
    notice. Failed means what ``python -m scd.report`` shows as failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not summarize_sweep(Path(config.hydra.sweep.dir)):
            sys.exit(1)


def summarize_sweep(sweep_dir: Path, interrupted: Interrupted | None = None) -> bool:
    """Print the sweep's one summary line (to stderr if a job failed or the sweep was ``interrupted``), counting the
    jobs this invocation kept, resumed and ran anew; True if every job completed."""
    from scd.report import collect_runs

    runs = collect_runs(sweep_dir)
    failed = [run for run in runs if run.status != "completed"]
    counts = start_counts(sweep_dir, [run.path for run in runs])
    if not failed and interrupted is None:
        print(f"scd: sweep {sweep_dir}: all {len(runs)} jobs completed ({counts})")
        return True
    jobs = "; ".join(f"job {run.path.relative_to(sweep_dir)} ({run.error})" for run in failed)
    head = f"{len(failed)} of {len(runs)} jobs failed: {jobs}"
    if interrupted is not None:
        planned = planned_jobs(sweep_dir)
        started = f"{len(runs)} of {planned}" if planned else f"{len(runs)}"
        head = (f"{interrupted}: {started} jobs started, {len(failed)} did not complete: {jobs}; later jobs not "
                f"started; rerun the same command (with hydra.sweep.dir={sweep_dir}) to resume")
    print(f"scd: error: sweep {sweep_dir}: {head} ({counts}); python -m scd.report {sweep_dir} tabulates them",
          file=sys.stderr)
    return False


def start_counts(sweep_dir: Path, job_dirs: list[Path]) -> str:
    """How this invocation of the sweep started its jobs: kept (completed before it began: their status.json is
    older than the ``multirun.yaml`` Hydra writes at the start of each invocation), resumed, or new."""
    try:
        began = (sweep_dir / "multirun.yaml").stat().st_mtime
    except OSError:
        began = 0.0
    counts = {"kept": 0, "resumed": 0, "new": 0}
    for job_dir in job_dirs:
        status_path = job_dir / "status.json"
        if status_path.exists() and status_path.stat().st_mtime < began:
            counts["kept"] += 1
        else:
            counts["resumed" if read_status(job_dir).get("start") == "resumed" else "new"] += 1
    return ", ".join(f"{count} {name}" for name, count in counts.items())


def planned_jobs(sweep_dir: Path) -> int | None:
    """How many jobs the sweep's command asked for (the product of its sweep overrides' lengths, from the
    ``multirun.yaml`` Hydra writes at the start); None where that cannot be read."""
    try:
        overrides = OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task
        total = 1
        for override in OverridesParser.create().parse_overrides(list(overrides)):
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return total
    except (OSError, OmegaConfBaseException, HydraException):
        return None


def parallel_jobs(launcher: DictConfig | None, cores: int) -> int:
    """How many jobs ``launcher`` (a sweep's ``hydra.launcher``) runs at once on this machine: the joblib launcher's
    ``n_jobs`` (negative counts back from the cores, as joblib's does); one for any other launcher or a single run."""
    if launcher is None or "joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = int(launcher.get("n_jobs") or 1)
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


# A core counts as busy when other processes used more than this share of it over the sample.
BUSY_SHARE = 50.0


def busy_cores(sample_s: float = 0.3) -> int:
    """How many of the cores this process may use other processes keep busy, sampled over ``sample_s`` while this
    process sleeps. Threads beside a busy process wait for each other's turn on its core (benchmarks/threads.py: a
    two-thread build ran at 4 steps/s beside a one-thread neighbour, one thread at 11, against 18 on idle cores)."""
    allowed = sorted(os.sched_getaffinity(0))
    usage = psutil.cpu_percent(interval=sample_s, percpu=True)
    return sum(1 for core in allowed if core < len(usage) and usage[core] > BUSY_SHARE)


def apply_threads(configured: int | None) -> int:
    """Set torch's CPU threads to ``configured`` (the config's ``threads``), or by default to ``OMP_NUM_THREADS``
    where set, else to this process's share of the cores it may use that no other process keeps busy at start
    (``busy_cores``), and log it with OpenMP's wait setting (``scd.OPENMP_SPIN``); returns the count. Two jobs with a thread per core each make the threads spin-wait for
    each other's cores. ``threads`` above the cores this process may use is refused, naming them."""
    if configured is None and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        # The user (or a scheduler) already chose: OpenMP's own setting wins over our default.
        threads, reason = max(1, int(os.environ["OMP_NUM_THREADS"])), "OMP_NUM_THREADS"
    elif configured is None:
        cores = len(os.sched_getaffinity(0))
        launcher = HydraConfig.get().launcher if is_multirun() else None
        jobs = parallel_jobs(launcher, cores)
        busy = busy_cores()
        threads = max(1, min(cores // jobs, cores - busy))
        reason = (f"{cores} cores for this process / {jobs} parallel jobs, {busy} kept busy by other processes at "
                  "start; set threads= to fix it (a study should: the thread count changes the numbers)")
    else:
        allowed = sorted(os.sched_getaffinity(0))
        if configured > len(allowed):
            # More threads than cores: they take turns on the cores, each spin-waiting for the others' results.
            raise ValueError(f"threads={configured} is more than the {len(allowed)} cores this process may use "
                             f"(cores {', '.join(map(str, allowed))}); set threads={len(allowed)} or fewer, or leave "
                             "it unset")
        threads, reason = configured, "threads"
    torch.set_num_threads(threads)
    wait = "OMP_WAIT_POLICY" if "OMP_WAIT_POLICY" in os.environ else "GOMP_SPINCOUNT"
    log.info("torch threads: %d (%s); OpenMP %s=%s", threads, reason, wait, os.environ.get(wait, "unset"))
    return threads


def main_task(raw: DictConfig) -> dict[str, float] | None:
    """Validate, build the run's components (``scd.components``), run, and keep a job's failure to itself: a single
    run exits non-zero with one error line, a sweep job is marked failed in its status.json and the sweep goes on. A
    command refused before it claimed a directory that holds another run leaves that run's status alone. A rerun
    sweep keeps its completed jobs and resumes its interrupted ones (``scd.rundir.sweep_resumption``)."""
    run_dir = Path(raw.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    claimed = False
    record: dict[str, Any] = {}
    try:
        with interrupt_on_signals():
            cfg = validate(raw)
            # Before any work, so that a bad component is refused before the run directory is claimed (which
            # overwrite=true empties).
            components = build_components(cfg)
            start = sweep_resumption(run_dir, raw, cfg) if is_multirun() else "new"
            if start == "kept":
                return keep_completed_job(run_dir)
            if start == "resumed":
                log.info("job %s: resuming the interrupted run in %s", job_name(), run_dir)
                # What the earlier invocation finished is reused: the rationale cache, the teacher's build checkpoint,
                # and the student's last.ckpt (which claim_run_dir keeps with ckpt_path=last).
                cfg.ckpt_path = cfg.ckpt_path or "last"
            threads = apply_threads(cfg.threads)
            record = {"start": start, "stages": list(cfg.stages), "started": now(), "provenance": provenance(threads)}
            # Only rank 0 keeps the run's status and directory: the ranks of one DDP run share it.
            if is_global_zero():
                claim_run_dir(run_dir, raw, cfg)
                claimed = True
                write_status(run_dir, "running", **record)
            metrics = run(cfg, components, raw, run_dir, record["provenance"])
    except Interrupted as err:
        end_interrupted(run_dir, raw, err, record=claimed or not holds_a_run(run_dir), details=record)
    except Exception as err:  # noqa: BLE001 - every failure is recorded before it is reported
        if is_global_zero() and (claimed or not holds_a_run(run_dir)):
            try:
                write_status(run_dir, "failed", error=f"{type(err).__name__}: {err}", **record, ended=now())
            except OSError as status_err:
                # A full disk fails this write too: report the first failure, note this one in the log.
                log.error("%s", status_err)
        if is_multirun():
            log.error("job failed: %s\n%s", err, traceback.format_exc())
            return None
        if isinstance(err, (ValueError, OSError, ImportError, KeyError, OmegaConfBaseException)):
            print(f"scd: error: {one_line(err)}", file=sys.stderr)
            sys.exit(1)
        raise
    if is_global_zero():
        write_status(run_dir, "completed", **record, ended=now())
    return metrics


def job_name() -> str:
    """The sweep job's number and overrides, as the log names it."""
    job = HydraConfig.get().job
    return f"{job.num} ({' '.join(job.override_dirname.split(',')) or 'no overrides'})"


def keep_completed_job(run_dir: Path) -> dict[str, float]:
    """A completed job of a rerun sweep: nothing is recomputed and nothing in its directory is rewritten (Hydra's
    copies of the config are put back; its log gains this job's lines). Returns its recorded metrics."""
    restore_hydra_files(run_dir)
    ended = read_status(run_dir).get("ended", "earlier")
    log.info("job %s: kept, completed %s in %s", job_name(), ended, run_dir)
    metrics_path = run_dir / "metrics.json"
    return json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}


def end_interrupted(run_dir: Path, raw: DictConfig, err: Interrupted, record: bool,
                    details: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Record the interruption (if ``record``, with the run's ``details``) and exit with status 128 + the signal's
    number; a sweep stops after this job."""
    if is_global_zero() and record:
        write_status(run_dir, "interrupted", error=str(err), **(details or {}), ended=now())
    if is_multirun():
        summarize_sweep(Path(HydraConfig.get().sweep.dir), err)
    else:
        resume = "rerun the same command to resume"
        if raw.get("ckpt_path") != "last" and "student" in raw.get("stages", ()):
            resume += " (with ckpt_path=last, the student resumes from its last checkpoint)"
        print(f"scd: error: {run_dir}: {err}; what finished is kept: {resume}", file=sys.stderr)
    sys.exit(128 + err.signum)
