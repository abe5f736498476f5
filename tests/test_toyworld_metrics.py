"""ToyWorld's exact run metrics on crafted rationales and predictions, with values worked out by hand."""

from __future__ import annotations

import pytest

from scd.data.records import RationaleRecord, write_rationales
from scd.toyworld import grammar
from scd.toyworld.metrics import prediction_metrics, student_metrics, teacher_chain_metrics, teacher_metrics
from scd.toyworld.world import WorldConfig, load_toyworld


@pytest.fixture(scope="module")
def toy():
    world, splits = load_toyworld(WorldConfig(n_categories=4, entities_per_category=4, n_properties=8, n_train=60, n_dev=8, n_test=30, mc_fraction=0.0))
    return world, splits["test"]


def record(ex, rationale: str, rationale_for: int | None = None) -> RationaleRecord:
    target = ex.answer if rationale_for is None else rationale_for
    return RationaleRecord(ex.id, ex.question, list(ex.choices), ex.answer, 1 - ex.answer, target, rationale,
                           "greedy", dict(ex.meta))


def chain_for(world, ex, answer: int) -> str:
    """A chain that entails ``answer`` (true in the world when ``answer`` is the gold one)."""
    e, c, p = ex.meta["entity"], ex.meta["category"], ex.meta["property"]
    return grammar.chain(e, c, p, answer == 0, "rule_first")


def test_teacher_supports_and_labels(toy):
    world, test = toy
    a, b, c, d = test[:4]
    records = [
        record(a, chain_for(world, a, a.answer)),  # supporting
        record(b, chain_for(world, b, 1 - b.answer)),  # false rule: contradicting
        record(c, "this is well known ."),  # generic
        record(d, "the answer is " + d.choices[d.answer] + " ."),  # restatement
    ]
    metrics = teacher_chain_metrics(world, records, "teacher")
    assert metrics["teacher_supports"] == 0.25
    assert metrics["teacher_supporting"] == 0.25
    assert metrics["teacher_contradicting"] == 0.25
    assert metrics["teacher_generic"] == 0.25
    assert metrics["teacher_restatement"] == 0.25
    assert metrics["teacher_malformed"] == 0.0


def test_student_consistency_and_shortcut_split(toy):
    world, test = toy
    agrees = [ex for ex in test if ex.meta["cue_aligned"]][:2]
    opposes = [ex for ex in test if not ex.meta["cue_aligned"]][:2]
    records = [record(ex, "") for ex in agrees + opposes]
    predictions = [
        # Right, and its own rationale entails the answer it gives.
        {"id": agrees[0].id, "rationale": chain_for(world, agrees[0], agrees[0].answer), "predicted": agrees[0].answer},
        # Right, but the rationale argues the other answer: inconsistent.
        {"id": agrees[1].id, "rationale": chain_for(world, agrees[1], 1 - agrees[1].answer),
         "predicted": agrees[1].answer},
        # Wrong (followed the cue) with a rationale for the wrong answer: consistent.
        {"id": opposes[0].id, "rationale": chain_for(world, opposes[0], 1 - opposes[0].answer),
         "predicted": 1 - opposes[0].answer},
        # Unparsable: counts as wrong and inconsistent.
        {"id": opposes[1].id, "rationale": "this is well known .", "predicted": None},
    ]
    metrics = student_metrics(world, records, predictions)
    assert metrics["student_consistency"] == 0.5
    assert metrics["student_rationale_supports"] == 0.25
    assert metrics["accuracy_cue_agrees"] == 1.0
    assert metrics["accuracy_cue_opposes"] == 0.0
    assert metrics["shortcut_gap"] == 1.0


def test_cue_following_accuracy_is_right_where_the_cue_agrees_and_chance_without_a_cue(toy):
    world, test = toy
    agrees = [record(ex, "") for ex in test if ex.meta["cue_aligned"]][:2]
    opposes = [record(ex, "") for ex in test if not ex.meta["cue_aligned"]][:1]
    no_cue = record(test[0], "")
    no_cue.choices, no_cue.meta = [*no_cue.choices, "maybe"], {**no_cue.meta, "cue_answer": None}
    # (1 + 1 + 0 + 1/3) / 4: a question without a cue leaves the cue follower guessing among its 3 choices.
    assert student_metrics(world, [*agrees, *opposes, no_cue], [])["cue_following_accuracy"] == pytest.approx(7 / 12)


def test_counterfactual_consistency_where_the_cue_argues_against(toy):
    world, test = toy
    exs = test[:6]
    records = [record(ex, "") for ex in exs]
    predictions = []
    for i, ex in enumerate(exs):
        forced = 1 - ex.answer
        # Follow the forced rationale on even rows only.
        predictions.append({"id": ex.id, "rationale": "", "predicted": ex.answer, "counterfactual_rationale_for": forced,
                            "counterfactual_predicted": forced if i % 2 == 0 else ex.answer})
    against = [i for i, ex in enumerate(exs) if ex.choices[1 - ex.answer] != ex.meta["cue_answer"]]
    expected = sum(i % 2 == 0 for i in against) / len(against)
    assert student_metrics(world, records, predictions)["counterfactual_consistency_cue_opposes"] == expected
    # Without counterfactual answers (decoding=human, an answer-first ICL teacher) the metric is left out, not nan.
    plain = [{k: v for k, v in p.items() if not k.startswith("counterfactual")} for p in predictions]
    assert "counterfactual_consistency_cue_opposes" not in student_metrics(world, records, plain)


def test_run_metrics_read_the_rationale_files(toy, tmp_path):
    world, test = toy
    ex = test[0]
    files = {
        "train": [record(ex, chain_for(world, ex, ex.answer))],
        "train_counterfactual": [record(ex, chain_for(world, ex, 1 - ex.answer), rationale_for=1 - ex.answer)],
        "test": [record(ex, chain_for(world, ex, ex.answer))],
    }
    for split, records in files.items():
        write_rationales(tmp_path / f"{split}.jsonl", records)
    predictions = [{"id": ex.id, "rationale": chain_for(world, ex, ex.answer), "predicted": ex.answer}]
    metrics = {**teacher_metrics(world, tmp_path), **prediction_metrics(world, tmp_path, predictions)}
    assert metrics["toyworld/teacher_supports"] == 1.0
    assert metrics["toyworld/teacher_cf_entails"] == 1.0
    assert metrics["toyworld/student_consistency"] == 1.0
    assert all(key.startswith("toyworld/") for key in metrics)
