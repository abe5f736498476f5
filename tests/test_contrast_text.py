"""decoding=contrast_text: log p(t | gold) − λ · log p(t | the prompt whose answer is a fixed text)."""

from __future__ import annotations

import pytest

from scd.data.example import Example
from scd.teacher.decoding import DecodingSettings, decode
from scd.teacher.jobs import RationaleJob
from scd.teacher.strategies import ContrastEmpty, Greedy
from scd.teacher.strategies.contrast_text import ContrastText
from tests.conftest import validated
from tests.helpers import NEVER, branches_reference, stage_rationales, teacher, teacher_module  # noqa: F401 (a fixture)

LAM = 0.5
EXAMPLES = [
    Example("a", "Is fire hot?", ("yes", "no"), 0),
    Example("b", "Which of these can fly?", ("a stone", "a sparrow", "a brick"), 1),
]


def jobs() -> list[RationaleJob]:
    return [RationaleJob("test", ex, (ex.answer + 1) % len(ex.choices), ex.answer) for ex in EXAMPLES]


def test_the_contrast_prompt_answers_with_the_text(teacher):
    _, tokenizer = teacher
    branches = teacher_module(teacher, ContrastText(lam=LAM, text="Unsure")).prompts(jobs())
    assert [[tokenizer.decode(ids) for ids in job] for job in branches] == [
        ["Q: Is fire hot?\nAnswer choices: yes | no\nA: The answer is yes.",
         "Q: Is fire hot?\nAnswer choices: yes | no\nA: The answer is Unsure."],
        ["Q: Which of these can fly?\nAnswer choices: a stone | a sparrow | a brick\nA: The answer is a sparrow.",
         "Q: Which of these can fly?\nAnswer choices: a stone | a sparrow | a brick\nA: The answer is Unsure."],
    ]
    assert ContrastText(lam=0.0).contrasts(jobs()[0]) == []  # lam = 0 is greedy: no contrast branch


def test_decoding_equals_the_definition_and_differs_from_greedy_and_contrast_empty(teacher):
    model, tokenizer = teacher
    built = teacher_module(teacher, ContrastText(lam=LAM))
    branches = built.prompts(jobs())
    project = decode(model, tokenizer, built.prefix_ids, branches, ContrastText(lam=LAM),
                     DecodingSettings(max_new_tokens=10), NEVER)  # fmt: skip
    # One contrast branch: the reference's mean over contrasts is that branch.
    assert project == branches_reference(model, built.prefix_ids, branches, LAM, 10)
    for strategy in (Greedy(), ContrastEmpty(lam=LAM)):
        other = teacher_module(teacher, strategy)
        assert project != decode(model, tokenizer, other.prefix_ids, other.prompts(jobs()), strategy,
                                 DecodingSettings(max_new_tokens=10), NEVER)  # fmt: skip


def test_config_builds_it_and_refuses_an_empty_text(make_config):
    built = validated(make_config("decoding=contrast_text"))[1].decoding
    assert built == ContrastText(lam=LAM, plausibility=0.0, text="I don't know", name="contrast_text")
    assert validated(make_config("decoding=contrast_text", "decoding.text=Unsure"))[1].decoding.text == "Unsure"
    with pytest.raises(ValueError) as error:
        validated(make_config("decoding=contrast_text", "decoding.text=' '"))
    assert str(error.value) == ("decoding.text must be a non-empty string (decoding=contrast_empty contrasts with no "
                                "answer), got ' '")


def test_the_teacher_stage_writes_its_rationales(make_config, tmp_path):
    assert stage_rationales(make_config, tmp_path, "contrast_text") != stage_rationales(
        make_config, tmp_path, "contrast_empty")
