"""Train ToyWorld's teacher: a small causal LM, from scratch, on the world's corpus; cache it on disk.

The teacher is a randomly initialized GPT-NeoX (rotary positions, so prompts a little longer than the training
blocks still work) trained with a Lightning Trainer on random windows of the shuffled corpus lines joined by "\\n".
A readiness probe then reads held-out yes/no questions with their gold rationale, teacher-forced, and measures whether
the teacher puts the right category (retrieved through the entity: a two-hop fact it has never seen asked) and the
right property (copied from the question) at their places in the rationale. A teacher that fails the probe writes
fluent rationales about the wrong things, so generation should not start from it.

The corpus and the probe render their demonstrations with the teacher's prompt template (``teacher.template`` in
config), the one the teacher stage prompts it with. ``ensure_teacher`` trains once per (world, corpus, training,
prompt) configuration and reuses the directory. A build keeps a checkpoint in the cache entry's partial directory
(every ``CHECKPOINT_EVERY_N_STEPS`` steps and at a SIGTERM); the next build of the same configuration resumes from it
and ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import random
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_wsd_schedule

from scd.data.example import Example
from scd.models import CACHED_TRAINING_THREADS, load_model, torch_threads
from scd.io import config_key, lock_file
from scd.loggers import AppendingCSVLogger
from scd.student.callbacks import CHECKPOINT_DIR
from scd.progress import progress_callbacks
from scd.student.train import AtomicCheckpointIO
from scd.teacher.prompt import Demonstration, PromptTemplate
from scd.toyworld.corpus import CorpusConfig, build_corpus
from scd.toyworld.tokenizer import build_tokenizer
from scd.toyworld.world import World, WorldConfig, load_toyworld

CACHE_VERSION = 5  # bump when training or corpus code changes what a given configuration produces
# Version 5: the teacher trains on CACHED_TRAINING_THREADS; before, on whatever thread count the run had.
REPORT_FILE = "teacher.json"
# A build's resumable checkpoint (in its partial directory) is refreshed this often, and at a SIGTERM.
CHECKPOINT_EVERY_N_STEPS = 100

log = logging.getLogger(__name__)


class TeacherConfigError(ValueError):
    """A TeacherConfig field is out of range."""


class TeacherNotReadyError(ValueError):
    """The trained teacher failed its readiness probe (a ValueError: the run ends in one line naming the setting)."""


@dataclass(frozen=True)
class TeacherConfig:
    """Size and training of the ToyWorld teacher. Defaults: the run.py default (measured: 168 CPU-seconds, one thread).

    Copying the property from the question appeared between steps 300 and 500 in every run measured (batch 8 or 16),
    category retrieval earlier; 800 steps leave a margin and reach the probe threshold.
    """

    seed: int = 0  # seeds initialization and the order of training text
    n_layers: int = 4  # transformer layers
    d_model: int = 128  # hidden size
    n_heads: int = 4  # attention heads
    block_size: int = 128  # tokens per training window
    batch_size: int = 8  # windows per step
    max_steps: int = 800  # optimizer steps
    learning_rate: float = 3e-3  # AdamW peak learning rate
    warmup_steps: int = 50  # linear warm-up steps
    decay_fraction: float = 0.3  # last share of the steps, over which the rate decays to 0 (cosine); peak before
    weight_decay: float = 0.01  # AdamW weight decay
    probe_threshold: float = 0.95  # minimum probe accuracy (category and property) for a ready teacher
    probe_size: int = 200  # held-out yes/no questions the probe reads
    probe_demonstrations: int = 2  # training demonstrations before each probe question, as in a teacher prompt

    def __post_init__(self) -> None:
        positive = ("n_layers", "d_model", "n_heads", "block_size", "batch_size", "max_steps", "probe_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise TeacherConfigError(f"TeacherConfig.{name} = {getattr(self, name)!r}: must be >= 1")
        if self.d_model % self.n_heads:
            raise TeacherConfigError(
                f"TeacherConfig.d_model = {self.d_model}: must be a multiple of n_heads = {self.n_heads}"
            )
        if self.learning_rate <= 0:
            raise TeacherConfigError(f"TeacherConfig.learning_rate = {self.learning_rate!r}: must be > 0")
        for name in ("warmup_steps", "probe_demonstrations"):
            if getattr(self, name) < 0:
                raise TeacherConfigError(f"TeacherConfig.{name} = {getattr(self, name)!r}: must be >= 0")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise TeacherConfigError(f"TeacherConfig.decay_fraction = {self.decay_fraction!r}: must be in [0, 1]")
        if self.weight_decay < 0:
            raise TeacherConfigError(f"TeacherConfig.weight_decay = {self.weight_decay!r}: must be >= 0")
        if not 0.0 <= self.probe_threshold <= 1.0:
            raise TeacherConfigError(f"TeacherConfig.probe_threshold = {self.probe_threshold!r}: must be in [0, 1]")

    def model_init(self) -> dict[str, Any]:
        """The ``random_init`` dict for ``scd.models.load_model``."""
        return {
            "model_type": "gpt_neox",
            "hidden_size": self.d_model,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "intermediate_size": 4 * self.d_model,
            "max_position_embeddings": 4 * self.block_size,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0},
        }


class CorpusWindows(IterableDataset):
    """Endless ``block_size`` windows of the corpus: lines reshuffled every pass, joined by the separator's tokens."""

    def __init__(self, lines: Sequence[list[int]], separator_ids: list[int], block_size: int, seed: int) -> None:
        self.lines = lines
        self.separator_ids = separator_ids
        self.block_size = block_size
        self.seed = seed

    def __iter__(self) -> Iterator[torch.Tensor]:
        rng = random.Random(self.seed)
        buffer: list[int] = []
        while True:
            order = list(range(len(self.lines)))
            rng.shuffle(order)
            for i in order:
                buffer += self.lines[i] + self.separator_ids
                while len(buffer) >= self.block_size:
                    yield torch.tensor(buffer[: self.block_size])
                    buffer = buffer[self.block_size :]


class CausalLMModule(pl.LightningModule):
    """Next-token training of a Hugging Face causal LM, warm-up / stable / decay learning rate.

    The rate stays at its peak until the last ``decay_fraction`` of the steps: copying the property from the question
    appears abruptly during training, and it appeared late or not at all when a cosine schedule had already lowered
    the rate.
    """

    def __init__(self, model: PreTrainedModel, learning_rate: float, warmup_steps: int, max_steps: int,
                 decay_fraction: float, weight_decay: float) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.learning_rate = learning_rate
        self.warmup_steps = warmup_steps
        self.max_steps = max_steps
        self.decay_fraction = decay_fraction
        self.weight_decay = weight_decay

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.model(input_ids=batch, labels=batch).loss
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        return adamw_warmup_stable_decay(self.parameters(), self.learning_rate, self.weight_decay, self.warmup_steps,
                                         self.decay_fraction, self.max_steps)  # fmt: skip


def adamw_warmup_stable_decay(
    parameters: Any, learning_rate: float, weight_decay: float, warmup_steps: int, decay_fraction: float,
    max_steps: int,
) -> dict[str, Any]:
    """Lightning's optimizer config for ToyWorld's models trained in code: AdamW with linear warm-up, a stable rate,
    and decay to 0 over the last ``decay_fraction`` of the steps."""
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    decay_steps = round(decay_fraction * max_steps)
    schedule = get_wsd_schedule(optimizer, min(warmup_steps, max_steps - decay_steps), decay_steps,
                                num_training_steps=max_steps)  # fmt: skip
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


@dataclass(frozen=True)
class ProbeResult:
    category_accuracy: float  # the category after the entity was retrieved correctly (two-hop recall)
    property_accuracy: float  # the property was copied correctly
    n: int  # questions probed

    @property
    def accuracy(self) -> float:
        return min(self.category_accuracy, self.property_accuracy)


def demonstration(example: Example) -> Demonstration:
    return Demonstration(example.question, example.choices, example.answer_text, example.rationale or "")


def probe_teacher(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[Example],
    demonstrations: Sequence[Example],
    prompt: PromptTemplate,
    batch_size: int = 64,
) -> ProbeResult:
    """Teacher-forced accuracy at the first category and property token of each question's gold rationale.

    Each input is ``demonstrations`` and the question, rendered with ``prompt`` as in a teacher prompt, with the
    gold rationale in place of generation.
    """
    prefix = prompt.prefix([demonstration(d) for d in demonstrations])
    inputs, targets = [], []
    for example in questions:
        head = prefix + prompt.query(example.question, example.choices, example.answer_text)
        head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
        rationale_ids = tokenizer(example.rationale, add_special_tokens=False)["input_ids"]
        wanted = [tokenizer.convert_tokens_to_ids(example.meta[key]) for key in ("category", "property")]
        inputs.append(head_ids + rationale_ids)
        targets.append([len(head_ids) + rationale_ids.index(token) for token in wanted])
    hits = torch.zeros(2)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            width = max(map(len, chunk))
            ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in chunk])
            mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in chunk])
            predicted = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
            for row, positions in enumerate(targets[start : start + batch_size]):
                for slot, position in enumerate(positions):
                    hits[slot] += int(predicted[row, position - 1] == ids[row, position])
    category, prop = (hits / max(len(inputs), 1)).tolist()
    return ProbeResult(category, prop, len(inputs))


def probe_questions(splits: dict[str, list[Example]], size: int) -> list[Example]:
    """The first ``size`` held-out yes/no questions. Multiple-choice ones are left out: for an unreliable entity the
    corpus argues for another choice, so the teacher rightly names that choice's category instead of the gold one."""
    return [ex for ex in splits["dev"] + splits["test"] if ex.meta["kind"] == "yesno"][:size]


def corpus_windows(world: World, splits: dict[str, list[Example]], corpus_config: CorpusConfig,
                   teacher_config: TeacherConfig, prompt: PromptTemplate, tokenizer: PreTrainedTokenizerBase
                   ) -> CorpusWindows:  # fmt: skip
    """The teacher's training stream: the world's corpus rendered with ``prompt``, tokenized, in windows."""
    corpus = build_corpus(world, splits, corpus_config)
    lines = [tokenizer(line, add_special_tokens=False)["input_ids"] for line in corpus.lines(prompt)]
    separator_ids = tokenizer(prompt.separator, add_special_tokens=False)["input_ids"]
    return CorpusWindows(lines, separator_ids, teacher_config.block_size, teacher_config.seed)


def train_teacher(
    world: World,
    splits: dict[str, list[Example]],
    corpus_config: CorpusConfig,
    teacher_config: TeacherConfig,
    prompt: PromptTemplate,
    tokenizer: PreTrainedTokenizerBase,
    log_dir: Path,
    progress: bool = True,
    checkpoint: Path | None = None,
) -> PreTrainedModel:
    """A randomly initialized causal LM trained on the world's corpus for ``teacher_config.max_steps`` steps. With
    ``checkpoint``, training keeps a resumable checkpoint there and resumes from it if it exists (``fit_on_cpu``): the
    same weights as a build that was never interrupted."""
    windows = corpus_windows(world, splits, corpus_config, teacher_config, prompt, tokenizer)
    # The stream is seeded and endless, so step k of any build reads the same windows: a resumed build reads on from
    # where the checkpoint's step left it, as the uninterrupted build did (Lightning restarts an iterable's iterator).
    resumed_step = checkpoint_step(checkpoint) if checkpoint is not None and checkpoint.is_file() else 0
    stream = SkipFirst(windows, resumed_step * teacher_config.batch_size) if resumed_step else windows
    model = load_model("causal", tokenizer, random_init=teacher_config.model_init(), seed=teacher_config.seed)
    module = CausalLMModule(model, teacher_config.learning_rate, teacher_config.warmup_steps, teacher_config.max_steps,
                            teacher_config.decay_fraction, teacher_config.weight_decay)  # fmt: skip
    # Appending: a resumed build continues the interrupted one's loss log rather than replacing it.
    logger = AppendingCSVLogger(str(log_dir), name="teacher", version=0)
    if resumed_step:
        drop_logged_steps(Path(logger.log_dir) / "metrics.csv", resumed_step)
    fit_on_cpu(module, DataLoader(stream, batch_size=teacher_config.batch_size), teacher_config.max_steps, logger,
               progress, checkpoint=checkpoint)  # fmt: skip
    return model


class SkipFirst(IterableDataset):
    """``dataset`` without its first ``count`` items."""

    def __init__(self, dataset: IterableDataset, count: int) -> None:
        self.dataset = dataset
        self.count = count

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.dataset), self.count, None)


def drop_logged_steps(metrics_csv: Path, first: int) -> None:
    """Remove the rows of steps ``first`` and later from a CSV loss log: an interrupted build logged them after its
    last checkpoint, and the resumed build trains and logs them again."""
    if not metrics_csv.is_file():
        return
    with open(metrics_csv, newline="") as handle:
        header, *rows = list(csv.reader(handle))
    step = header.index("step")
    with open(metrics_csv, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *(row for row in rows if int(row[step]) < first)])


def checkpoint_step(path: Path) -> int:
    """The optimizer steps a Lightning checkpoint was saved after (memory-mapped: the weights are not read)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


class ResumableCheckpoint(pl.Callback):
    """Saves the whole training state to ``path`` every ``every_n_steps`` optimizer steps, and when a SIGTERM stops
    the loop: Lightning stops it between steps, so that state is whole. An interruption mid-step (Ctrl-C) keeps the
    last periodic checkpoint instead."""

    def __init__(self, path: Path, every_n_steps: int) -> None:
        self.path = path
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        if trainer.global_step % self.every_n_steps == 0 and trainer.global_step < trainer.max_steps:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path, weights_only=False)


def fit_on_cpu(module: pl.LightningModule, loader: DataLoader, max_steps: int, logger: Any, progress: bool,
               checkpoint: Path | None = None) -> None:  # fmt: skip
    """Train one of ToyWorld's models built in code (the teacher) for ``max_steps`` on the CPU, gradients clipped at
    1; progress as a bar on a terminal (with ``progress``), else as log lines. With ``checkpoint``, a resumable
    checkpoint is kept there (``ResumableCheckpoint``) and training resumes from it if it exists; ``loader`` must then
    resume its data too."""
    callbacks, bar = progress_callbacks("ToyWorld teacher", progress)
    resume = None
    if checkpoint is not None:
        callbacks.append(ResumableCheckpoint(checkpoint, CHECKPOINT_EVERY_N_STEPS))
        resume = str(checkpoint) if checkpoint.is_file() else None
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=logger,
        log_every_n_steps=max(1, min(50, max_steps // 10)),
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=bar,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        gradient_clip_val=1.0,
    )
    with warnings.catch_warnings():
        # One CPU process reads in-memory data: extra data-loader workers would only compete for the cores.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        # The loader resumes its endless stream itself (train_teacher), which Lightning cannot see.
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
        trainer.fit(module, loader, ckpt_path=resume, weights_only=True)


def cache_key(world_config: WorldConfig, corpus_config: CorpusConfig, teacher_config: TeacherConfig,
              prompt: PromptTemplate) -> str:  # fmt: skip
    """A hash of everything that determines the trained teacher."""
    payload = {
        "version": CACHE_VERSION,
        "world": asdict(world_config),
        "corpus": asdict(corpus_config),
        "teacher": asdict(teacher_config),
        "prompt": asdict(prompt),
    }
    return config_key(payload)


def _check_ready(report: dict[str, Any], threshold: float, path: Path, require_ready: bool) -> None:
    probe = report["probe"]
    if min(probe["category_accuracy"], probe["property_accuracy"]) >= threshold:
        return
    message = (
        f"ToyWorld teacher at {path} failed its readiness probe: category accuracy {probe['category_accuracy']:.3f}, "
        f"property accuracy {probe['property_accuracy']:.3f} on {probe['n']} held-out questions, threshold "
        f"{threshold}. Its rationales would name wrong categories or properties; train longer "
        "(teacher.trained.training.max_steps) or use a smaller world."
    )
    if require_ready:
        raise TeacherNotReadyError(message)
    warnings.warn(message, stacklevel=3)


def ensure_teacher(
    world_config: WorldConfig,
    corpus_config: CorpusConfig,
    teacher_config: TeacherConfig,
    prompt: PromptTemplate,
    cache_dir: str | os.PathLike[str],
    require_ready: bool = True,
    progress: bool = True,
) -> Path:
    """The directory of a trained teacher (model and tokenizer, loadable with the Auto classes), training it if needed.

    The directory is ``cache_dir/toyworld-teacher-<hash>``; ``teacher.json`` in it records the configuration, the
    training time and the probe result. The tokenizer covers the world and the words of ``prompt``. A teacher below
    ``teacher_config.probe_threshold`` raises ``TeacherNotReadyError`` (or warns, with ``require_ready=False``).
    """
    cache_dir = Path(cache_dir)
    key = cache_key(world_config, corpus_config, teacher_config, prompt)
    path = cache_dir / f"toyworld-teacher-{key}"
    # A built teacher never changes again: reading it needs no lock (nor a writable cache).
    if not (path / REPORT_FILE).exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Two runs needing the same teacher (parallel sweep jobs): one builds, the other waits, then finds it built.
        with lock_file(cache_dir / f".{path.name}.lock"):
            if not (path / REPORT_FILE).exists():
                log.info("ToyWorld teacher: training on first use into %s: %d steps of %d windows, %d layers of "
                         "d_model %d (the run.py default, 2000 steps of 8 x 128, took 155 s on one idle core; "
                         "several times that on a busy machine)", path, teacher_config.max_steps,
                         teacher_config.batch_size, teacher_config.n_layers, teacher_config.d_model)  # fmt: skip
                build_teacher(path, world_config, corpus_config, teacher_config, prompt, progress)
    report = teacher_report(path)
    _check_ready(report, teacher_config.probe_threshold, path, require_ready)
    return path


def build_teacher(path: Path, world_config: WorldConfig, corpus_config: CorpusConfig, teacher_config: TeacherConfig,
                  prompt: PromptTemplate, progress: bool) -> None:  # fmt: skip
    """Train the teacher and save it with its ``teacher.json`` to ``path``. The build happens in ``partial_dir(path)``,
    renamed to ``path`` when complete, so an interrupted build never leaves a half-written teacher; what it keeps
    there (its last checkpoint, its loss log) is resumed from by the next build. Call under the entry's lock."""
    world, splits = load_toyworld(world_config)
    tokenizer = build_tokenizer(world, [prompt.prefix([demonstration(splits["train"][0])])])
    building = partial_dir(path)
    checkpoint = building / CHECKPOINT_DIR / "last.ckpt"
    if checkpoint.is_file():
        log.info("ToyWorld teacher: resuming the interrupted build from step %d of %d (%s)",
                 checkpoint_step(checkpoint), teacher_config.max_steps, checkpoint)  # fmt: skip
    else:
        # Nothing to resume from (a build stopped before its first checkpoint): start clean, its loss log too.
        shutil.rmtree(building, ignore_errors=True)
    building.mkdir(exist_ok=True)
    with torch.random.fork_rng(devices=[]), torch_threads(CACHED_TRAINING_THREADS):
        torch.manual_seed(teacher_config.seed)
        started = time.perf_counter()
        model = train_teacher(world, splits, corpus_config, teacher_config, prompt, tokenizer, building, progress,
                              checkpoint)  # fmt: skip
        train_seconds = time.perf_counter() - started
    held_out = probe_questions(splits, teacher_config.probe_size)
    demonstrations = splits["train"][: teacher_config.probe_demonstrations]
    probe = probe_teacher(model, tokenizer, held_out, demonstrations, prompt)
    model.save_pretrained(building)
    tokenizer.save_pretrained(building)
    report = {
        "world_config": asdict(world_config),
        "corpus_config": asdict(corpus_config),
        "teacher_config": asdict(teacher_config),
        "prompt": asdict(prompt),
        "train_seconds": round(train_seconds, 1),  # of the last build's process only, when it resumed another
        "build_threads": CACHED_TRAINING_THREADS,
        "probe": asdict(probe),
    }
    (building / REPORT_FILE).write_text(json.dumps(report, indent=2))
    os.replace(building, path)
    # The training state is needed no more once the teacher is in place.
    shutil.rmtree(path / CHECKPOINT_DIR, ignore_errors=True)


def partial_dir(path: Path) -> Path:
    """Where the teacher for ``path`` is built, and an interrupted build's checkpoint waits for the rerun."""
    return path.with_name(f".{path.name}.partial")


def teacher_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``teacher.json`` of a teacher directory: configuration, ``train_seconds`` and ``probe``."""
    return json.loads((Path(path) / REPORT_FILE).read_text())

