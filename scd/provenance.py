"""What produced a run: the code (git commit and whether the tree had changes), the library versions, and the machine
(threads, CPU model, GPU), recorded in ``status.json``, the W&B run config and the sweep report.

Float results differ between CPU models and thread counts as they do between commits, so a comparison whose cells
differ in any of these fields says so (``differing_fields``).
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

# The fields that must agree across the cells of one comparison (the times and dirtiness details are not among them).
COMPARED_FIELDS = ("git_commit", "git_dirty", "scd", "torch", "transformers", "pytorch_lightning", "threads",
                   "cpu", "gpu")  # fmt: skip
LIBRARIES = ("scd", "torch", "transformers", "pytorch_lightning")
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The commit scd's source is checked out at, and whether tracked files differ from it (untracked files aside:
    outputs and caches live in the tree). ``"not a git checkout"`` where there is none (an installed wheel) or no git."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": "not a git checkout", "git_dirty": None}
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(changed)}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def provenance(threads: int) -> dict[str, Any]:
    """Code, libraries and machine of this process, for a run using ``threads`` CPU threads."""
    return {
        **git_state(),
        **{library: _version(library.replace("_", "-")) for library in LIBRARIES},
        "threads": threads,
        "cpu": cpu_model(),
        "gpu": gpu_name(),
    }


def differing_fields(cells: Mapping[str, Mapping[str, Any] | None], noun: str = "cells") -> list[str]:
    """One line per compared field whose value differs between ``cells`` (name -> provenance; None: not recorded),
    naming the cells of each value (called ``noun`` in the line); no line where every cell agrees."""
    lines = []
    recorded = {name: record for name, record in cells.items() if record}
    unrecorded = sorted(name for name, record in cells.items() if not record)
    if unrecorded and recorded:
        lines.append(f"no provenance recorded for {_names(unrecorded)}")
    for field in COMPARED_FIELDS:
        values: dict[str, list[str]] = {}
        for name, record in recorded.items():
            values.setdefault(repr(record.get(field)), []).append(name)
        if len(values) > 1:
            parts = "; ".join(f"{value}: {_names(names)}" for value, names in sorted(values.items()))
            lines.append(f"{noun} ran with different {field} ({parts})")
    return lines


def _names(names: Sequence[str], shown: int = 4) -> str:
    names = sorted(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
