"""decoding=contrast_text: log p(t | gold) − λ · log p(t | the prompt whose answer is a fixed text)."""

from __future__ import annotations

import json

import pytest
import torch

from scd.config import validate
from scd.data.example import Example
from scd.models import load_model, load_tokenizer
from scd.task import build_task
from scd.teacher.decoding import DecodingSettings, decode
from scd.teacher.generation import RationaleJob, TeacherModule
from scd.teacher.prompt import PromptTemplate
from scd.teacher.stage import run_teacher_stage
from scd.teacher.strategies import ContrastEmpty, Greedy
from scd.teacher.strategies.contrast_text import ContrastText
from tests.test_decoding import NEVER, PROMPT_SENSITIVE_NEOX

LAM = 0.5
PREFIX = "Q: Is ice cold?\nAnswer choices: yes | no\nA: The answer is yes. Ice is frozen water.\n\n"
EXAMPLES = [
    Example("a", "Is fire hot?", ("yes", "no"), 0),
    Example("b", "Which of these can fly?", ("a stone", "a sparrow", "a brick"), 1),
]


@pytest.fixture(scope="module")
def teacher():
    tokenizer = load_tokenizer("byt5")
    model = load_model("causal", tokenizer, random_init=PROMPT_SENSITIVE_NEOX, seed=0).eval()
    return model, tokenizer


def module(teacher, strategy) -> TeacherModule:
    model, tokenizer = teacher
    return TeacherModule(model, tokenizer, PromptTemplate(), PREFIX, "test", strategy,
                         DecodingSettings(max_new_tokens=10))  # fmt: skip


def jobs() -> list[RationaleJob]:
    return [RationaleJob("test", ex, (ex.answer + 1) % len(ex.choices), ex.answer) for ex in EXAMPLES]


def test_the_contrast_prompt_answers_with_the_text(teacher):
    _, tokenizer = teacher
    branches = module(teacher, ContrastText(lam=LAM, text="Unsure")).prompts(jobs())
    assert [[tokenizer.decode(ids) for ids in job] for job in branches] == [
        ["Q: Is fire hot?\nAnswer choices: yes | no\nA: The answer is yes.",
         "Q: Is fire hot?\nAnswer choices: yes | no\nA: The answer is Unsure."],
        ["Q: Which of these can fly?\nAnswer choices: a stone | a sparrow | a brick\nA: The answer is a sparrow.",
         "Q: Which of these can fly?\nAnswer choices: a stone | a sparrow | a brick\nA: The answer is Unsure."],
    ]
    assert ContrastText(lam=0.0).contrasts(jobs()[0]) == []  # lam = 0 is greedy: no contrast branch


def reference(model, prefix, branches, steps):
    """The definition, naively: full forward passes over both whole prompts at every step, one example at a time."""
    out = []
    for gold, contrast in branches:
        rows, ids = [prefix + gold, prefix + contrast], []
        for _ in range(steps):
            logp = [torch.log_softmax(model(torch.tensor([row])).logits[0, -1], -1) for row in rows]
            token = int((logp[0] - LAM * logp[1]).argmax())
            ids.append(token)
            rows = [row + [token] for row in rows]
        out.append(ids)
    return out


def test_decoding_equals_the_definition_and_differs_from_greedy_and_contrast_empty(teacher):
    model, tokenizer = teacher
    teacher_module = module(teacher, ContrastText(lam=LAM))
    branches = teacher_module.prompts(jobs())
    project = decode(model, tokenizer, teacher_module.prefix_ids, branches, ContrastText(lam=LAM),
                     DecodingSettings(max_new_tokens=10), NEVER)  # fmt: skip
    assert project == reference(model, teacher_module.prefix_ids, branches, 10)
    others = {}
    for strategy in (Greedy(), ContrastEmpty(lam=LAM)):
        other = module(teacher, strategy)
        others[type(strategy)] = decode(model, tokenizer, other.prefix_ids, other.prompts(jobs()), strategy,
                                        DecodingSettings(max_new_tokens=10), NEVER)  # fmt: skip
    assert all(project != other for other in others.values())


def test_config_builds_it_and_refuses_an_empty_text(make_config):
    built = validate(make_config("decoding=contrast_text")).decoding
    assert built == ContrastText(lam=LAM, plausibility=0.0, text="I don't know", name="contrast_text")
    assert validate(make_config("decoding=contrast_text", "decoding.text=Unsure")).decoding.text == "Unsure"
    with pytest.raises(ValueError) as error:
        validate(make_config("decoding=contrast_text", "decoding.text=' '"))
    assert str(error.value) == ("decoding.text must be a non-empty string (decoding=contrast_empty contrasts with no "
                                "answer), got ' '")


def test_the_teacher_stage_writes_its_rationales(make_config, tmp_path):
    texts = {}
    for option in ("contrast_text", "contrast_empty"):
        cfg = validate(make_config(f"decoding={option}", run=option))
        task = build_task(cfg)
        out = run_teacher_stage(cfg, task, task.splits(), tmp_path / option)
        records = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
        assert {r["decoding"] for r in records} == {option}
        texts[option] = [r["rationale"] for r in records]
    assert texts["contrast_text"] != texts["contrast_empty"]
