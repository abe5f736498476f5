"""Evaluate a trained student on the test split: its own rationales and answers, and how its answers follow rationales.

All generation is greedy and batched. A decoder prefix (a rationale ending in "So the answer is") is left-padded with
an attention mask, for seq2seq decoders and causal prompts alike, so every row continues right after its own prefix.

Metrics (unparsable answers count as wrong / inconsistent):
- ``student/accuracy``, ``student/unparsable``: the student writes rationale and answer itself.
- ``student/oracle_accuracy``: the teacher's rationale for the gold answer is given; the student writes the answer.
- ``student/perturbed_consistency``: a share of the student's own rationale tokens are replaced by random tokens; the
  fraction of answers that stay the same (a student that ignores its rationale scores high).
- ``student/counterfactual_consistency`` (only with counterfactual test rationales): the teacher's rationale for the
  perturbed answer is given; the fraction of answers that name the perturbed answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from scd.data.records import RationaleRecord
from scd.io import atomic_write_text
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


def _answers_after(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    arch: Arch,
    records: list[RationaleRecord],
    prefixes: list[list[int]],
    tag: str,
    *,
    desc: str,
    input_limit: InputLimit,
    **generation: Any,
) -> list[int | None]:
    continuations = generate_continuations(
        model,
        tokenizer,
        arch,
        [prompt_ids(tokenizer, arch, record.question, record.choices, tag, example_id=record.id,
                    input_limit=input_limit) for record in records],
        prefixes,
        desc=desc,
        **generation,
    )
    return [parse_answer(f"{ANSWER_CUE}{text}", record.choices) for record, text in zip(records, continuations)]


def _teacher_prefixes(tokenizer: PreTrainedTokenizerBase, records: list[RationaleRecord], tag: str) -> list[list[int]]:
    """Token ids of ``"{tag} {teacher's rationale} So the answer is"`` per record."""
    return [rationale_prefix_ids(tokenizer, record.rationale, tag) for record in records]


def _share(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else float("nan")


def evaluate_student(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    arch: Arch,
    test_records: list[RationaleRecord],
    *,
    run_dir: str | Path,
    test_counterfactual: list[RationaleRecord] | None = None,
    tags: TagMode = "distinct",
    batch_size: int = 16,
    max_new_tokens: int = 128,
    answer_max_new_tokens: int = 16,
    perturb_share: float = 0.3,
    seed: int = 0,
    input_limit: InputLimit = InputLimit(),
    show_progress: bool = True,
) -> dict[str, float]:
    """Compute the ``student/*`` metrics on ``test_records`` and write ``run_dir/predictions/test.jsonl`` (one line per
    record, unparsable ones included). ``test_counterfactual`` holds the teacher's rationales for the perturbed answers
    (matched by id); without it (or with none, as ``decoding=human`` may leave) ``student/counterfactual_consistency``
    is left out."""
    if not test_records:
        raise ValueError("no test records to evaluate")
    tag = task_tag(tags, False)
    answers = {"max_new_tokens": answer_max_new_tokens, "batch_size": batch_size, "show_progress": show_progress,
               "input_limit": input_limit}

    own = predict_rationales(
        model,
        tokenizer,
        arch,
        test_records,
        tags=tags,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        input_limit=input_limit,
        show_progress=show_progress,
    )
    # The test split's rationales argue for the gold answer (rationale_for == answer).
    oracle = _answers_after(
        model, tokenizer, arch, test_records, _teacher_prefixes(tokenizer, test_records, tag), tag,
        desc="oracle answers", **answers,
    )
    rng = np.random.default_rng(seed)
    perturbed_prefixes = [perturb_rationale_prefix(tokenizer, p["rationale"], tag, perturb_share, rng) for p in own]
    perturbed = _answers_after(
        model, tokenizer, arch, test_records, perturbed_prefixes, tag, desc="perturbed answers", **answers
    )

    rows = []
    for record, prediction, oracle_answer, perturbed_answer in zip(test_records, own, oracle, perturbed):
        rows.append(
            {
                **prediction,
                "answer": record.answer,
                "perturbed_answer": record.perturbed_answer,
                "correct": prediction["predicted"] == record.answer,
                "oracle_predicted": oracle_answer,
                "perturbed_rationale_predicted": perturbed_answer,
            }
        )
    metrics = {
        "student/accuracy": _share([row["correct"] for row in rows]),
        "student/unparsable": _share([row["predicted"] is None for row in rows]),
        "student/oracle_accuracy": _share([row["oracle_predicted"] == row["answer"] for row in rows]),
        "student/perturbed_consistency": _share(
            [row["predicted"] is not None and row["perturbed_rationale_predicted"] == row["predicted"] for row in rows]
        ),
    }

    if test_counterfactual:
        by_id = {record.id: record for record in test_counterfactual}
        matched = [(row, by_id[row["id"]]) for row in rows if row["id"] in by_id]
        if not matched:
            raise ValueError("test_counterfactual shares no id with the test records")
        counter_records = [counter for _, counter in matched]
        followed = _answers_after(
            model, tokenizer, arch, counter_records, _teacher_prefixes(tokenizer, counter_records, tag), tag,
            desc="counterfactual answers", **answers,
        )
        for (row, counter), answer in zip(matched, followed):
            row["counterfactual_predicted"] = answer
            row["counterfactual_rationale_for"] = counter.rationale_for
        metrics["student/counterfactual_consistency"] = _share(
            [row["counterfactual_predicted"] == row["counterfactual_rationale_for"] for row, _ in matched]
        )

    predictions = Path(run_dir) / "predictions" / "test.jsonl"
    predictions.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(predictions, "".join(json.dumps(row) + "\n" for row in rows))
    return metrics
