"""Rationale generation as a Lightning predict loop: batching, sharding across ranks and incremental writing.

Each job asks the teacher for the rationale of one answer (the gold one, or the perturbed one for the counterfactual
set). ``TeacherModule.predict_step`` decodes a batch with ``scd.teacher.decoding.decode``; ``ShardWriter`` appends
the records of each batch to this rank's shard file, so a killed run loses at most the batch in flight and a rerun
only decodes what is missing (``scd.teacher.store``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from scd.data.records import RationaleRecord
from scd.teacher.decoding import DecodingSettings, decode, encode_prefix
from scd.teacher.jobs import RationaleJob
from scd.teacher.prompt import PromptTemplate, leading_special_ids
from scd.teacher.strategies import DecodingStrategy, render_query

log = logging.getLogger(__name__)
# Above this share of empty rationales the teacher stage warns.
EMPTY_WARNING_SHARE = 0.25


class TeacherModule(pl.LightningModule):
    """A frozen causal LM that writes rationales with a decoding strategy (greedy, contrastive, ...).

    The model's placement has one owner. ``placed``: its loader put it on its devices (``teacher.device_map``, which
    may spread it over several GPUs), so it is kept out of the module's registered submodules and Lightning's predict
    loop, which moves the module to its device, cannot move it. Otherwise the model is a submodule and Lightning
    places it.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompt: PromptTemplate,
        prefix_text: str,
        decoding_name: str,
        strategy: DecodingStrategy,
        settings: DecodingSettings,
        placed: bool = False,
    ) -> None:
        super().__init__()
        model = model.eval().requires_grad_(False)
        if placed:
            object.__setattr__(self, "model", model)  # a plain attribute: not a submodule
        else:
            self.model = model
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.decoding_name = decoding_name
        self.strategy = strategy
        self.settings = settings
        self.prefix_ids = leading_special_ids(tokenizer) + tokenizer(prefix_text, add_special_tokens=False).input_ids
        self._prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._written = self._empty = 0  # rationales written by this predict loop, and how many are empty

    def query_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def prompts(self, jobs: Sequence[RationaleJob]) -> list[list[list[int]]]:
        """Each job's branches after the shared prefix: its gold prompt, then the prompts the strategy renders for its
        contrasts."""
        return [
            [self.query_ids(render_query(self.prompt, job.example, job.rationale_for)),
             *(self.query_ids(self.strategy.render(self.prompt, job.example, contrast))
               for contrast in self.strategy.contrasts(job))]
            for job in jobs
        ]  # fmt: skip

    def on_predict_start(self) -> None:
        self._written = self._empty = 0
        # The demonstrations are the same for every batch: encode them once per run, not once per batch.
        if self.settings.shared_prefix and self.prefix_ids:
            with torch.inference_mode():
                self._prefix_kv = encode_prefix(self.model, self.prefix_ids)

    def on_predict_end(self) -> None:
        # Empty rationales are valid records, so nothing downstream fails; a share this large is a setting to change.
        if self._written and self._empty > EMPTY_WARNING_SHARE * self._written:
            log.warning(
                "Teacher: %d of %d rationales came out empty under decoding=%s (%s): the first chosen token ends "
                "them. Lower decoding.lam or set decoding.plausibility=0.1 (a strong contrast can make the separator "
                "the best-scoring token), or check teacher.separator and the demonstrations.",
                self._empty, self._written, self.decoding_name, self.strategy,
            )

    def predict_step(self, batch: list[RationaleJob], batch_idx: int = 0) -> list[tuple[str, RationaleRecord]]:
        generated = decode(
            self.model, self.tokenizer, self.prefix_ids, self.prompts(batch), self.strategy, self.settings,
            self.prompt.separator, prefix_kv=self._prefix_kv,
        )
        records = []
        for job, ids in zip(batch, generated):
            text = self.tokenizer.decode(ids, skip_special_tokens=True).split(self.prompt.separator)[0].strip()
            ex = job.example
            record = RationaleRecord(
                ex.id, ex.question, list(ex.choices), ex.answer, job.perturbed_answer, job.rationale_for, text,
                self.decoding_name, dict(ex.meta),
            )
            records.append((job.split, record))
        self._written += len(records)
        self._empty += sum(not record.rationale for _, record in records)
        return records


class JobDataModule(pl.LightningDataModule):
    """Serves the pending jobs; each rank takes every world_size-th one, so no job is repeated or padded in."""

    def __init__(self, jobs: Sequence[RationaleJob], batch_size: int) -> None:
        super().__init__()
        self.jobs = list(jobs)
        self.batch_size = batch_size

    def transfer_batch_to_device(self, batch: list[RationaleJob], device: Any, dataloader_idx: int) -> list[RationaleJob]:
        # A batch is text; decode() builds its tensors on the model's device.
        return batch

    def predict_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        return DataLoader(self.jobs[rank::world], batch_size=self.batch_size, collate_fn=list, shuffle=False)


class ShardWriter(BasePredictionWriter):
    """Appends each finished batch to ``shard-rank<r>.jsonl`` and flushes, so finished work survives a kill."""

    def __init__(self, shard_dir: Path) -> None:
        super().__init__(write_interval="batch")
        self.shard_dir = shard_dir

    def write_on_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any, batch_indices: Any,
        batch: Any, batch_idx: int, dataloader_idx: int,
    ) -> None:
        lines = "".join(json.dumps({"split": split, **record.to_dict()}) + "\n" for split, record in prediction)
        shard = self.shard_dir / f"shard-rank{trainer.global_rank}.jsonl"
        try:
            with open(shard, "a", encoding="utf-8") as handle:
                handle.write(lines)
                handle.flush()
        except OSError as err:
            # A line cut here (a full disk) is dropped when the shard is read back; the next run appends after it.
            raise OSError(f"could not append to {shard}: {err.strerror or err}") from err
