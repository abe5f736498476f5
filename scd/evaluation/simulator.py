"""The LAS simulator: a seq2seq LM that learns to predict the student's answer (Hase et al., 2020).

One simulator is trained on three views of every training example, the view named at the start of its input:

- ``xe``: question, choices and rationale;
- ``x``: question and choices;
- ``e``: choices and rationale (the choices stay, as in Hase et al., so the simulator knows what it picks among).

Its target is the text of the answer the *student* predicted, not the gold answer. It predicts by scoring the
log-likelihood of every choice's text (the encoder runs once per input, the decoder over all choices in one batch)
and taking the argmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import BaseModelOutput

from scd.config import SimulatorConfig, TrainerConfig
from scd.evaluation.las import LASResult, leakage_adjusted_simulatability
from scd.models import InputLimit, load_model, load_tokenizer
from scd.progress import progress_callbacks
from scd.student.data import pad

View = Literal["xe", "x", "e"]
VIEWS: tuple[View, ...] = ("xe", "x", "e")


@dataclass(frozen=True)
class SimulatorRow:
    """One example as the simulator sees it; ``target`` is the student's predicted answer index, ``id`` names the
    example in errors."""

    question: str
    choices: tuple[str, ...]
    rationale: str
    target: int
    id: str = ""

    def __post_init__(self) -> None:
        if len(self.choices) < 2:
            raise ValueError(f"simulator row {self.question!r}: needs at least two choices, got {list(self.choices)}")
        if not 0 <= self.target < len(self.choices):
            raise ValueError(
                f"simulator row {self.question!r}: target {self.target} is not among {len(self.choices)} choices"
            )


def simulator_input(row: SimulatorRow, view: View) -> str:
    """The simulator's input text for one view, e.g. ``"view: e | choices: a; b | rationale: ..."``."""
    if view not in VIEWS:
        raise ValueError(f"unknown simulator view {view!r}: use one of {VIEWS}")
    parts = [f"view: {view}"]
    if view in ("xe", "x"):
        parts.append(f"question: {row.question}")
    parts.append("choices: " + "; ".join(row.choices))
    if view in ("xe", "e"):
        parts.append(f"rationale: {row.rationale}")
    return " | ".join(parts)


class SimulatorModule(pl.LightningModule):
    """Fits a seq2seq LM to map a view's input text to the student's answer text."""

    def __init__(self, model: PreTrainedModel, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("simulator/train_loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def encode_inputs(
    tokenizer: PreTrainedTokenizerBase, rows: Sequence[tuple[SimulatorRow, View]], input_limit: InputLimit
) -> dict[str, torch.Tensor]:
    """Each (row, view)'s input held to ``input_limit``, right-padded to the longest in the batch."""
    ids = [input_limit.apply(tokenizer(simulator_input(row, view))["input_ids"], row.id) for row, view in rows]
    return {"input_ids": pad(ids, tokenizer.pad_token_id), "attention_mask": pad([[1] * len(row) for row in ids], 0)}


class _Collator:
    """Encodes (row, view) pairs with the student's answer as target; padded label positions are ignored."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, input_limit: InputLimit) -> None:
        self.tokenizer = tokenizer
        self.input_limit = input_limit

    def __call__(self, pairs: Sequence[tuple[SimulatorRow, View]]) -> dict[str, torch.Tensor]:
        targets = [row.choices[row.target] for row, _ in pairs]
        labels = answer_labels(self.tokenizer, targets)
        return {**encode_inputs(self.tokenizer, pairs, self.input_limit), "labels": labels}


def answer_labels(tokenizer: PreTrainedTokenizerBase, answers: Sequence[str]) -> torch.Tensor:
    """Token ids of each answer ending in the end-of-sequence token, right-padded with -100 (ignored by the loss).

    The end token makes an answer's score count stopping after it, so "red" cannot win by being a prefix of
    "red car"; tokenizers that add no special tokens (word-level ones) get it appended here.
    """
    rows = []
    for answer in answers:
        ids = list(tokenizer(answer)["input_ids"])
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids.append(tokenizer.eos_token_id)
        rows.append(ids)
    labels = torch.full((len(rows), max(len(ids) for ids in rows)), -100, dtype=torch.long)
    for row, ids in enumerate(rows):
        labels[row, : len(ids)] = torch.tensor(ids)
    return labels


def train_simulator(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_rows: Sequence[SimulatorRow],
    *,
    trainer_kwargs: dict[str, Any] | None = None,
    batch_size: int = 16,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    input_limit: InputLimit = InputLimit(group="simulator"),
    seed: int = 0,
) -> PreTrainedModel:
    """Train ``model`` in place on all three views of ``train_rows`` with a Lightning Trainer; returns it in eval mode.

    ``trainer_kwargs`` go to ``pl.Trainer`` (``max_steps``, ``max_epochs``, ``accelerator``, ``logger``, ...); without a
    step or epoch limit the fit runs one epoch; by default it has no logger and writes no checkpoint. Progress shows as
    a bar on a terminal (unless ``enable_progress_bar`` is false), else as plain log lines. ``seed`` fixes
    the shuffling order. After a GPU fit Lightning hands the model back on the CPU: move it (``model.to("cuda")``)
    before ``simulate``, which runs on the model's current device.
    """
    if not train_rows:
        raise ValueError("train_simulator: no training rows")
    pairs = [(row, view) for row in train_rows for view in VIEWS]
    loader = DataLoader(
        pairs,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=_Collator(tokenizer, input_limit),
        generator=torch.Generator().manual_seed(seed),
    )
    settings: dict[str, Any] = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False}
    settings.update(trainer_kwargs or {})
    if "max_steps" not in settings and "max_epochs" not in settings:
        settings["max_epochs"] = 1
    bar_allowed = settings.get("enable_progress_bar", True)
    progress, settings["enable_progress_bar"] = progress_callbacks("simulator", bar_allowed)
    settings["callbacks"] = [*settings.get("callbacks", []), *progress]
    # Lightning keeps each submodule's train/eval flag as it finds it, and loaded HF models start in eval mode.
    model.train()
    trainer = pl.Trainer(**settings)
    trainer.fit(SimulatorModule(model, lr=lr, weight_decay=weight_decay), train_dataloaders=loader)
    # Lightning's teardown moves the model back to the CPU; scoring belongs on the device it trained on.
    return model.to(trainer.strategy.root_device).eval()


@torch.no_grad()
def score_choices(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[SimulatorRow],
    view: View,
    batch_size: int = 16,
    input_limit: InputLimit = InputLimit(group="simulator"),
) -> list[np.ndarray]:
    """Log-likelihood of every choice's text (summed over its tokens, end-of-sequence included), one array per row.

    ``batch_size`` counts rows; the decoder sees all their choices at once. The model runs on its current device.
    """
    model.eval()
    scores: list[np.ndarray] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        encoded = {key: value.to(model.device)
                   for key, value in encode_inputs(tokenizer, [(row, view) for row in batch], input_limit).items()}
        encoder_states = model.get_encoder()(
            input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]
        ).last_hidden_state
        # Each row's encoding is shared by its choices instead of re-encoding the input once per choice.
        counts = torch.tensor([len(row.choices) for row in batch], device=model.device)
        labels = answer_labels(tokenizer, [choice for row in batch for choice in row.choices]).to(model.device)
        logits = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_states.repeat_interleave(counts, dim=0)),
            attention_mask=encoded["attention_mask"].repeat_interleave(counts, dim=0),
            labels=labels,
        ).logits
        token_logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        choice_logp = token_logp.masked_fill(labels == -100, 0.0).sum(dim=-1).cpu().numpy()
        scores.extend(np.split(choice_logp, np.cumsum(counts.cpu().numpy())[:-1]))
    return scores


def simulate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[SimulatorRow],
    view: View,
    batch_size: int = 16,
    input_limit: InputLimit = InputLimit(group="simulator"),
) -> np.ndarray:
    """The simulator's predicted answer index for every row under ``view`` (argmax of the choice log-likelihoods)."""
    scores = score_choices(model, tokenizer, rows, view, batch_size=batch_size, input_limit=input_limit)
    return np.array([int(np.argmax(row_scores)) for row_scores in scores], dtype=np.int64)


def simulator_las(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[SimulatorRow],
    *,
    batch_size: int = 16,
    input_limit: InputLimit = InputLimit(group="simulator"),
    bootstrap_samples: int = 1000,
    seed: int = 0,
) -> tuple[LASResult, dict[View, np.ndarray]]:
    """LAS of the rationales in ``rows`` (test split, ``target`` = the student's answer) under a trained simulator,
    and the simulator's answer per row from each view."""
    predictions = {
        view: simulate(model, tokenizer, rows, view, batch_size=batch_size, input_limit=input_limit)
        for view in VIEWS
    }
    result = leakage_adjusted_simulatability(
        [row.target for row in rows], predictions["xe"], predictions["x"], predictions["e"],
        bootstrap_samples=bootstrap_samples, seed=seed,
    )
    return result, predictions


def fit_simulator(
    s: SimulatorConfig, trainer: TrainerConfig, rows: Sequence[SimulatorRow], tokenizer_source: str | None
) -> tuple[Any, Any]:
    """A simulator built as ``s`` says and trained on ``rows`` on the student's accelerator (``trainer``);
    ``tokenizer_source`` is what its ``tokenizer: teacher`` means (the task's shared tokenizer). Returns (model,
    tokenizer)."""
    tokenizer = load_tokenizer(tokenizer_source if s.tokenizer == "teacher" else s.tokenizer or s.name_or_path)
    model = load_model("seq2seq", tokenizer, name_or_path=s.name_or_path, random_init=s.random_init, seed=s.seed)
    trainer_kwargs = {"max_steps": s.max_steps, "accelerator": trainer.accelerator,
                      "enable_progress_bar": trainer.enable_progress_bar}
    train_simulator(model, tokenizer, rows, trainer_kwargs=trainer_kwargs, batch_size=s.batch_size, lr=s.lr,
                    input_limit=s.input_limit(), seed=s.seed)
    return model, tokenizer
