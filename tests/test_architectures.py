"""Every teacher architecture of the presets, and the families the shared prefix cannot serve, through the decoding
engine: contrastive decoding equals the naive two-prompt definition token for token (``tests/test_decoding.py``'s
method), with the path each model can take decided when it loads.

The models are tiny random inits of each preset's exact config class, keeping the settings that change attention:
grouped-query heads, Llama-3's rope scaling, Qwen2's tied embeddings and qkv biases, OLMo-2's QK-norm, GPT-NeoX's
partial rotary (its default), Mistral's sliding window, Gemma-2's soft-capping, Bloom's ALiBi, GPT-Neo's local
attention.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from scd.models import load_model, load_tokenizer
from scd.teacher.decoding import DecodingSettings, decode, settings_for_model
from scd.teacher.strategies import ContrastWrong, Greedy
from tests.conftest import validated
from tests.test_decoding import NEVER, branches, reference

STEPS, LAM = 8, 0.5
# A wide init range makes a model this small read its prompt (tests/test_decoding.py).
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, initializer_range=0.3)
# model_type -> (the preset it stands for, its tiny config).
PRESET_TEACHERS = {
    "gpt_neox": ("gpt_neox_20b", dict(model_type="gpt_neox", use_parallel_residual=True, **SMALL,
                                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                          "partial_rotary_factor": 0.25})),
    "llama": ("llama3_1_8b", dict(
        model_type="llama", num_key_value_heads=2, max_position_embeddings=512, **SMALL,
        rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64, "rope_theta": 500000.0})),
    "qwen2": ("qwen2_5_0_5b, qwen2_5_7b", dict(model_type="qwen2", num_key_value_heads=2, tie_word_embeddings=True,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1e6}, **SMALL)),
    "olmo2": ("olmo2_13b", dict(model_type="olmo2", **SMALL)),
}
# model_type -> (why the shared prefix cannot serve it, its tiny config); windows of 16 tokens (shorter than a prompt).
FALLBACK_TEACHERS = {
    "mistral": ("sliding-window attention",
                dict(model_type="mistral", num_key_value_heads=2, sliding_window=16, **SMALL)),
    # Untied: with tied embeddings a model this small repeats its last input token whatever the prompt.
    "gemma2": ("soft-capped attention logits", dict(model_type="gemma2", num_key_value_heads=2, head_dim=16,
                                                    sliding_window=16, tie_word_embeddings=False, **SMALL)),
    "bloom": ("takes no attention function", dict(model_type="bloom", hidden_size=64, n_layer=2, n_head=4,
                                                  initializer_range=0.6)),
    # No attention scaling: with a range as wide as the others' its logits tie within float error.
    "gpt_neo": ("takes no attention function", dict(model_type="gpt_neo", hidden_size=64, num_layers=2, num_heads=4,
                                                    attention_types=[[["global", "local"], 1]], window_size=16,
                                                    initializer_range=0.1)),
}


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("byt5")


@pytest.fixture(scope="module")
def prompts(tokenizer):
    enc = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    prefix = enc("Q: Is ice cold?\nA: The answer is yes. Ice is frozen water.\n\n")
    questions = ["Is fire hot?", "Do fish swim in the sea, usually?", "Can a stone sing?"]
    gold = [enc(f"Q: {q}\nA: The answer is yes.") for q in questions]
    wrong = [enc(f"Q: {q}\nA: The answer is no.") for q in questions]
    return prefix, gold, wrong


def contrastive(model, tokenizer, prompts, settings):
    prefix, gold, wrong = prompts
    return decode(model, tokenizer, prefix, branches(gold, wrong), ContrastWrong(lam=LAM), settings, NEVER)


def check_reads_its_prompt(model, tokenizer, prompts, expected, settings):
    """Without this the equality could not fail: rows decode different tokens, and contrast changes them."""
    prefix, gold, _ = prompts
    greedy = decode(model, tokenizer, prefix, branches(gold), Greedy(), settings, NEVER)
    assert len({tuple(row) for row in expected}) == len(gold)
    assert greedy != expected


@pytest.mark.parametrize("model_type", PRESET_TEACHERS)
def test_preset_architectures_decode_the_definition_with_and_without_the_shared_prefix(tokenizer, prompts, model_type):
    model = load_model("causal", tokenizer, random_init=PRESET_TEACHERS[model_type][1], seed=0).eval()
    assert model.config.model_type == model_type
    prefix, gold, wrong = prompts
    expected = reference(model, prefix, gold, wrong, LAM, STEPS)
    settings = settings_for_model(model, DecodingSettings(max_new_tokens=STEPS))
    check_reads_its_prompt(model, tokenizer, prompts, expected, settings)
    assert settings.shared_prefix  # the shared prefix serves every preset teacher
    assert contrastive(model, tokenizer, prompts, settings) == expected
    full_prompts = DecodingSettings(max_new_tokens=STEPS, shared_prefix=False)
    assert contrastive(model, tokenizer, prompts, full_prompts) == expected


@pytest.mark.parametrize("model_type", FALLBACK_TEACHERS)
def test_families_the_shared_prefix_cannot_serve_fall_back_to_full_prompts(tokenizer, prompts, caplog, model_type):
    reason, config = FALLBACK_TEACHERS[model_type]
    model = load_model("causal", tokenizer, random_init=config, seed=0).eval()
    prefix, gold, wrong = prompts
    expected = reference(model, prefix, gold, wrong, LAM, STEPS)
    with caplog.at_level(logging.INFO, logger="scd.teacher.decoding"):
        settings = settings_for_model(model, DecodingSettings(max_new_tokens=STEPS))
    assert not settings.shared_prefix
    [line] = caplog.messages
    assert line.startswith(f"Teacher: {type(model).__name__} decodes every row with its full prompt") and reason in line
    check_reads_its_prompt(model, tokenizer, prompts, expected, settings)
    assert contrastive(model, tokenizer, prompts, settings) == expected


def test_a_family_neither_path_serves_is_refused_in_one_line(tokenizer):
    model = load_model("causal", tokenizer, random_init=dict(model_type="mamba", hidden_size=32, num_hidden_layers=1,
                                                            state_size=4), seed=0).eval()
    with pytest.raises(ValueError) as error:
        settings_for_model(model, DecodingSettings())
    message = str(error.value)
    assert message.startswith("teacher: MambaForCausalLM cannot be decoded by scd's decoding loop (")
    assert "\n" not in message


@pytest.mark.slow
def test_the_teacher_stage_decides_the_path_when_the_teacher_loads(make_config, caplog):
    """A Bloom teacher in a smoke run: its full-prompt path is chosen at load, and its rationales are written."""
    from scd.config import validate
    from scd.pipeline import run

    raw = make_config("stages=[teacher]", "dataset.limit=2")
    raw.teacher.random_init = dict(model_type="bloom", hidden_size=32, n_layer=1, n_head=2)
    with caplog.at_level(logging.INFO, logger="scd.teacher.decoding"):
        run(*validated(raw), raw, Path(raw.paths.output_dir))
    [line] = [m for m in caplog.messages if "full prompt" in m]
    assert line.startswith("Teacher: BloomForCausalLM decodes every row with its full prompt")
    rationales = (Path(raw.paths.output_dir) / "rationales" / "train.jsonl").read_text().splitlines()
    assert len(rationales) == 2
