"""The run's components: the objects that the ``decoding``, ``training``, ``optimizer``, ``lr_schedule`` and ``logger``
groups name with ``_target_``. ``build_components`` builds each once, at the start of a run and before any of its work,
so that a bad setting is one error line naming its key; the run then hands each to the stage that uses it. The schema
(``scd.config``) keeps them as config."""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from scd.config import Config

if TYPE_CHECKING:
    from scd.loggers import LoggerFactory
    from scd.student.objectives import Objective
    from scd.teacher.strategies import DecodingStrategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Components:
    decoding: DecodingStrategy
    training: Objective
    # An optimizer class with its settings bound, given the parameters; a schedule given the optimizer and its steps.
    optimizer: Callable[..., torch.optim.Optimizer]
    lr_schedule: Callable[..., Any]
    # None: no logger (logger=none).
    logger: LoggerFactory | None


def build_components(cfg: Config) -> Components:
    """Build the run's components from its validated config, logging each one's class; raises ValueError naming the
    key of a bad one, or a decoding that does not make the rationales the objective trains on."""

    def build(key: str, node: dict[str, Any], prefix_errors: bool = False) -> Any:
        log.info("Instantiating %s <%s>", key, node.get("_target_") if isinstance(node, dict) else node)
        return instantiate_component(key, node, prefix_errors)

    components = Components(
        decoding=build("decoding", cfg.decoding, prefix_errors=True),
        training=build("training", cfg.training),
        optimizer=build("optimizer", cfg.optimizer),
        lr_schedule=build("lr_schedule", cfg.lr_schedule),
        logger=build("logger", cfg.logger) if cfg.logger is not None else None,
    )
    check_optimization(components.optimizer, components.lr_schedule)
    check_rationale_splits(components.decoding, components.training)
    return components


def instantiate_component(key: str, node: dict[str, Any], prefix_errors: bool = False) -> Any:
    """Build the object that config ``key`` names with ``_target_``. An unknown target or argument is one ValueError
    naming the key. The class's own checks raise theirs unchanged, or, with ``prefix_errors`` (classes whose errors
    start with the argument's name, as the decoding strategies' do), prefixed with ``key.``."""
    if not isinstance(node, dict) or "_target_" not in node:
        raise ValueError(f"{key} must name its class with _target_, got {node!r}")
    module, _, name = node["_target_"].rpartition(".")
    try:
        target = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{key}._target_: cannot import {node['_target_']!r} ({err})") from None
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):  # builtins such as dict have no signature to check the arguments against
        raise ValueError(f"{key}._target_: {node['_target_']} has no signature to check its arguments against; "
                         "name a Python class") from None
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        for argument in node:
            if not argument.startswith("_") and argument not in parameters:
                close = difflib.get_close_matches(argument, list(parameters), n=1)
                hint = f"; did you mean {key}.{close[0]}?" if close else ""
                raise ValueError(f"{key}: unknown key {argument!r} for {node['_target_']}; known: "
                                 f"{', '.join(parameters) or 'none'}{hint}")  # fmt: skip
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError):
            raise ValueError(f"{key}.{err.__cause__}") if prefix_errors else err.__cause__ from None
        raise ValueError(f"{key}: {err.__cause__ or err}") from err


def check_optimization(optimizer: Any, lr_schedule: Any) -> None:
    """Build the optimizer and its schedule over a stand-in parameter, so that their own checks (a negative learning
    rate, say) run at start rather than when the student stage begins."""
    try:
        stand_in = optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as err:
        raise ValueError(f"optimizer: {err}") from None
    try:
        lr_schedule(stand_in, num_training_steps=1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"lr_schedule: {err}") from None


def check_rationale_splits(decoding: DecodingStrategy, training: Objective) -> None:
    """Refuse an objective that trains on rationale splits the decoding does not make."""
    missing = [split for split in training.rationale_splits if split not in decoding.rationale_splits]
    if missing:
        raise ValueError(
            f"training={training.mode} trains on rationales in {', '.join(missing)}, which "
            f"decoding={decoding.name} does not make: choose a decoding that makes them (decoding=human makes "
            "the rationales for perturbed answers, which data sets do not annotate, with decoding.counterfactual, a "
            "strategy that decodes them with the teacher, e.g. "
            "'decoding.counterfactual={_target_:scd.teacher.strategies.ContrastWrong,lam:0.5}'), or a training "
            "objective that does not read them, e.g. training=standard"
        )
