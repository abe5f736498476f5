import random

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from scd.evaluation.las import leakage_adjusted_simulatability
from scd.evaluation.simulator import (
    SimulatorRow,
    answer_labels,
    score_choices,
    simulate,
    simulator_input,
    simulator_las,
    train_simulator,
)
from scd.models import load_model, load_tokenizer

TINY_T5 = {
    "model_type": "t5", "d_model": 64, "d_ff": 128, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
    "d_kv": 32,
}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("byt5")


def _tiny_t5(tokenizer):
    return load_model("seq2seq", tokenizer, random_init=TINY_T5, seed=0)


def _rows(n: int, seed: int) -> list[SimulatorRow]:
    """The student's answer is stated in the rationale only: "true" means "yes", "false" means "no"."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        target = rng.randrange(2)
        rationale = "it is true" if target == 0 else "it is false"
        rows.append(SimulatorRow(f"is item {rng.randrange(100)} good?", ("yes", "no"), rationale, target))
    return rows


def test_views_show_only_their_parts():
    row = SimulatorRow("Where do fish live?", ("water", "sky"), "Fish need water.", 0)
    assert simulator_input(row, "xe") == (
        "view: xe | question: Where do fish live? | choices: water; sky | rationale: Fish need water."
    )
    assert simulator_input(row, "x") == "view: x | question: Where do fish live? | choices: water; sky"
    assert simulator_input(row, "e") == "view: e | choices: water; sky | rationale: Fish need water."
    with pytest.raises(ValueError, match="unknown simulator view"):
        simulator_input(row, "q")


def test_row_target_must_be_a_choice():
    with pytest.raises(ValueError, match="target 2 is not among 2 choices"):
        SimulatorRow("q", ("a", "b"), "r", 2)


def test_answer_labels_end_with_eos_and_pad_with_ignore(tokenizer):
    labels = answer_labels(tokenizer, ["ab", "c"])  # ByT5 appends </s> itself
    assert labels.tolist() == [[100, 101, 1], [102, 1, -100]]
    backend = Tokenizer(models.WordLevel({"<pad>": 0, "</s>": 1, "red": 2, "car": 3}, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    words = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
    assert answer_labels(words, ["red car", "red"]).tolist() == [[2, 3, 1], [2, 1, -100]]


def test_batched_scores_equal_one_at_a_time(tokenizer):
    model = _tiny_t5(tokenizer)
    rows = [
        SimulatorRow("Where do fish live?", ("water", "sky", "a tree"), "Fish need water.", 0),
        SimulatorRow("Is ice cold?", ("yes", "no"), "Ice is frozen water.", 0),
        SimulatorRow("What barks?", ("a dog", "a cat", "a cow", "a fish"), "Dogs bark loudly at night.", 0),
    ]
    batched = score_choices(model, tokenizer, rows, "xe", batch_size=3)
    single = [score_choices(model, tokenizer, [row], "xe", batch_size=1)[0] for row in rows]
    assert [len(scores) for scores in batched] == [3, 2, 4]
    for got, expected in zip(batched, single):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # A choice's score is its sequence log-likelihood: the loss of that target alone, times its token count.
    encoded = tokenizer(simulator_input(rows[1], "xe"), return_tensors="pt")
    labels = tokenizer(text_target="no", return_tensors="pt").input_ids
    with torch.no_grad():
        loss = model(**encoded, labels=labels).loss
    assert batched[1][1] == pytest.approx(-loss.item() * labels.shape[1], rel=1e-5)
    assert simulate(model, tokenizer, rows, "xe").tolist() == [int(np.argmax(s)) for s in batched]


def test_simulator_learns_the_answer_stated_in_the_rationale(tokenizer):
    torch.manual_seed(0)
    model = _tiny_t5(tokenizer)
    test_rows = _rows(40, seed=1)
    student = np.array([row.target for row in test_rows])
    untrained = {view: (simulate(model, tokenizer, test_rows, view) == student).mean() for view in ("xe", "e")}

    train_simulator(
        model, tokenizer, _rows(64, seed=0),
        trainer_kwargs={"max_epochs": 3, "accelerator": "cpu", "enable_progress_bar": False},
        batch_size=16, lr=3e-3,
    )
    predictions = {view: simulate(model, tokenizer, test_rows, view) for view in ("xe", "x", "e")}
    trained = {view: (predicted == student).mean() for view, predicted in predictions.items()}
    assert trained["e"] >= 0.95 and trained["e"] > untrained["e"] + 0.3
    assert trained["xe"] >= 0.95 and trained["xe"] > untrained["xe"] + 0.3
    # The question alone carries no signal: the best the simulator can do is the majority answer.
    assert trained["x"] <= max(student.mean(), 1 - student.mean()) + 1e-9

    # Every rationale states the answer: (nearly) all leak, and the leaked gain is the rationale's gain over x alone.
    las, _ = simulator_las(model, tokenizer, test_rows, bootstrap_samples=200, seed=1)
    assert las == leakage_adjusted_simulatability(
        student, predictions["xe"], predictions["x"], predictions["e"], bootstrap_samples=200, seed=1
    )
    leaked = predictions["e"] == student
    gain = (predictions["xe"] == student).astype(int) - (predictions["x"] == student)
    assert las.n_leaked == leaked.sum() >= 38
    assert las.las_leaked == pytest.approx(gain[leaked].mean()) and las.las_leaked > 0.3
