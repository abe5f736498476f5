"""The root defaults are task-neutral: a data set picks its own teacher, student and simulator where it has them
(dataset=toyworld), and a choice on the command line wins over the data set's."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import CONF


def choices(*overrides: str) -> dict[str, str]:
    """The option Hydra chose for each config group under ``overrides``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    return dict(cfg.hydra.runtime.choices)


MODELS = ("teacher", "student", "simulator")


def test_python_run_py_is_the_toyworld_run():
    picked = choices()
    assert {group: picked[group] for group in ("dataset", *MODELS)} == {
        "dataset": "toyworld", "teacher": "toyworld", "student": "toyworld", "simulator": "toyworld"}
    assert (picked["decoding"], picked["training"], picked["optimizer"]) == (
        "contrast_wrong", "counterfactual", "adamw")


@pytest.mark.parametrize("dataset", ["creak", "cose", "commonsenseqa", "strategyqa", "qasc"])
def test_another_data_set_runs_on_the_task_neutral_models(dataset: str):
    picked = choices(f"dataset={dataset}")
    assert {group: picked[group] for group in MODELS} == {
        "teacher": "gpt_neox_20b", "student": "t5_large", "simulator": "t5_base"}


def test_a_choice_on_the_command_line_wins_over_the_data_sets():
    picked = choices("teacher=tiny", "simulator=t5_small")
    assert (picked["dataset"], picked["teacher"], picked["student"], picked["simulator"]) == (
        "toyworld", "tiny", "toyworld", "t5_small")
    picked = choices("dataset=creak", "student=t5_base")
    assert (picked["teacher"], picked["student"]) == ("gpt_neox_20b", "t5_base")


@pytest.mark.parametrize(("overrides", "expected"), [
    (["experiment=smoke"], ("smoke", "tiny", "tiny", "tiny")),
    (["experiment=toyworld_comparison"], ("toyworld", "toyworld", "toyworld", "toyworld")),
    # A preset's choices win over the data set's too, as they did when the root defaults named ToyWorld's models.
    (["experiment=smoke", "dataset=toyworld"], ("toyworld", "tiny", "tiny", "tiny")),
    (["experiment=smoke", "teacher=toyworld"], ("smoke", "toyworld", "tiny", "tiny")),
    (["arm=icl_teacher"], ("toyworld", "toyworld", "icl_teacher", "toyworld")),
])
def test_presets_keep_their_choices(overrides: list[str], expected: tuple[str, ...]):
    picked = choices(*overrides)
    assert tuple(picked[group] for group in ("dataset", *MODELS)) == expected


def test_the_root_defaults_name_no_task_model():
    root = (Path(CONF) / "config.yaml").read_text()
    assert "teacher: toyworld" not in root and "student: toyworld" not in root and "simulator: toyworld" not in root
