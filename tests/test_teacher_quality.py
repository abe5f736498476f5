import math

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from scd.data.records import RationaleRecord
import scd.evaluation.teacher_quality as teacher_quality
from scd.evaluation.simulator import score_choices
from scd.evaluation.teacher_quality import (
    content_words,
    fluency,
    near_identical,
    new_info,
    new_info_share,
    restates_answer,
    split_context_rationale,
    supports_answer,
    supports_answer_with_simulator,
    teacher_simulator_rows,
    text_metrics,
    vacuity,
)
from scd.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def byt5():
    return load_tokenizer("byt5")


def record(id_, question, choices, answer, rationale, rationale_for=None, perturbed=1):
    rationale_for = answer if rationale_for is None else rationale_for
    return RationaleRecord(id_, question, list(choices), answer, perturbed, rationale_for, rationale, "greedy")


def test_content_words_drop_stop_words_and_punctuation():
    assert content_words("The fish, it LIVES in the water!") == ["fish", "lives", "water"]


def test_supports_answer_counts_strict_wins():
    scores = [np.array([-1.0, -2.0]), np.array([-3.0, -1.0, -5.0]), np.array([-2.0, -2.0])]
    # row 0: 0 beats 1; row 1: 2 loses to 0; row 2: a tie is no support
    assert supports_answer(scores, supported=[0, 2, 0], other=[1, 0, 1]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="3 score rows, 2 supported"):
        supports_answer(scores, [0, 1], [1, 0])


def test_supports_answer_with_simulator_judges_the_answer_each_rationale_was_written_for(byt5):
    model = load_model("seq2seq", byt5, random_init={
        "model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
        "d_kv": 16,
    })
    records = [
        record("q1", "Where do fish live?", ["water", "sky", "tree"], 0, "Fish need water.", perturbed=1),
        record("q1", "Where do fish live?", ["water", "sky", "tree"], 0, "Fish fly.", rationale_for=1, perturbed=1),
        record("q2", "Is ice cold?", ["yes", "no"], 0, "Ice is frozen.", perturbed=1),
    ]
    scores = score_choices(model, byt5, teacher_simulator_rows(records), "e")
    wins = [scores[0][0] > scores[0][1], scores[1][1] > scores[1][0], scores[2][0] > scores[2][1]]
    assert supports_answer_with_simulator(model, byt5, records) == pytest.approx(np.mean(wins))
    assert [row.target for row in teacher_simulator_rows(records)] == [0, 1, 0]


def test_new_info_share_of_unseen_content_words():
    # content words: fish, breathe, water, gills; fish and water are in the question/choices
    assert new_info_share("Fish breathe water through gills.", "Where do fish live?", ["water", "sky"]) == 0.5
    assert new_info_share("It is so.", "Why?", ["a", "b"]) == 0.0
    records = [
        record("q1", "Where do fish live?", ["water", "sky"], 0, "Fish breathe water through gills."),  # 2/4
        record("q2", "What do cows eat?", ["grass", "meat"], 0, "Cows graze grass in meadows daily."),  # 3/5
    ]
    assert new_info(records) == pytest.approx((2 / 4 + 3 / 5) / 2)


def test_restates_answer():
    assert restates_answer("So the answer is water.", "water")
    assert restates_answer("Water is the correct choice because it is water.", "water")
    assert restates_answer("The answer is obviously water.", "water")  # one content word left
    assert not restates_answer("The answer is obviously water.", "water", min_content_words=1)
    assert not restates_answer("Fish need water to breathe.", "water")
    assert not restates_answer("The answer is water because fish need it.", "water")


def test_near_identical_after_removing_both_answers():
    assert near_identical("Birds fly high in the open sky.", "Birds fly high in the open sea.", ["sky", "sea"])
    assert not near_identical("Birds fly in the open sky.", "Boats float on the sea.", ["sky", "sea"])
    # {birds, fly, high} vs {birds, fly, low}: Jaccard 2/4
    assert near_identical("Birds fly high.", "Birds fly low.", ["x", "y"], threshold=0.4)
    assert not near_identical("Birds fly high.", "Birds fly low.", ["x", "y"], threshold=0.5)


def test_vacuity_counts_restatements_and_twins():
    choices = ["sky", "sea"]
    records = [
        record("q1", "Where is water?", ["water", "air"], 0, "The answer is water."),  # restates
        record("q2", "Where do fish live?", ["water", "air"], 0, "Fish need water to breathe."),
        record("q3", "Where do birds fly?", choices, 0, "Birds fly high in the open sky."),  # twin below
        record("q4", "Where do boats float?", choices, 1, "Boats float on the salty sea."),
    ]
    counterfactual = [
        record("q3", "Where do birds fly?", choices, 0, "Birds fly high in the open sea.", rationale_for=1),
        record("q4", "Where do boats float?", choices, 1, "Clouds drift across the sky.", rationale_for=0),
    ]
    assert vacuity(records, counterfactual) == pytest.approx(2 / 4)
    assert vacuity(records) == pytest.approx(1 / 4)
    assert text_metrics(records, counterfactual) == {
        "teacher/new_info": pytest.approx(new_info(records)),
        "teacher/vacuity": pytest.approx(0.5),
    }


def _tiny_gpt2(tokenizer):
    random_init = {"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 256}
    return load_model("causal", tokenizer, random_init=random_init, seed=0).eval()


def test_fluency_of_a_uniform_model_is_the_vocabulary_size(byt5):
    model = _tiny_gpt2(byt5)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # all logits 0: every token has probability 1/V
    pairs = [("Q: where? A:", "in water"), ("Q: who barks? A: a dog.", "Dogs bark.")]
    assert fluency(model, byt5, pairs) == pytest.approx(model.config.vocab_size, rel=1e-4)


def test_fluency_batched_equals_hand_computed(byt5):
    model = _tiny_gpt2(byt5)
    pairs = [("Q: where? A:", "in water"), ("Q: who barks? A: a dog.", "Dogs bark loudly."), ("Q: x?", "y")]

    def by_hand(context: str, rationale: str) -> float:
        context_ids = byt5(context + " ", add_special_tokens=False).input_ids
        ids = torch.tensor([context_ids + byt5(rationale, add_special_tokens=False).input_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1], dim=-1)
        token_logp = logp.gather(-1, ids[0, 1:, None])[len(context_ids) - 1 :]
        return math.exp(-token_logp.mean().item())

    expected = np.mean([by_hand(*pair) for pair in pairs])
    assert fluency(model, byt5, pairs, batch_size=3) == pytest.approx(expected, rel=1e-5)
    assert fluency(model, byt5, pairs, batch_size=1) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="no token to score"):
        fluency(model, byt5, [("", "")])


def test_split_context_rationale_with_a_fast_tokenizer():
    vocab = {token: i for i, token in enumerate(["[UNK]", "Q", ":", "Ġx", "ĠA", "ĠFish", "Ġswim"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    ids, start = split_context_rationale(fast, "Q: x A:", "Fish swim")
    assert ids == [1, 2, 3, 4, 2, 5, 6]
    assert start == 5  # "ĠFish" carries the separator and belongs to the rationale


def test_split_context_rationale_with_bytes(byt5):
    ids, start = split_context_rationale(byt5, "A:", "ok")
    assert byt5.decode(ids[:start]) == "A: " and byt5.decode(ids[start:]) == "ok"


@pytest.mark.parametrize("model_type", ["gpt2", "gpt_neox"])
def test_long_rows_scored_in_chunks_equal_the_whole_row_at_once(byt5, monkeypatch, model_type):
    """Issue 20, case 8: a row over LONG_ROW_TOKENS is scored alone, its context fed in chunks through the cache
    (bounded memory); the perplexities are those of the whole row at once."""
    if model_type == "gpt2":
        model = _tiny_gpt2(byt5)
    else:
        model = load_model("causal", byt5, random_init={"model_type": "gpt_neox", "hidden_size": 32,
                                                        "num_hidden_layers": 2, "num_attention_heads": 2,
                                                        "intermediate_size": 64, "max_position_embeddings": 256},
                           seed=0).eval()  # fmt: skip
    pairs = [("Q: where does the river that runs past the mill go? A:", "to the sea"), ("Q: x?", "y"),
             ("Q: who barks at night in the yard? A: a dog.", "Dogs bark loudly.")]  # fmt: skip
    whole = fluency(model, byt5, pairs, batch_size=3)
    monkeypatch.setattr(teacher_quality, "LONG_ROW_TOKENS", 16)  # rows of 24-60 bytes: chunks of 16
    assert fluency(model, byt5, pairs, batch_size=3) == pytest.approx(whole, rel=1e-5)
    monkeypatch.setattr(teacher_quality, "LONG_ROW_TOKENS", 7)
    assert fluency(model, byt5, pairs, batch_size=3) == pytest.approx(whole, rel=1e-5)
