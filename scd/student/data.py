"""The student's data: the teacher's rationale files, encoded rows with their label masks, and per-batch padding.

Which rows a question gives is the training objective's choice (``scd.student.objectives``); a row is trained on its
whole target (rationale and answer), or only on the answer tokens that follow its rationale.
"""

from __future__ import annotations

from functools import partial
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from scd.models import Arch, InputLimit, check_arch
from scd.student.formatting import CAUSAL_SEPARATOR, first_token_at, format_answer, format_input, format_rationale_prefix

if TYPE_CHECKING:
    from scd.student.objectives import Objective, Row

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedRow:
    """One training row. ``input_ids`` is the encoder input (seq2seq) or prompt and target together (causal);
    ``answer_mask`` marks, beside ``labels``, the positions whose token is the answer's (after the rationale)."""

    input_ids: list[int]
    labels: list[int]
    decoder_input_ids: list[int] | None
    kind: int  # the index of the row's kind in its objective's ``kinds``
    answer_mask: list[bool]


def encode_prompt(tokenizer: PreTrainedTokenizerBase, input_text: str) -> list[int]:
    """A causal model's prompt: bos (where the tokenizer has one) and the input line."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + tokenizer(input_text + CAUSAL_SEPARATOR, add_special_tokens=False)["input_ids"]


def encode_target(
    tokenizer: PreTrainedTokenizerBase, rationale: str, answer: str, tag: str, *, answer_only: bool
) -> tuple[list[int], list[int], list[bool]]:
    """Token ids of ``"{tag} {rationale} So the answer is {answer}." + eos``, their labels and the answer mask (True
    from the first token of the answer, found in the tokenized whole target, to eos).

    With ``answer_only`` the labels are -100 up to the first token of the answer.
    """
    prefix = format_rationale_prefix(rationale, tag)
    text = prefix + format_answer(answer)
    answer_start = len(prefix) + 1  # format_answer puts one space before the answer
    ids, first_answer_token = first_token_at(tokenizer, text, answer_start)
    ids = ids + [tokenizer.eos_token_id]
    masked = first_answer_token if answer_only else 0
    answer_mask = [False] * first_answer_token + [True] * (len(ids) - first_answer_token)
    return ids, [IGNORE_INDEX] * masked + ids[masked:], answer_mask


def encode_row(
    row: Row, tokenizer: PreTrainedTokenizerBase, arch: Arch, *, decoder_start_token_id: int | None = None,
    input_limit: InputLimit = InputLimit(),
) -> EncodedRow:
    """Encode a row: ``"{tag} {question} choices: ..."`` to ``"{tag} {rationale} So the answer is {answer}."``, the
    answer being the one the record's rationale was written for. The input (a causal model's prompt) is held to
    ``input_limit``."""
    check_arch(arch)
    record = row.record
    input_text = format_input(record.question, record.choices, row.tag)
    target_ids, target_labels, answer_mask = encode_target(
        tokenizer, record.rationale, record.rationale_for_text, row.tag, answer_only=row.answer_only
    )
    if arch == "causal":
        prompt_ids = input_limit.apply(encode_prompt(tokenizer, input_text), record.id)
        return EncodedRow(
            input_ids=prompt_ids + target_ids,
            labels=[IGNORE_INDEX] * len(prompt_ids) + target_labels,
            decoder_input_ids=None,
            kind=row.kind,
            answer_mask=[False] * len(prompt_ids) + answer_mask,
        )
    if decoder_start_token_id is None:
        raise ValueError("a seq2seq student needs decoder_start_token_id (the model config's)")
    # The decoder input is the shifted target itself, not the shifted labels: those hide the rationale prefix.
    return EncodedRow(
        input_ids=input_limit.apply(tokenizer(input_text)["input_ids"], record.id),
        labels=target_labels,
        decoder_input_ids=[decoder_start_token_id] + target_ids[:-1],
        kind=row.kind,
        answer_mask=answer_mask,
    )


def pad(rows: list[list[int]], value: int, side: str = "right") -> torch.Tensor:
    return pad_sequence([torch.tensor(row) for row in rows], batch_first=True, padding_value=value, padding_side=side)


def collate_rows(groups: list[list[EncodedRow]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a batch of row groups (a question's rows, e.g. its factual and its counterfactual row) to the longest row
    of this batch, on the right. ``kind`` holds each row's kind index, ``answer_mask`` which labels are the answer's."""
    rows = [row for group in groups for row in group]
    input_ids = [row.input_ids for row in rows]
    batch = {
        "input_ids": pad(input_ids, pad_token_id),
        "attention_mask": pad([[1] * len(ids) for ids in input_ids], 0),
        "labels": pad([row.labels for row in rows], IGNORE_INDEX),
        "kind": torch.tensor([row.kind for row in rows]),
        "answer_mask": pad([row.answer_mask for row in rows], False),
    }
    if rows[0].decoder_input_ids is not None:
        batch["decoder_input_ids"] = pad([row.decoder_input_ids for row in rows], pad_token_id)
    return batch


class StudentDataModule(pl.LightningDataModule):
    """Train and dev batches from the teacher's rationale directory, with the rows the objective gives each question.

    A question's rows stay in one batch: with the counterfactual objective a batch of ``batch_size`` questions has
    ``2 * batch_size`` rows.
    """

    def __init__(
        self,
        rationale_dir: str | Path,
        tokenizer: PreTrainedTokenizerBase,
        arch: Arch,
        objective: Objective,
        *,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        decoder_start_token_id: int | None = None,
        input_limit: InputLimit = InputLimit(),
    ) -> None:
        super().__init__()
        self.rationale_dir = Path(rationale_dir)
        self.tokenizer = tokenizer
        self.arch = arch
        self.objective = objective
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.decoder_start_token_id = decoder_start_token_id
        self.input_limit = input_limit
        self.train_groups: list[list[EncodedRow]] = []
        self.dev_groups: list[list[EncodedRow]] = []

    def _encode(self, split: str) -> list[list[EncodedRow]]:
        return [
            [encode_row(row, self.tokenizer, self.arch, decoder_start_token_id=self.decoder_start_token_id,
                        input_limit=self.input_limit)
             for row in group]
            for group in self.objective.groups(self.rationale_dir, split)
        ]

    def setup(self, stage: str | None = None) -> None:
        self.train_groups = self._encode("train")
        self.dev_groups = self._encode("dev")

    def _collate(self) -> partial:
        return partial(collate_rows, pad_token_id=self.tokenizer.pad_token_id)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_groups,
            batch_size=self.batch_size,
            shuffle=True,
            collate_fn=self._collate(),
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.dev_groups, batch_size=self.eval_batch_size, collate_fn=self._collate(), num_workers=self.num_workers
        )
