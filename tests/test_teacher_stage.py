"""The teacher stage: output files, resume after a kill, the rationale cache, the context check."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

import scd.teacher.stage as stage
from scd.data.records import RATIONALE_SPLITS
from scd.task import build_task
from scd.teacher.stage import run_teacher_stage, teacher_key
from scd.teacher.strategies import Contrast, Contrastive
from scd.teacher.store import COMPLETE_MARKER
from tests.conftest import validated


def generate(cfg_dict, run_dir: Path):
    """The run's config and decoding strategy, the splits, and the rationale directory the teacher stage wrote."""
    cfg, components = validated(cfg_dict)
    task = build_task(cfg, components.decoding)
    splits = task.splits()
    return cfg, components.decoding, splits, run_teacher_stage(cfg, components.decoding, task, splits, run_dir)


def read_split(directory: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (directory / f"{split}.jsonl").read_text().splitlines()]


def test_writes_every_split_with_gold_and_perturbed_rationales(make_config, tmp_path):
    _, _, splits, out = generate(make_config("decoding=contrast_wrong"), tmp_path / "run")
    for split in RATIONALE_SPLITS:
        records = read_split(out, split)
        source = splits[split.removesuffix("_counterfactual")]
        assert [r["id"] for r in records] == [ex.id for ex in source]
        for record in records:
            assert record["decoding"] == "contrast_wrong"
            assert record["perturbed_answer"] != record["answer"]
            target = record["perturbed_answer"] if split.endswith("_counterfactual") else record["answer"]
            assert record["rationale_for"] == target


def test_resume_after_a_kill_gives_the_same_files(make_config, tmp_path):
    cfg, decoding, splits, out = generate(make_config(), tmp_path / "first")
    expected = {split: (out / f"{split}.jsonl").read_text() for split in RATIONALE_SPLITS}
    store = Path(cfg.paths.cache_dir) / "rationales" / teacher_key(cfg, decoding, splits)
    # Recreate what a kill -9 mid-run leaves: no marker, no merged files, a shard cut inside its 6th line.
    shard = store / "shard-rank0.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    shard.write_text("".join(lines[:5]) + lines[5][:20])
    for path in [store / COMPLETE_MARKER, *(store / f"{s}.jsonl" for s in RATIONALE_SPLITS)]:
        path.unlink()
    *_, resumed = generate(make_config(run="second"), tmp_path / "second")
    assert {split: (resumed / f"{split}.jsonl").read_text() for split in RATIONALE_SPLITS} == expected
    assert len(shard.read_text().splitlines()) == len(lines)


def test_same_teacher_config_reuses_rationales(make_config, tmp_path, monkeypatch):
    *_, first = generate(make_config("training=standard"), tmp_path / "a")

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher was loaded although its rationales are cached")

    monkeypatch.setattr(stage, "load_teacher_module", no_teacher)
    *_, second = generate(make_config("training=counterfactual", run="b"), tmp_path / "b")
    assert (first / "train.jsonl").read_text() == (second / "train.jsonl").read_text()
    # A different decoding is a different teacher config: it must generate.
    with pytest.raises(AssertionError, match="cached"):
        generate(make_config("decoding=greedy", run="c"), tmp_path / "c")


def test_cache_key_follows_what_decides_the_rationales(make_config):
    """The key holds the strategy's class and settings (defaults included) and the stop rule, not the loop's speed
    knobs; a nested strategy (decoding=human's counterfactual) enters by class too."""

    def key(*overrides: str) -> str:
        cfg, components = validated(make_config(*overrides))
        return teacher_key(cfg, components.decoding, build_task(cfg, components.decoding).splits())

    base = key("decoding=contrast_wrong")
    assert key("decoding=contrast_wrong", "decoding_loop.merge_branches=false", "decoding_loop.shared_prefix=false") == base
    assert key("decoding=contrast_wrong", "~decoding.plausibility") == base  # the class's default: the same setting
    assert key("decoding=contrast_wrong", "decoding.lam=0.6") != base
    assert key("decoding=contrast_wrong", "decoding_loop.stop_rule=teacher") != base
    human = ["decoding=human", "training=standard"]
    wrong = key(*human, "decoding.counterfactual={_target_:scd.teacher.strategies.ContrastWrong,lam:0.5}")
    empty = key(*human, "decoding.counterfactual={_target_:scd.teacher.strategies.ContrastEmpty,lam:0.5}")
    assert len({key(*human), wrong, empty}) == 3


@dataclass(frozen=True)
class ContrastFirstTrainQuestion(Contrastive):
    """A strategy that needs the splits: it contrasts with the first training question, which ``setup`` finds."""

    question: str = ""

    def setup(self, task, splits):
        return replace(self, question=splits["train"][0].question)

    def contrast_answers(self, job) -> list[Contrast]:
        return [self.question]


def test_the_setup_hook_gives_the_strategy_that_decodes(make_config, tmp_path, monkeypatch):
    decoded_with = []
    load_teacher_module = stage.load_teacher_module
    monkeypatch.setattr(stage, "load_teacher_module",
                        lambda cfg, splits, teacher_dir, strategy, name: decoded_with.append(strategy)
                        or load_teacher_module(cfg, splits, teacher_dir, strategy, name))  # fmt: skip
    _, built, splits, _ = generate(make_config(f"decoding._target_={__name__}.ContrastFirstTrainQuestion"),
                                   tmp_path / "run")  # fmt: skip
    assert built.question == ""  # the configured strategy is left as built
    assert decoded_with == [replace(built, question=splits["train"][0].question)]


def test_prompt_longer_than_the_context_is_refused(make_config, tmp_path):
    with pytest.raises(ValueError, match="prompt longer than the teacher's context"):
        generate(make_config("teacher.max_context=64"), tmp_path / "run")


@pytest.mark.parametrize("device_map", ["cpu", None])
def test_a_teacher_placed_by_device_map_is_not_moved_by_the_predict_loop(make_config, tmp_path, monkeypatch, device_map):
    moves = []
    load = stage.load_teacher_model

    def load_and_watch(teacher, teacher_dir):
        model, tokenizer = load(teacher, teacher_dir)
        # Lightning moves a module by applying .to() to each registered submodule: record any that reaches the model.
        apply = model._apply
        model._apply = lambda fn, *args, **kwargs: (moves.append(fn), apply(fn, *args, **kwargs))[1]
        return model, tokenizer

    monkeypatch.setattr(stage, "load_teacher_model", load_and_watch)
    override = f"teacher.device_map={device_map}" if device_map else "teacher.device_map=null"
    _, _, splits, out = generate(make_config(override), tmp_path / "run")
    assert len(read_split(out, "test")) == len(splits["test"])
    # Without device_map Lightning owns the placement and does move it (to the CPU here): the probe works.
    assert (moves == []) == (device_map is not None)


def test_placeholder_text_in_the_data_does_not_cut_the_prompt():
    from scd.teacher.prompt import PromptTemplate

    prompt = PromptTemplate()
    question = "Is '{rationale}' or {answer} a {choices} placeholder, {0}?"
    gold, wrong = (prompt.query(question, ["yes", "no"], answer) for answer in ("yes", "no"))
    assert gold == f"Q: {question}\nAnswer choices: yes | no\nA: The answer is yes."
    assert wrong.endswith("The answer is no.") and gold != wrong
    demonstration = prompt.render(question, ["yes", "no"], "yes", "Because {rationale}.")
    assert demonstration == f"{gold} Because {{rationale}}."


def test_template_needs_exactly_one_rationale_slot_at_its_end():
    from scd.teacher.prompt import PromptTemplate

    for template in ("Q: {question} {rationale} A: {answer}", "{rationale} Q: {question} A: {answer} {rationale}"):
        with pytest.raises(ValueError, match="teacher.template must end with"):
            PromptTemplate(template)


def test_a_question_longer_than_max_prompt_tokens_is_named_before_decoding(make_config, tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoding started")

    monkeypatch.setattr(stage.pl.Trainer, "predict", no_decoding)
    with pytest.raises(ValueError, match=r"question too long for the teacher: test example 'dev_0' has \d+ tokens after "
                                         r"the demonstrations > teacher.max_prompt_tokens=20; shorten or drop it"):
        generate(make_config("teacher.max_prompt_tokens=20"), tmp_path / "run")


def test_mostly_empty_rationales_are_warned_about_naming_the_setting(make_config, tmp_path, caplog):
    # The case reported: contrast_empty with λ = 1 ends every rationale of the smoke run (36, six splits of 8 and 4) at once.
    with caplog.at_level("WARNING", logger="scd.teacher.generation"):
        *_, out = generate(make_config("decoding=contrast_empty", "decoding.lam=1"), tmp_path / "run")
    assert all(record["rationale"] == "" for record in read_split(out, "train"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "36 of 36 rationales came out empty under decoding=contrast_empty" in warnings[0]
    assert "Lower decoding.lam or set decoding.plausibility=0.1" in warnings[0]


def test_no_warning_when_rationales_are_written(make_config, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="scd.teacher.generation"):
        *_, out = generate(make_config("decoding=contrast_wrong"), tmp_path / "run")
    assert any(record["rationale"] for record in read_split(out, "train"))
    assert not [r for r in caplog.records if "came out empty" in r.getMessage()]
