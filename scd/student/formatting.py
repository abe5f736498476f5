"""The student's text forms, in one place: inputs, targets, rationale prefixes, and answer parsing.

Input:   ``"{tag} {question} choices: {c1} | {c2} | ..."``
Target:  ``"{tag} {rationale} So the answer is {answer}."``

``tags`` chooses the task tags: ``"distinct"`` marks factual and counterfactual rows differently, ``"shared"`` gives
both the factual tag (so the tag cannot tell the model which task it is doing), ``"none"`` drops the tag.
"""

from __future__ import annotations

import re
from typing import Literal

from transformers import PreTrainedTokenizerBase

from scd.data.choices import match_choice

TagMode = Literal["distinct", "shared", "none"]
TAG_MODES = ("distinct", "shared", "none")
FACTUAL_TAG = "[factual]"
COUNTERFACTUAL_TAG = "[counterfactual]"
ANSWER_CUE = "So the answer is"
# Ends a causal model's prompt, so the target starts on its own line.
CAUSAL_SEPARATOR = "\n"


def task_tag(tags: TagMode, counterfactual: bool) -> str:
    """The tag that starts input and target of a row ("" when tags are off). The objective checks ``tags``."""
    if tags == "none":
        return ""
    return COUNTERFACTUAL_TAG if tags == "distinct" and counterfactual else FACTUAL_TAG


def _tagged(tag: str, text: str) -> str:
    return f"{tag} {text}" if tag else text


def format_input(question: str, choices: list[str] | tuple[str, ...], tag: str) -> str:
    return _tagged(tag, f"{question} choices: {' | '.join(choices)}")


def rationale_prefix_span(rationale: str, tag: str) -> tuple[str, int, int]:
    """The rationale prefix ``"{tag} {rationale} So the answer is"`` and where the rationale lies in it."""
    rationale = rationale.strip()
    start = len(tag) + 1 if tag else 0
    return " ".join(part for part in (tag, rationale, ANSWER_CUE) if part), start, start + len(rationale)


def format_rationale_prefix(rationale: str, tag: str) -> str:
    """Everything of the target before the answer: ``"{tag} {rationale} So the answer is"``."""
    return rationale_prefix_span(rationale, tag)[0]


def format_answer(answer: str) -> str:
    """What follows the rationale prefix; the part a counterfactual row is trained on."""
    return f" {answer}."


def format_target(rationale: str, answer: str, tag: str) -> str:
    return format_rationale_prefix(rationale, tag) + format_answer(answer)


# A tag as decoded, also by word-level tokenizers that join "[", "factual", "]" with spaces.
_LEADING_TAG = re.compile(r"^\[\s*(?:counter)?factual\s*\]")


def extract_rationale(output: str) -> str:
    """The rationale a model wrote: its output without a leading task tag and without the final answer sentence."""
    text = _LEADING_TAG.sub("", output.strip())
    cue = text.rfind(ANSWER_CUE)
    if cue >= 0:
        text = text[:cue]
    return text.strip()


def parse_answer(text: str, choices: list[str] | tuple[str, ...]) -> int | None:
    """The index of the choice named after the last ``"So the answer is"`` in ``text``; None when there is none.

    Exact text wins; otherwise the choice is matched ignoring case, punctuation and spacing. Text after the answer
    ("... is yes. Because ...") is ignored; the longest matching choice wins ("new york city" over "new york").
    """
    cue = text.rfind(ANSWER_CUE)
    if cue < 0:
        return None
    return match_choice(text[cue + len(ANSWER_CUE) :], choices)


def first_token_at(tokenizer: PreTrainedTokenizerBase, text: str, char_index: int) -> tuple[list[int], int]:
    """Tokenize ``text`` (no special tokens); find the first token that covers a character at or after ``char_index``.

    The text is tokenized as one piece so token boundaries are those the model sees. A token that straddles
    ``char_index`` counts as after it (so a supervised answer span keeps its first characters). Fast tokenizers give
    character offsets; slow ones go through ``first_token_by_prefix``.
    """
    if tokenizer.is_fast:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        start = next((i for i, (_, end) in enumerate(offsets) if end > char_index), len(ids))
        return ids, start
    return first_token_by_prefix(tokenizer, text, char_index)


def first_token_by_prefix(tokenizer: PreTrainedTokenizerBase, text: str, char_index: int) -> tuple[list[int], int]:
    """``first_token_at`` for tokenizers without offsets: the first token where ``text[:char_index]`` tokenized alone
    stops agreeing with the whole text."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    head = tokenizer(text[:char_index], add_special_tokens=False)["input_ids"] if char_index > 0 else []
    start = 0
    while start < min(len(head), len(ids)) and head[start] == ids[start]:
        start += 1
    return ids, start

