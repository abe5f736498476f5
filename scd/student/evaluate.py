"""A trained student answering test questions: its own rationales and answers, and its answers after given rationales
(``StudentAnswerer``, from which ``scd.evaluation.answers`` computes the answer metrics).

All generation is greedy and batched. A decoder prefix (a rationale ending in "So the answer is") is left-padded with
an attention mask, for seq2seq decoders and causal prompts alike, so every row continues right after its own prefix.
A perturbed rationale has a share of its tokens replaced by random vocabulary tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from scd.data.records import RationaleRecord
from scd.models import Arch, InputLimit
from scd.student.data import encode_prompt, pad
from scd.student.formatting import (
    ANSWER_CUE,
    TagMode,
    extract_rationale,
    first_token_at,
    format_input,
    format_rationale_prefix,
    parse_answer,
    rationale_prefix_span,
    task_tag,
)


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase, arch: Arch, question: str, choices: list[str] | tuple[str, ...], tag: str, *,
    example_id: str, input_limit: InputLimit = InputLimit(),
) -> list[int]:
    """The student's input for a question: the encoder input (seq2seq) or the prompt a causal model continues, held
    to ``input_limit`` (a longer one is refused naming ``example_id``, or truncated)."""
    text = format_input(question, choices, tag)
    ids = tokenizer(text)["input_ids"] if arch == "seq2seq" else encode_prompt(tokenizer, text)
    return input_limit.apply(ids, example_id)


def rationale_prefix_ids(tokenizer: PreTrainedTokenizerBase, rationale: str, tag: str) -> list[int]:
    """Token ids of ``"{tag} {rationale} So the answer is"``: a given rationale, for the student to answer after."""
    return tokenizer(format_rationale_prefix(rationale, tag), add_special_tokens=False)["input_ids"]


@torch.inference_mode()
def generate_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    arch: Arch,
    prompts: list[list[int]],
    prefixes: list[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    desc: str = "generate",
    show_progress: bool = True,
) -> list[str]:
    """Greedy continuations of ``prefix`` given ``prompt``, decoded without special tokens.

    For seq2seq models ``prompt`` is the encoder input and ``prefix`` the decoder's first tokens after the start token;
    for causal models the model continues ``prompt + prefix``.
    """
    if len(prompts) != len(prefixes):
        raise ValueError(f"{len(prompts)} prompts but {len(prefixes)} prefixes")
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=getattr(model.config, "decoder_start_token_id", None),
    )
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not show_progress):
        rows = slice(start, start + batch_size)
        if arch == "seq2seq":
            decoder = [[config.decoder_start_token_id] + prefix for prefix in prefixes[rows]]
            inputs = {
                "input_ids": pad(prompts[rows], pad_id),
                "attention_mask": pad([[1] * len(p) for p in prompts[rows]], 0),
                "decoder_input_ids": pad(decoder, pad_id, side="left"),
                "decoder_attention_mask": pad([[1] * len(d) for d in decoder], 0, side="left"),
            }
            prefix_length = inputs["decoder_input_ids"].shape[1]
        else:
            full = [prompt + prefix for prompt, prefix in zip(prompts[rows], prefixes[rows])]
            inputs = {
                "input_ids": pad(full, pad_id, side="left"),
                "attention_mask": pad([[1] * len(f) for f in full], 0, side="left"),
            }
            prefix_length = inputs["input_ids"].shape[1]
        generated = model.generate(**{k: v.to(device) for k, v in inputs.items()}, generation_config=config)
        outputs += tokenizer.batch_decode(generated[:, prefix_length:], skip_special_tokens=True)
    model.train(was_training)
    return outputs


def predict_rationales(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    arch: Arch,
    records: list[RationaleRecord],
    *,
    tags: TagMode = "distinct",
    batch_size: int = 16,
    max_new_tokens: int = 128,
    input_limit: InputLimit = InputLimit(),
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """The student's own rationale and answer for each record: ``id``, ``output`` (raw text), ``rationale`` and
    ``predicted`` (the choice index, None when no choice can be parsed)."""
    tag = task_tag(tags, False)
    outputs = generate_continuations(
        model,
        tokenizer,
        arch,
        [prompt_ids(tokenizer, arch, record.question, record.choices, tag, example_id=record.id,
                    input_limit=input_limit) for record in records],
        [[] for _ in records],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        desc="student rationales",
        show_progress=show_progress,
    )
    return [
        {
            "id": record.id,
            "output": output,
            "rationale": extract_rationale(output),
            "predicted": parse_answer(output, record.choices),
        }
        for record, output in zip(records, outputs)
    ]


def perturb_rationale_prefix(
    tokenizer: PreTrainedTokenizerBase, rationale: str, tag: str, share: float, rng: np.random.Generator
) -> list[int]:
    """Token ids of ``"{tag} {rationale} So the answer is"`` with ``share`` of the rationale's tokens (rounded) replaced
    by random non-special vocabulary tokens."""
    text, start, stop = rationale_prefix_span(rationale, tag)
    ids, first = first_token_at(tokenizer, text, start)
    _, end = first_token_at(tokenizer, text, stop)
    positions = np.arange(first, end)
    chosen = rng.choice(positions, size=round(share * len(positions)), replace=False)
    special = set(tokenizer.all_special_ids)
    vocabulary = np.array([i for i in range(len(tokenizer)) if i not in special])
    for position, token in zip(chosen, rng.choice(vocabulary, size=len(chosen))):
        ids[position] = int(token)
    return ids


class StudentAnswerer:
    """A trained student as an ``scd.evaluation.answers.Answerer``: it writes a rationale, then its answer."""

    reads_rationales = True

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        arch: Arch,
        *,
        tags: TagMode = "distinct",
        batch_size: int = 16,
        max_new_tokens: int = 128,
        answer_max_new_tokens: int = 16,
        input_limit: InputLimit = InputLimit(),
        show_progress: bool = True,
    ) -> None:
        self.model, self.tokenizer, self.arch = model, tokenizer, arch
        self.tags, self.tag = tags, task_tag(tags, False)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.answer_max_new_tokens = answer_max_new_tokens
        self.input_limit = input_limit
        self.show_progress = show_progress

    def predict(self, records: Sequence[RationaleRecord]) -> list[dict[str, Any]]:
        return predict_rationales(self.model, self.tokenizer, self.arch, list(records), tags=self.tags,
                                  batch_size=self.batch_size, max_new_tokens=self.max_new_tokens,
                                  input_limit=self.input_limit, show_progress=self.show_progress)  # fmt: skip

    def answers_after(self, records: Sequence[RationaleRecord], rationales: Sequence[str], desc: str
                      ) -> list[int | None]:  # fmt: skip
        prefixes = [rationale_prefix_ids(self.tokenizer, rationale, self.tag) for rationale in rationales]
        return self._answers_after_prefixes(records, prefixes, desc)

    def answers_after_perturbed(self, records: Sequence[RationaleRecord], rationales: Sequence[str], share: float,
                                rng: np.random.Generator, desc: str) -> list[int | None]:  # fmt: skip
        prefixes = [perturb_rationale_prefix(self.tokenizer, rationale, self.tag, share, rng)
                    for rationale in rationales]  # fmt: skip
        return self._answers_after_prefixes(records, prefixes, desc)

    def _answers_after_prefixes(self, records: Sequence[RationaleRecord], prefixes: list[list[int]], desc: str
                                ) -> list[int | None]:  # fmt: skip
        prompts = [prompt_ids(self.tokenizer, self.arch, record.question, record.choices, self.tag,
                              example_id=record.id, input_limit=self.input_limit) for record in records]  # fmt: skip
        continuations = generate_continuations(self.model, self.tokenizer, self.arch, prompts, prefixes,
                                               max_new_tokens=self.answer_max_new_tokens, batch_size=self.batch_size,
                                               desc=desc, show_progress=self.show_progress)  # fmt: skip
        return [parse_answer(f"{ANSWER_CUE}{text}", record.choices) for record, text in zip(records, continuations)]
