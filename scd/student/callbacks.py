"""The student Trainer's callbacks (``conf/callbacks/``): built in order from their ``_target_`` entries.

Two are scd's own: a checkpoint callback whose saved state names files relative to the run's ``checkpoints/``, so a
moved run directory resumes, and a progress bar that counts steps out of the total (``scd.progress``, the progress
reporting every loop of a run shares).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import pytorch_lightning as pl
from hydra.utils import get_class
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar

from scd.components import instantiate_component

CHECKPOINT_DIR = "checkpoints"


def with_monitor(configs: dict[str, Any], monitor: str) -> dict[str, Any]:
    """The entries, each whose class takes a ``monitor`` and that leaves it null or out given ``monitor`` (the
    objective's selection term)."""
    return {name: {**node, "monitor": monitor} if node is not None and node.get("monitor") is None
            and _takes_monitor(node) else node for name, node in configs.items()}  # fmt: skip


def _takes_monitor(node: dict[str, Any]) -> bool:
    try:
        return "monitor" in inspect.signature(get_class(node["_target_"])).parameters
    except (ImportError, AttributeError, KeyError, TypeError, ValueError):  # instantiate_component reports it
        return False


def build_callbacks(configs: dict[str, Any], *, progress_bar: bool, monitor: str) -> list[pl.Callback]:
    """Instantiate each named entry (null entries are dropped), with ``monitor`` where one leaves it out
    (``with_monitor``); without ``progress_bar`` (the Trainer's ``enable_progress_bar``) progress bars are dropped
    too, as Lightning refuses one it is told not to show."""
    callbacks = [instantiate_component(f"callbacks.{name}", node)
                 for name, node in with_monitor(configs, monitor).items() if node is not None]  # fmt: skip
    return [c for c in callbacks if progress_bar or not isinstance(c, ProgressBar)]


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` writing to ``<run dir>/checkpoints`` (the Trainer's ``default_root_dir``) unless given a
    ``dirpath``. Its state in each checkpoint names the best, last and top-k files relative to that directory, and
    they are read back relative to the directory in use, so a run directory moved elsewhere resumes from, and exports,
    its own files."""

    PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, CHECKPOINT_DIR))
        super().setup(trainer, pl_module, stage)

    def _relative(self, path: str) -> str:
        return os.path.relpath(path, self.dirpath) if path else path

    def _resolved(self, path: str) -> str:
        return os.path.join(self.dirpath, path) if path else path

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        for key in self.PATH_KEYS:
            state[key] = self._relative(state[key])
        state["best_k_models"] = {self._relative(path): score for path, score in state["best_k_models"].items()}
        state["dirpath"] = None  # where the files are now is where they are read from
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        if state.get("dirpath") is None:
            for key in self.PATH_KEYS:
                state[key] = self._resolved(state.get(key, ""))
            state["best_k_models"] = {self._resolved(p): score for p, score in state.get("best_k_models", {}).items()}
            state["dirpath"] = self.dirpath
        super().load_state_dict(state)
