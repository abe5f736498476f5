"""Student text forms, answer parsing, and answer-only label masks on byte and BPE tokenizers, T5's SentencePiece
kind and Llama-3's BPE with BOS."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from scd.data.records import RationaleRecord
from scd.models import load_tokenizer
from scd.student.data import IGNORE_INDEX, encode_row
from scd.student.objectives import Counterfactual
from tests.real_tokenizers import bpe_with_bos, sentencepiece_unigram
from scd.student.formatting import (
    extract_rationale,
    first_token_at,
    first_token_by_prefix,
    format_input,
    format_target,
    parse_answer,
    task_tag,
)

RECORD = RationaleRecord(
    id="q1",
    question="can a blick fly ?",
    choices=["yes", "no"],
    answer=0,
    perturbed_answer=1,
    rationale_for=1,
    rationale="no wug can fly , and a blick is a wug .",
    decoding="greedy",
)


def byte_level_bpe() -> PreTrainedTokenizerFast:
    """A GPT-2 style tokenizer: byte-level BPE where a word's leading space belongs to the word's token."""
    corpus = ["can a blick fly ? no wug can fly , and a blick is a wug . So the answer is no."] * 20
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>")


def space_merging_bpe(text: str) -> PreTrainedTokenizerFast:
    """A BPE without pre-tokenization whose merges cross the space before the answer: "is no" -> "i", "s n", "o"."""
    symbols = ["<pad>", "</s>"] + sorted(set(text)) + ["s ", "s n"]
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[("s", " "), ("s ", "n")]))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", pad_token="<pad>")


def objective_row(tags: str, counterfactual: bool):
    """RECORD as the counterfactual objective's factual or counterfactual row."""
    objective = Counterfactual(tags=tags)
    return objective.counterfactual_row(RECORD) if counterfactual else objective.factual_row(RECORD)


def supervised_tokens(tokenizer, labels: list[int]) -> list[str]:
    return tokenizer.convert_ids_to_tokens([label for label in labels if label != IGNORE_INDEX])


# --- text forms ---------------------------------------------------------------------------------------------------


def test_tags_distinct_shared_none_change_the_texts_as_specified() -> None:
    assert task_tag("distinct", False) == "[factual]" and task_tag("distinct", True) == "[counterfactual]"
    assert task_tag("shared", False) == task_tag("shared", True) == "[factual]"
    assert task_tag("none", False) == task_tag("none", True) == ""
    assert format_input("can a blick fly ?", ["yes", "no"], "[counterfactual]") == (
        "[counterfactual] can a blick fly ? choices: yes | no"
    )
    assert format_input("q ?", ["a", "b", "c"], "") == "q ? choices: a | b | c"
    assert format_target("every wug can fly .", "yes", "[factual]") == (
        "[factual] every wug can fly . So the answer is yes."
    )
    assert format_target("every wug can fly .", "yes", "") == "every wug can fly . So the answer is yes."


@pytest.mark.parametrize(
    ("tags", "counterfactual", "decoder_text"),
    [
        ("distinct", True, "[counterfactual] no wug can fly , and a blick is a wug . So the answer is no.</s>"),
        ("shared", True, "[factual] no wug can fly , and a blick is a wug . So the answer is no.</s>"),
        ("none", True, "no wug can fly , and a blick is a wug . So the answer is no.</s>"),
        ("distinct", False, "[factual] no wug can fly , and a blick is a wug . So the answer is no.</s>"),
    ],
)
def test_encoded_rows_carry_the_tag_in_input_and_target(tags, counterfactual, decoder_text) -> None:
    tokenizer = load_tokenizer("byt5")
    row = encode_row(objective_row(tags, counterfactual), tokenizer, "seq2seq", decoder_start_token_id=0)
    tag = task_tag(tags, counterfactual)
    assert tokenizer.decode(row.input_ids) == format_input(RECORD.question, RECORD.choices, tag) + "</s>"
    # The decoder input is the start token and the target shifted right: the rationale stays visible.
    assert row.decoder_input_ids[0] == 0
    assert tokenizer.decode(row.decoder_input_ids[1:] + [tokenizer.eos_token_id]) == decoder_text


# --- answer-only label masks --------------------------------------------------------------------------------------


def test_counterfactual_labels_cover_exactly_the_answer_bytes() -> None:
    tokenizer = load_tokenizer("byt5")
    row = encode_row(objective_row("distinct", True), tokenizer, "seq2seq", decoder_start_token_id=0)
    prefix = "[counterfactual] no wug can fly , and a blick is a wug . So the answer is"
    answer_start = len(prefix) + 1  # after the space; ByT5 has one token per ASCII byte
    assert len(row.labels) == answer_start + len("no.") + 1
    assert row.labels[:answer_start] == [IGNORE_INDEX] * answer_start
    assert tokenizer.decode(row.labels[answer_start:]) == "no.</s>"
    factual = encode_row(objective_row("distinct", False), tokenizer, "seq2seq", decoder_start_token_id=0)
    assert IGNORE_INDEX not in factual.labels


def test_causal_labels_mask_the_prompt_and_the_counterfactual_rationale() -> None:
    tokenizer = load_tokenizer("byt5")
    row = encode_row(objective_row("distinct", True), tokenizer, "causal")
    prompt = "[counterfactual] can a blick fly ? choices: yes | no\n"
    target = "[counterfactual] no wug can fly , and a blick is a wug . So the answer is no."
    assert tokenizer.decode(row.input_ids) == prompt + target + "</s>"
    first = len(prompt) + len(target) - len("no.")
    assert row.labels[:first] == [IGNORE_INDEX] * first
    assert row.labels[first:] == row.input_ids[first:]
    factual = encode_row(objective_row("distinct", False), tokenizer, "causal")
    factual_prompt = "[factual] can a blick fly ? choices: yes | no\n"
    assert factual.labels == [IGNORE_INDEX] * len(factual_prompt) + factual.input_ids[len(factual_prompt) :]


def test_byte_level_bpe_supervises_the_answer_token_with_its_space() -> None:
    tokenizer = byte_level_bpe()
    row = encode_row(objective_row("distinct", True), tokenizer, "seq2seq", decoder_start_token_id=0)
    assert supervised_tokens(tokenizer, row.labels) == ["Ġno", ".", "</s>"]
    masked = [i for i, label in enumerate(row.labels) if label == IGNORE_INDEX]
    assert masked == list(range(len(row.labels) - 3))
    assert tokenizer.convert_ids_to_tokens(row.decoder_input_ids[-3]) == "Ġis"


def test_a_token_straddling_the_answer_start_is_supervised() -> None:
    text = "[counterfactual] no wug can fly , and a blick is a wug . So the answer is no."
    tokenizer = space_merging_bpe(text + " can a blick fly ? choices: yes |")
    row = encode_row(objective_row("distinct", True), tokenizer, "seq2seq", decoder_start_token_id=0)
    # "is no" tokenizes as "i", "s n", "o": the token holding the answer's first letter is trained on.
    assert supervised_tokens(tokenizer, row.labels) == ["s n", "o", ".", "</s>"]
    assert tokenizer.convert_ids_to_tokens(row.decoder_input_ids[-4]) == "i"


def test_offsets_and_prefix_tokenization_find_the_same_boundary() -> None:
    text = "[factual] cats run So the answer is no."
    answer_start = text.index("no.")
    for tokenizer in (space_merging_bpe(text), byte_level_bpe()):
        by_offsets = first_token_at(tokenizer, text, answer_start)
        assert first_token_by_prefix(tokenizer, text, answer_start) == by_offsets
    assert first_token_at(load_tokenizer("byt5"), text, answer_start)[1] == answer_start


@pytest.mark.parametrize(("make", "answer_tokens"), [
    (sentencepiece_unigram, ["▁no", ".", "</s>"]), (bpe_with_bos, ["Ġno", ".", "<|endoftext|>"])],
    ids=["t5_unigram", "llama3_bpe"])
@pytest.mark.parametrize("arch", ["seq2seq", "causal"])
def test_preset_tokenizers_supervise_only_the_answer_of_a_counterfactual_row(make, answer_tokens, arch) -> None:
    tokenizer = make()
    start = {"decoder_start_token_id": tokenizer.pad_token_id or 0} if arch == "seq2seq" else {}
    row = encode_row(objective_row("distinct", True), tokenizer, arch, **start)
    assert supervised_tokens(tokenizer, row.labels) == answer_tokens
    assert row.labels[: -len(answer_tokens)] == [IGNORE_INDEX] * (len(row.labels) - len(answer_tokens))
    factual = encode_row(objective_row("distinct", False), tokenizer, arch, **start)
    target = tokenizer(format_target(RECORD.rationale, "no", "[factual]"), add_special_tokens=False).input_ids
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    # The whole factual target and eos are supervised, after a prompt (causal) that starts with BOS once, if any.
    supervised = [label for label in factual.labels if label != IGNORE_INDEX]
    assert supervised == target + [tokenizer.eos_token_id]
    if arch == "causal":
        assert factual.input_ids[: len(bos) + 1].count(tokenizer.bos_token_id) == len(bos)


# --- answer parsing -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("every wug can fly . So the answer is yes.", 0),
        ("So the answer is no. Because no wug can fly .", 1),  # extra text after the answer
        ("So the answer is NO", 1),  # other casing
        ("So the answer is  Yes !", 0),  # punctuation and spacing
        ("So the answer is yes. So the answer is no.", 1),  # the last cue counts
        ("every wug can fly .", None),  # no answer
        ("So the answer is", None),
        ("So the answer is maybe.", None),  # not a choice
        ("So the answer is yesterday.", None),  # a choice as a word prefix only
    ],
)
def test_parse_answer_yes_no(text: str, expected: int | None) -> None:
    assert parse_answer(text, ["yes", "no"]) == expected
    # As a student's generated ids decoded by T5's and Llama-3's kinds of tokenizer.
    for tokenizer in (UNIGRAM, BPE_WITH_BOS):
        decoded = tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True)
        assert parse_answer(decoded, ["yes", "no"]) == expected, (type(tokenizer.backend_tokenizer.model), decoded)


UNIGRAM, BPE_WITH_BOS = sentencepiece_unigram(), bpe_with_bos()


def test_parse_answer_prefers_exact_and_longest_choices() -> None:
    choices = ["New York", "new york city", "the sea"]
    assert parse_answer("So the answer is New York.", choices) == 0
    assert parse_answer("So the answer is new york city.", choices) == 1
    assert parse_answer("So the answer is new-york.", choices) == 0  # normalized: punctuation, case
    assert parse_answer("So the answer is The Sea, of course", choices) == 2
    assert parse_answer("So the answer is St. Louis.", ["St. Louis", "Paris"]) == 0


def test_extract_rationale_strips_tag_and_answer() -> None:
    assert extract_rationale("[factual] every wug can fly . So the answer is yes.") == "every wug can fly ."
    assert extract_rationale("[counterfactual] no wug can fly") == "no wug can fly"
    assert extract_rationale("So the answer is yes.") == ""
    assert extract_rationale("[ factual ] every wug can fly . So the answer is yes .") == "every wug can fly ."
