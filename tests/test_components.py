"""The run's components (the decoding strategy, the objective, the optimizer, its schedule, the logger) are built at
the start of a run, not by the schema: ``validate`` leaves them as config, the CLI builds each once before any work,
logs its class, and hands them to the run."""

from __future__ import annotations

import ast
import logging

import pytest

import scd.cli as cli
from scd.components import Components, build_components
from scd.config import validate
from scd.student.objectives import Counterfactual
from scd.teacher.strategies import ContrastWrong
from tests.conftest import ROOT

COMPONENTS = ("decoding", "training", "optimizer", "lr_schedule", "logger")


def test_validate_leaves_the_components_as_config(make_config, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("the schema built a component")

    monkeypatch.setattr("hydra.utils.instantiate", no_build)
    monkeypatch.setattr("scd.components.instantiate", no_build)
    # A key no strategy takes passes the schema: the builder refuses it (test_decoding.py), not validate.
    cfg = validate(make_config("+decoding.lamda=0.5", "logger=csv"))
    assert {key: type(getattr(cfg, key)) for key in COMPONENTS} == dict.fromkeys(COMPONENTS, dict)
    assert cfg.decoding["_target_"] == "scd.teacher.strategies.ContrastWrong"


def test_the_schema_module_can_build_nothing():
    """scd/config.py imports no instantiating function: building a component there again fails this test."""
    tree = ast.parse((ROOT / "scd" / "config.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}  # fmt: skip
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"instantiate", "call", "get_class", "get_method", "importlib", "scd.components"}
    assert "hydra.utils" not in modules and "scd.components" not in modules


def test_a_run_logs_each_component_and_gets_them_built(make_config, monkeypatch, caplog):
    handed = []
    monkeypatch.setattr(cli, "run", lambda cfg, components, raw, run_dir, provenance: handed.append(components) or {})
    with caplog.at_level(logging.INFO, logger="scd.components"):
        assert cli.main_task(make_config("logger=csv")) == {}
    assert [message for message in caplog.messages if message.startswith("Instantiating")] == [
        "Instantiating decoding <scd.teacher.strategies.ContrastWrong>",
        "Instantiating training <scd.student.objectives.Counterfactual>",
        "Instantiating optimizer <torch.optim.AdamW>",
        "Instantiating lr_schedule <transformers.get_linear_schedule_with_warmup>",
        "Instantiating logger <scd.loggers.csv_logger>",
    ]
    [components] = handed
    assert type(components) is Components
    assert components.decoding == ContrastWrong(lam=0.5, plausibility=0.0, name="contrast_wrong")
    assert type(components.training) is Counterfactual and components.training.alpha == 0.5
    assert components.optimizer.keywords["lr"] == 1e-3 and components.logger is not None  # student=tiny's lr


def test_logger_none_builds_no_logger(make_config, caplog):
    with caplog.at_level(logging.INFO, logger="scd.components"):
        components = build_components(validate(make_config("logger=none")))
    assert components.logger is None
    assert not any("logger" in message for message in caplog.messages)


def test_a_bad_component_is_refused_before_the_run_directory_is_claimed(make_config, monkeypatch, capsys):
    """overwrite=true empties the run directory when it is claimed: a bad component must stop the run before."""

    def claimed(*args, **kwargs):
        raise AssertionError("the run directory was claimed")

    monkeypatch.setattr(cli, "claim_run_dir", claimed)
    with pytest.raises(SystemExit) as exit_info:
        cli.main_task(make_config("+decoding.lamda=0.5", "overwrite=true"))
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "scd: error: decoding: unknown key 'lamda' for scd.teacher.strategies.ContrastWrong; known: lam, "
        "plausibility, name; did you mean decoding.lam?")
