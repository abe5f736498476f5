"""decoding=contrast_all_wrong: log p(t | gold) − λ · mean over every other choice of log p(t | that choice)."""

from __future__ import annotations

import torch

from scd.data.example import Example
from scd.teacher.decoding import DecodingSettings, decode
from scd.teacher.jobs import RationaleJob
from scd.teacher.strategies import ContrastWrong, Greedy
from scd.teacher.strategies.contrast_all_wrong import ContrastAllWrong
from tests.helpers import NEVER, branches_reference, stage_rationales, teacher, teacher_module  # noqa: F401 (a fixture)

LAM = 0.5
YES_NO = [
    Example("a", "Is fire hot?", ("yes", "no"), 0),
    Example("b", "Can a stone sing?", ("yes", "no"), 1),
    Example("c", "Do fish swim in the sea, usually?", ("yes", "no"), 0),
]
THREE = [
    Example("d", "Which of these can fly?", ("a stone", "a sparrow", "a brick"), 1),
    Example("e", "Which is cold?", ("ice", "fire", "lava"), 0),
]


def jobs(examples):
    """A gold job per example (perturbed: the next choice) and a counterfactual one for the first."""
    gold = [RationaleJob("test", ex, (ex.answer + 1) % len(ex.choices), ex.answer) for ex in examples]
    wrong = (examples[0].answer + 1) % len(examples[0].choices)
    return gold + [RationaleJob("test_counterfactual", examples[0], wrong, wrong)]


def rationales(teacher, strategy, batch):
    return [record.rationale for _, record in teacher_module(teacher, strategy).predict_step(batch)]


def test_contrasts_are_every_choice_but_the_rationales_own():
    question = THREE[0]
    strategy = ContrastAllWrong(lam=LAM)
    assert strategy.contrasts(RationaleJob("test", question, 2, 1)) == [0, 2]
    assert strategy.contrasts(RationaleJob("test_counterfactual", question, 2, 2)) == [0, 1]
    assert ContrastAllWrong(lam=0.0).contrasts(RationaleJob("test", question, 2, 1)) == []


def test_scores_average_each_rows_own_branches():
    gen = torch.Generator().manual_seed(0)
    gold = torch.randn(2, 5, generator=gen).log_softmax(-1)
    contrast = torch.randn(2, 2, 5, generator=gen).log_softmax(-1)
    present = torch.tensor([[True, True], [True, False]])
    scores = ContrastAllWrong(lam=LAM).scores(gold, contrast, present)
    assert torch.allclose(scores[0], gold[0] - LAM * (contrast[0, 0] + contrast[0, 1]) / 2)
    assert torch.allclose(scores[1], gold[1] - LAM * contrast[1, 0])  # the padded branch does not count


def test_two_choice_questions_give_exactly_the_tokens_of_contrast_wrong(teacher):
    batch = jobs(YES_NO)
    all_wrong = rationales(teacher, ContrastAllWrong(lam=LAM), batch)
    assert all_wrong == rationales(teacher, ContrastWrong(lam=LAM), batch)
    # Not vacuous: the contrast changes what greedy writes.
    assert all(a != g for a, g in zip(all_wrong, rationales(teacher, Greedy(), batch)))


def mixed_batch(teacher):
    built = teacher_module(teacher, ContrastAllWrong(lam=LAM))
    branches = built.prompts(jobs(THREE + YES_NO))
    assert sorted({len(b) for b in branches}) == [2, 3]  # two- and three-choice questions share the batch
    model, tokenizer = teacher
    project = decode(model, tokenizer, built.prefix_ids, branches, ContrastAllWrong(lam=LAM),
                     DecodingSettings(max_new_tokens=10), NEVER)
    return project, branches_reference(model, built.prefix_ids, branches, LAM, 10)


def test_a_mixed_batch_equals_the_definition(teacher):
    project, expected = mixed_batch(teacher)
    assert project == expected


def test_the_comparison_fails_when_only_one_wrong_choice_is_contrasted(teacher, monkeypatch):
    monkeypatch.setattr(ContrastAllWrong, "scores", ContrastWrong.scores)
    project, expected = mixed_batch(teacher)
    assert project != expected


def test_config_option_on_true_false_claims_writes_contrast_wrongs_rationales(make_config, tmp_path):
    assert stage_rationales(make_config, tmp_path, "contrast_all_wrong") == stage_rationales(
        make_config, tmp_path, "contrast_wrong")
