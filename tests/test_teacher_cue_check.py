"""experiments/toyworld/teacher_cue_check.py: the checker's labels of training rationales, split by the wording cue."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import yaml

from scd.data.records import RationaleRecord, write_rationales
from scd.toyworld import grammar
from scd.toyworld.world import WorldConfig, load_toyworld
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("teacher_cue_check",
                                               ROOT / "experiments" / "toyworld" / "teacher_cue_check.py")  # fmt: skip
cue_check = importlib.util.module_from_spec(_spec)
sys.modules["teacher_cue_check"] = cue_check
_spec.loader.exec_module(cue_check)

WORLD = {"n_categories": 2, "n_mc_choices": 2, "entities_per_category": 4, "n_properties": 8, "n_train": 40, "n_dev": 4, "n_test": 8,
         "shortcut_strength": 0.7}  # fmt: skip


def test_rationales_that_follow_the_cue_show_as_a_cue_difference(tmp_path):
    """A teacher that writes the true chain where the cue agrees and a false one where it opposes: supporting 1 vs
    0, contradicting 0 vs 1, with degenerate intervals; a cue-blind teacher shows no difference."""
    world, splits = load_toyworld(WorldConfig(**WORLD))
    questions = [e for e in splits["train"] if e.meta["kind"] == "yesno"]
    for name, follows_cue in (("follows", True), ("blind", False)):
        run = tmp_path / name
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"dataset": {"task": {"world": WORLD}}}))
        records = []
        for e in questions:
            truth = world.can(e.meta["entity"], e.meta["property"])
            wrong = follows_cue and not e.meta["cue_aligned"]
            rationale = grammar.chain(e.meta["entity"], e.meta["category"], e.meta["property"], truth != wrong,
                                      world.rationale_format)  # fmt: skip
            records.append(RationaleRecord(e.id, e.question, list(e.choices), e.answer, 1 - e.answer, e.answer,
                                           rationale, "greedy", e.meta))  # fmt: skip
        (run / "rationales").mkdir()
        write_rationales(run / "rationales" / "train.jsonl", records)
        rows = cue_check.training_rows(run)
        assert len(rows) == len(questions) and {r["cue_opposes"] for r in rows} == {0, 1}
        supporting, contradicting = (cue_check.cue_split(rows, label) for label in cue_check.LABELS)
        if follows_cue:
            assert (supporting["agrees"], supporting["opposes"], supporting["low"], supporting["high"]) == (1, 0, -1, -1)
            assert (contradicting["agrees"], contradicting["opposes"]) == (0, 1)
        else:
            assert supporting["difference"] == contradicting["difference"] == 0
            assert supporting["n_opposes"] == pytest.approx(0.3 * len(questions), abs=2)
