"""Counterfactual student training step: scd's fused, per-batch-padded step against a plain reference loop.

The reference pads every sequence to a fixed length (128) and runs the factual and the counterfactual batch as two
separate forward passes, as research code of this area does. Both train the same tiny random-init T5 (dropout off) on
the same synthetic questions with AdamW; the first step's losses must agree, which the result reports.

Run: ``python benchmarks/student_step.py`` (prints the result as JSON).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from scd.data.records import RationaleRecord
from scd.models import load_model, load_tokenizer
from scd.student.data import IGNORE_INDEX, EncodedRow, collate_rows, encode_row
from scd.student.module import StudentModule
from scd.student.objectives import Counterfactual

TINY_T5 = {
    "model_type": "t5", "d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4, "dropout_rate": 0.0
}
NAMES = ["blick", "dax", "wug", "fep", "toma", "zorp", "kib", "mab", "pif", "lom", "vim", "nax"]
VERBS = ["fly", "swim", "sing", "run", "dig", "climb"]


def synthetic_pairs(n_questions: int, seed: int) -> list[tuple[RationaleRecord, RationaleRecord]]:
    """Yes/no questions with a factual and a counterfactual rationale of varied length (one or two clauses)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for index in range(n_questions):
        name, group, verb = rng.choice(NAMES), rng.choice(NAMES), rng.choice(VERBS)
        answer = int(rng.integers(2))
        clauses = int(rng.integers(1, 3))

        def rationale(says_yes: bool) -> str:
            rule = f"every {group} can {verb}" if says_yes else f"no {group} can {verb}"
            return " , and ".join([rule, f"a {name} is a {group}"][:clauses]) + " ."

        common = {"question": f"can a {name} {verb} ?", "choices": ["yes", "no"], "decoding": "greedy"}
        pairs.append(
            (
                RationaleRecord(f"b{index}", answer=answer, perturbed_answer=1 - answer, rationale_for=answer,
                                rationale=rationale(answer == 0), **common),
                RationaleRecord(f"b{index}", answer=answer, perturbed_answer=1 - answer, rationale_for=1 - answer,
                                rationale=rationale(answer == 1), **common),
            )
        )
    return pairs


def pad_fixed(rows: list[EncodedRow], length: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """The reference's batches: every sequence padded to ``length``."""
    def fixed(sequences: list[list[int]], value: int) -> torch.Tensor:
        if max(map(len, sequences)) > length:
            raise ValueError(f"a sequence is longer than the reference length {length}")
        return torch.stack([F.pad(torch.tensor(s), (0, length - len(s)), value=value) for s in sequences])

    return {
        "input_ids": fixed([r.input_ids for r in rows], pad_token_id),
        "attention_mask": fixed([[1] * len(r.input_ids) for r in rows], 0),
        "decoder_input_ids": fixed([r.decoder_input_ids for r in rows], pad_token_id),
        "labels": fixed([r.labels for r in rows], IGNORE_INDEX),
    }


def _timed(step: Callable[[Any], float], batch: Any, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure_train_vs_ref(
    *,
    n_questions: int = 64,
    batch_size: int = 16,
    steps: int = 20,
    warmup: int = 3,
    ref_length: int = 128,
    alpha: float = 0.5,
    model_config: dict[str, Any] | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, float]:
    """Questions per second (each with its factual and counterfactual row) of one counterfactual training step."""
    if n_questions % batch_size:
        raise ValueError(f"n_questions ({n_questions}) must be a multiple of batch_size ({batch_size})")
    tokenizer = load_tokenizer("byt5")
    target = torch.device(device)
    model = load_model("seq2seq", tokenizer, random_init=model_config or TINY_T5, seed=seed).to(target).train()
    reference = copy.deepcopy(model)
    start_id = model.config.decoder_start_token_id
    pad_id = tokenizer.pad_token_id
    objective = Counterfactual(alpha=alpha)
    rows = [
        tuple(encode_row(row, tokenizer, "seq2seq", decoder_start_token_id=start_id)
              for row in (objective.factual_row(factual), objective.counterfactual_row(counterfactual)))
        for factual, counterfactual in synthetic_pairs(n_questions, seed)
    ]
    chunks = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]

    def to_device(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: value.to(target) for key, value in batch.items()}

    module = StudentModule(model, tokenizer, objective)
    ours_optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ours_batches = [to_device(collate_rows([list(pair) for pair in chunk], pad_id)) for chunk in chunks]

    def ours_step(batch: dict[str, torch.Tensor]) -> float:
        loss = module.losses(batch)["loss"]
        loss.backward()
        ours_optimizer.step()
        ours_optimizer.zero_grad(set_to_none=True)
        return loss.item()

    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3)
    reference_batches = [
        (to_device(pad_fixed([f for f, _ in chunk], ref_length, pad_id)),
         to_device(pad_fixed([c for _, c in chunk], ref_length, pad_id)))
        for chunk in chunks
    ]

    def reference_step(batch: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]) -> float:
        factual, counterfactual = batch
        loss = (1 - alpha) * reference(**factual).loss + alpha * reference(**counterfactual).loss
        loss.backward()
        reference_optimizer.step()
        reference_optimizer.zero_grad(set_to_none=True)
        return loss.item()

    ours_first, reference_first = ours_step(ours_batches[0]), reference_step(reference_batches[0])
    for index in range(warmup):
        ours_step(ours_batches[index % len(ours_batches)])
        reference_step(reference_batches[index % len(reference_batches)])
    # Alternate single steps, so load from other processes hits both loops alike.
    ours_seconds = reference_seconds = 0.0
    for index in range(steps):
        ours_seconds += _timed(ours_step, ours_batches[index % len(ours_batches)], target)
        reference_seconds += _timed(reference_step, reference_batches[index % len(reference_batches)], target)
    ours, ref = batch_size * steps / ours_seconds, batch_size * steps / reference_seconds
    return {
        "ours_examples_per_s": ours,
        "reference_examples_per_s": ref,
        "speedup": ours / ref,
        "ours_mean_padded_length": float(np.mean([b["decoder_input_ids"].shape[1] for b in ours_batches])),
        "reference_padded_length": float(ref_length),
        "first_step_loss_abs_diff": abs(ours_first - reference_first),
        "threads": float(torch.get_num_threads()),
    }


if __name__ == "__main__":
    print(json.dumps(measure_train_vs_ref(), indent=2))
