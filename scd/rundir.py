"""One run per run directory.

``run_config.json`` records the config of the run a directory holds (and a copy of the files Hydra wrote to ``.hydra``
for it, which Hydra overwrites before any of our code runs: a refused command puts them back). A later invocation into the same directory must
have the same config, up to the keys that may change between the invocations of one run (``NOT_RUN_IDENTITY``: which
stages, where the files go, logging, speed); else it is refused, unless ``overwrite=true``, which first removes the
old run's outputs. The keys in ``RESUMABLE`` may change only where the student stage runs (it trains longer or
validates at other intervals, resumed with ``ckpt_path=last`` or afresh). Stages that run make the outputs of the later
stages that do not run stale: those are removed, so the directory never mixes outputs of two students or two sets of
rationales.

A sweep rerun with the same ``hydra.sweep.dir`` finds each job's directory as the last invocation left it
(``sweep_resumption``): a completed job with the same config and stages is kept untouched, an interrupted one resumes
(its student from ``last.ckpt``), and any other starts again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from scd.config import STAGES, Config
from scd.io import atomic_write_text

RECORD = "run_config.json"
NOT_RUN_IDENTITY = (
    "paths", "stages", "ckpt_path", "overwrite", "logger", "teacher.batch_size", "decoding_loop.merge_branches",
    "decoding_loop.shared_prefix", "trainer.enable_progress_bar", "trainer.enable_model_summary", "threads",
)
RESUMABLE = (
    "trainer.max_steps", "trainer.max_epochs", "trainer.val_check_interval", "trainer.log_every_n_steps",
    "student.early_stopping_patience",
)
# The key holding each config group's choice (conf/<group>/<choice>.yaml), in the defaults list's order: a change of
# choice is named as such, rather than by the first of the many keys it changes.
GROUP_CHOICE_KEYS = {"dataset.name": "dataset", "teacher.name": "teacher", "decoding.name": "decoding",
                     "training.mode": "training", "student.name": "student", "simulator.name": "simulator"}
STAGE_OUTPUTS = {"teacher": ("rationales",), "student": ("checkpoints", "student"),
                 "evaluate": ("predictions", "metrics.json")}
# What overwrite=true removes: every stage's outputs and the old run's logs and record.
RUN_OUTPUTS = (*(name for names in STAGE_OUTPUTS.values() for name in names), "csv", "wandb", RECORD)


class RunDirError(ValueError):
    """A run directory that holds another run."""


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(_flatten(value, f"{prefix}{key}."))
    return {key.removesuffix("."): value for key, value in flat.items()}


def run_identity(raw: DictConfig) -> dict[str, Any]:
    """The config as dotted keys, without the keys that may change between the invocations of one run."""
    flat = _flatten(OmegaConf.to_container(raw, resolve=True))
    return {key: value for key, value in sorted(flat.items())
            if not any(key == skip or key.startswith(f"{skip}.") for skip in NOT_RUN_IDENTITY)}


def _differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    return [key for key in sorted(recorded.keys() | current.keys()) if recorded.get(key) != current.get(key)]


def _remove(run_dir: Path, names: tuple[str, ...] | list[str]) -> None:
    for name in names:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def stale_outputs(cfg: Config) -> list[str]:
    """The outputs this invocation's stages make stale: those of the later stages it does not run, and the old
    checkpoints where the student trains afresh."""
    first = min(STAGES.index(stage) for stage in cfg.stages)
    stale = [name for stage in STAGES[first + 1 :] if stage not in cfg.stages for name in STAGE_OUTPUTS[stage]]
    if "student" in cfg.stages and cfg.ckpt_path is None:
        stale.append("checkpoints")
    return stale


def _hydra_dir(run_dir: Path) -> Path | None:
    """Where Hydra saved this command's config, if it did (not in DDP's other ranks, nor without Hydra)."""
    if not HydraConfig.initialized() or not HydraConfig.get().output_subdir:
        return None
    return run_dir / HydraConfig.get().output_subdir


def holds_a_run(run_dir: Path) -> bool:
    return (run_dir / RECORD).exists()


def _refusal(run_dir: Path, recorded: dict[str, Any], current: dict[str, Any], cfg: Config) -> str | None:
    """Why this command may not run in ``run_dir``, which holds the run ``recorded``; None if it may."""
    changed = _differences(recorded, current)
    fixed = [key for key in changed if key not in RESUMABLE]
    if fixed:
        choice = next((key for key in GROUP_CHOICE_KEYS if key in fixed), None)
        if choice is not None:
            difference = f"{GROUP_CHOICE_KEYS[choice]}: {recorded.get(choice)} there, {current.get(choice)} now"
        else:
            # A readable key first: `decoding.lam` says more than `decoding._target_`.
            key = sorted(fixed, key=lambda key: "._" in key)[0]
            difference = f"{key}: {recorded.get(key)!r} there, {current.get(key)!r} now"
        return (f"run directory {run_dir} holds another run ({difference}); use another hydra.run.dir, or "
                "overwrite=true to replace that run")
    if changed and "student" not in cfg.stages:
        key = changed[0]
        return (f"run directory {run_dir}: its student was trained with {key}={recorded.get(key)!r}, not "
                f"{current.get(key)!r}; run the student stage too (ckpt_path=last resumes it) or use another "
                "hydra.run.dir")
    return None


STATUS = "status.json"


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's ``status.json`` (empty where there is none or it cannot be read)."""
    try:
        status = json.loads((run_dir / STATUS).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return status if isinstance(status, dict) else {}


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The run ``run_dir`` holds (its ``config`` and ``hydra`` files), None where it holds none; raises RunDirError
    for a record that cannot be read."""
    record = run_dir / RECORD
    if not record.exists():
        return None
    try:
        previous = json.loads(record.read_text(encoding="utf-8"))
        if not isinstance(previous["config"], dict) or not isinstance(previous["hydra"], dict):
            raise TypeError("config and hydra must be objects")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise RunDirError(f"{record}: unreadable ({err}); overwrite=true replaces the run it belonged to") from None
    return previous


def _current_identity(raw: DictConfig) -> dict[str, Any]:
    # Through JSON, as it is recorded: values compare the same way now and when read back.
    return json.loads(json.dumps(run_identity(raw), default=str))


def sweep_resumption(run_dir: Path, raw: DictConfig, cfg: Config) -> str:
    """What a rerun sweep job does with what its directory holds: ``"kept"`` (a completed run of this exact config
    that ran at least this job's stages: nothing is recomputed), ``"resumed"`` (a run of this config that a signal or
    a kill ended: its finished stages and checkpoints are reused) or ``"new"`` (anything else, including another
    config, which ``claim_run_dir`` then refuses)."""
    try:
        previous = read_record(run_dir)
    except RunDirError:
        return "new"  # claim_run_dir reports it
    if previous is None or cfg.overwrite:
        return "new"
    if _differences(previous["config"], _current_identity(raw)):
        return "new"
    status = read_status(run_dir)
    if status.get("status") == "completed" and set(cfg.stages) <= set(status.get("stages", STAGES)):
        return "kept"
    if status.get("status") in ("interrupted", "running"):
        return "resumed"
    return "new"


def restore_hydra_files(run_dir: Path) -> None:
    """Put back the ``.hydra`` files of the run ``run_dir`` holds, which Hydra overwrote for this invocation."""
    hydra_dir, previous = _hydra_dir(run_dir), read_record(run_dir)
    if hydra_dir is None or previous is None:
        return
    for name, text in previous.get("hydra", {}).items():
        atomic_write_text(hydra_dir / name, text)


def claim_run_dir(run_dir: Path, raw: DictConfig, cfg: Config) -> None:
    """Check that ``run_dir`` holds no other run (see the module docstring), remove what this invocation makes stale,
    and record this run's config. Raises RunDirError naming the first key that differs."""
    current = _current_identity(raw)
    hydra_dir = _hydra_dir(run_dir)
    previous = None if cfg.overwrite else read_record(run_dir)
    if cfg.overwrite:
        _remove(run_dir, RUN_OUTPUTS)
    elif previous is not None:
        refusal = _refusal(run_dir, previous["config"], current, cfg)
        if refusal:
            restore_hydra_files(run_dir)
            raise RunDirError(refusal)
    _remove(run_dir, stale_outputs(cfg))
    saved = {path.name: path.read_text(encoding="utf-8") for path in sorted(hydra_dir.glob("*.yaml"))} if hydra_dir else {}
    atomic_write_text(run_dir / RECORD, json.dumps({"config": current, "hydra": saved}, indent=1, sort_keys=True) + "\n")
