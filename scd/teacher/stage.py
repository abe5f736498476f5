"""The teacher stage: write ``rationales/<split>.jsonl`` for train, dev and test and their counterfactual splits.

Rationales are generated into ``<cache_dir>/rationales/<key>``, keyed by the config that decides them, and copied into
the run directory. A later run with the same teacher-relevant config (a sweep over training modes, say) reuses them; a
killed run resumes from its shards. The metrics of the rationale set are measured here too, while the teacher is
loaded (``measure``), and go into the run directory as ``rationales/teacher_metrics.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from scd.config import Config, DecodingLoopConfig, TeacherConfig
from scd.data.example import Example
from scd.data.records import RATIONALE_SPLITS, RationaleRecord
from scd.io import atomic_write_text, config_key, exclusive, publish_directory
from scd.signals import StopPredictionOnSigterm
from scd.task import Task
from scd.progress import progress_callbacks
from scd.teacher.decoding import DecodingSettings, settings_for_model
from scd.teacher.generation import JobDataModule, ShardWriter, TeacherModule
from scd.teacher.jobs import RationaleJob, build_jobs
from scd.teacher.loading import Teacher, demonstrations, load_teacher_model, teacher_prompt
from scd.teacher.store import PROMPT_PREFIX_FILE, TEACHER_METRICS_FILE, is_complete, merge_shards, read_shards
from scd.teacher.strategies import DecodingStrategy, WrittenRationales
from scd.teacher.strategies.contrast_text import ContrastText

log = logging.getLogger(__name__)

# Measures the rationale set in a cache directory, given a loader of the teacher (called only if it is needed).
Measure = Callable[[Path, Callable[[], Teacher]], dict[str, float]]

# Knobs that change speed (or refuse input), not output: they do not enter the cache key.
SPEED_ONLY = {"teacher": ("batch_size", "max_prompt_tokens"), "decoding_loop": ("merge_branches", "shared_prefix")}


def data_digest(splits: dict[str, list[Example]]) -> str:
    """A SHA-256 of the loaded examples (ids, questions, choices, answers, human rationales, meta) in split order:
    what generation reads, so data edited in place gives a new cache key while a moved data directory does not."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        for example in splits[name]:
            digest.update(json.dumps([name, asdict(example)], sort_keys=True, default=str).encode() + b"\n")
    return digest.hexdigest()


def component_settings(value: Any) -> Any:
    """A built component as plain data: a dataclass as its class and every field, defaults included (an unset lam
    and lam=0.5 decode the same rationales), nested components (``decoding.counterfactual``) likewise."""
    if is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}",
                **{f.name: component_settings(getattr(value, f.name)) for f in fields(value)}}  # fmt: skip
    return value


def teacher_key(
    cfg: Config, strategy: DecodingStrategy, splits: dict[str, list[Example]], teacher_dir: str | None = None
) -> str:
    """The rationale cache key: the data's content, the seed that picks demonstrations and perturbed answers, and the
    teacher, prompt and decoding settings. A teacher trained in code (``teacher_dir``, named by its own content hash)
    enters by name, so retraining it under the same config does not reuse the old teacher's rationales."""
    teacher = {k: v for k, v in asdict(cfg.teacher).items() if k not in SPEED_ONLY["teacher"]}
    loop = {k: v for k, v in asdict(cfg.decoding_loop).items() if k not in SPEED_ONLY["decoding_loop"]}
    decoding = {"strategy": component_settings(strategy), "loop": loop}
    trained = Path(teacher_dir).name if teacher_dir else None
    data = {"digest": data_digest(splits), "seed": cfg.dataset.seed}
    # The splits enter too: a store written before a split was added lacks its file.
    return config_key({"data": data, "teacher": teacher, "decoding": decoding, "trained": trained,
                       "splits": RATIONALE_SPLITS})


def decoding_settings(loop: DecodingLoopConfig, teacher: TeacherConfig) -> DecodingSettings:
    return DecodingSettings(max_new_tokens=teacher.max_new_tokens, **asdict(loop))


def check_prompts(
    module: TeacherModule, jobs: list[RationaleJob], max_context: int | None, max_prompt_tokens: int | None
) -> None:
    """Fail before decoding, naming the first example, if a question is longer than ``teacher.max_prompt_tokens`` or a
    prompt plus its rationale budget cannot fit the teacher's context."""
    budget = module.settings.max_new_tokens
    for job, branches in zip(jobs, module.prompts(jobs)):
        own = max(map(len, branches))
        if max_prompt_tokens is not None and own > max_prompt_tokens and len(branches[0]) <= max_prompt_tokens \
                and isinstance(module.strategy, ContrastText):
            # The question fits; the contrast prompt does not, through the text it puts in the answer's place.
            raise ValueError(
                f"decoding.text is too long for the teacher: the contrast prompt answering it has {own} tokens after "
                f"the demonstrations > teacher.max_prompt_tokens={max_prompt_tokens} ({job.split} example "
                f"{job.example.id!r}, whose own prompt fits); shorten decoding.text ({len(module.strategy.text)} "
                "characters)"
            )
        if max_prompt_tokens is not None and own > max_prompt_tokens:
            raise ValueError(
                f"question too long for the teacher: {job.split} example {job.example.id!r} has {own} tokens after "
                f"the demonstrations > teacher.max_prompt_tokens={max_prompt_tokens}; shorten or drop it, or raise "
                "teacher.max_prompt_tokens if the teacher's memory allows (a row's memory grows with its length)"
            )
        length = len(module.prefix_ids) + own
        if max_context is not None and length + budget > max_context:
            raise ValueError(
                f"prompt longer than the teacher's context: {job.split} example {job.example.id!r} needs "
                f"{length} prompt + {budget} new tokens > {max_context}; use fewer teacher.num_demonstrations "
                "or a smaller teacher.max_new_tokens"
            )


def load_teacher_module(
    cfg: Config, splits: dict[str, list[Example]], teacher_dir: str | None, strategy: DecodingStrategy, name: str
) -> tuple[str, TeacherModule]:
    """The prompt prefix (instruction and demonstrations) and the teacher module that decodes after it with
    ``strategy``; its records carry ``name``, the configured decoding's."""
    t = cfg.teacher
    model, tokenizer = load_teacher_model(t, teacher_dir)
    prompt = teacher_prompt(t)
    prefix = prompt.prefix(demonstrations(t, splits["train"], cfg.dataset.seed))
    # Decided here, before decoding: the path this model can take (a log line where it is not the configured one).
    settings = settings_for_model(model, decoding_settings(cfg.decoding_loop, t))
    return prefix, TeacherModule(model, tokenizer, prompt, prefix, name, strategy, settings,
                                 placed=t.device_map is not None)


def run_teacher_stage(
    cfg: Config, decoding: DecodingStrategy, task: Task, splits: dict[str, list[Example]], run_dir: Path,
    measure: Measure | None = None,
) -> Path:
    """Generate (or reuse) the rationales of ``task``'s ``splits`` with the strategy ``decoding`` (the run's, built
    from the ``decoding`` group) and copy them to ``run_dir/rationales``; returns that directory.

    ``measure`` (on global rank 0) gives the metrics of the rationale set, stored under the entry's lock; the teacher
    it may ask for is the one that just generated, or is loaded then. With several ranks (``trainer.devices`` > 1),
    each decodes its share of the jobs; global rank 0 merges, measures and copies.
    """
    teacher_dir = task.trained_teacher()
    store = Path(cfg.paths.cache_dir) / "rationales" / teacher_key(cfg, decoding, splits, teacher_dir)
    strategy = decoding.setup(task, splits)
    jobs = strategy.select(build_jobs(splits, cfg.dataset.seed))
    rank_zero = rank_zero_only.rank == 0
    # A complete entry never changes again: reading it needs no lock (nor a writable cache).
    complete = is_complete(store)
    if not complete:
        store.mkdir(parents=True, exist_ok=True)
    # Parallel sweep jobs with the same teacher config: one generates, the others wait here and reuse its files.
    # Other ranks run only inside rank 0's predict loop, while rank 0 holds the lock.
    with exclusive(store) if rank_zero and not complete else nullcontext():
        trainer, module = None, None
        if complete or is_complete(store):
            log.info("Reusing rationales from %s", store)
        else:
            trainer, module = generate(cfg, splits, store, jobs, teacher_dir, strategy)
        if rank_zero:
            if not is_complete(store):
                order = {split: [job.example.id for job in jobs if job.split == split] for split in RATIONALE_SPLITS}
                merge_shards(store, order, extra_files=[PROMPT_PREFIX_FILE])

            def teacher() -> Teacher:
                return (module.model, module.tokenizer) if module else load_teacher_model(cfg.teacher, teacher_dir)

            if measure:
                log.info("Teacher: measuring the rationale set (a judge simulator trains on it unless %s holds its "
                         "score)", store)
            metrics = measure(store, teacher) if measure else None
            coverage = strategy.coverage(splits)
            if any(coverage.values()):
                log.warning("decoding=%s: examples without a usable explanation (left out of train and dev, empty in "
                            "test): %s", decoding.name, {k.rsplit("/", 1)[1]: int(v) for k, v in coverage.items()})
            if coverage:
                metrics = {**(metrics or {}), **coverage}
            publish(store, run_dir, metrics)
        if trainer is not None:
            # The student stage comes next on every rank and reads the published files.
            trainer.strategy.barrier("teacher_rationales_published")
    return run_dir / "rationales"


def generate(
    cfg: Config, splits: dict[str, list[Example]], store: Path, jobs: list[RationaleJob], teacher_dir: str | None,
    strategy: DecodingStrategy,
) -> tuple[pl.Trainer | None, TeacherModule | None]:
    """Decode the jobs that have no record in the store's shards yet, each rank its share, into the store's shards.
    Returns the predict loop's Trainer and the teacher module, or (None, None) when nothing was pending."""
    done = read_shards(store)
    pending = [job for job in jobs if job.key not in done]
    log.info("Teacher: %d of %d rationales to generate (batches of teacher.batch_size=%d) into %s", len(pending),
             len(jobs), cfg.teacher.batch_size, store)  # fmt: skip
    if not pending:
        return None, None
    # The records carry the configured strategy's name, also those that strategy.decoder decodes.
    name = strategy.name
    if isinstance(strategy, WrittenRationales):
        written = [job for job in pending if strategy.writes(job)]
        if written:
            write_rationales_of(strategy, cfg, splits, store, written)
        pending = [job for job in pending if not strategy.writes(job)]
        if not pending:
            return None, None
        # The jobs the source keeps but does not write (decoding=human's perturbed answers) are decoded.
        strategy = strategy.decoder
    prefix, module = load_teacher_module(cfg, splits, teacher_dir, strategy, name)
    atomic_write_text(store / PROMPT_PREFIX_FILE, prefix)
    context = cfg.teacher.max_context or getattr(module.model.config, "max_position_embeddings", None)
    check_prompts(module, pending, context, cfg.teacher.max_prompt_tokens)
    progress, bar = progress_callbacks("teacher", cfg.trainer.enable_progress_bar)
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy, logger=False, enable_checkpointing=False,
        use_distributed_sampler=False, callbacks=[ShardWriter(store), StopPredictionOnSigterm(), *progress],
        enable_progress_bar=bar,
    )
    trainer.predict(module, datamodule=JobDataModule(pending, cfg.teacher.batch_size), return_predictions=False)
    # Rank 0 merges every rank's shard: all must be flushed first.
    trainer.strategy.barrier("teacher_shards_written")
    return trainer, module


def write_rationales_of(strategy: WrittenRationales, cfg: Config, splits: dict[str, list[Example]], store: Path,
                        jobs: list[RationaleJob]) -> None:  # fmt: skip
    """The jobs' rationales as ``strategy`` writes them, into rank 0's shard; the prompt prefix is still written (the
    teacher's fluency metric scores the rationales after it)."""
    t = cfg.teacher
    atomic_write_text(store / PROMPT_PREFIX_FILE,
                      teacher_prompt(t).prefix(demonstrations(t, splits["train"], cfg.dataset.seed)))  # fmt: skip
    lines = []
    for job in jobs:
        ex = job.example
        record = RationaleRecord(ex.id, ex.question, list(ex.choices), ex.answer, job.perturbed_answer,
                                 job.rationale_for, strategy.rationale(job), strategy.name, dict(ex.meta))  # fmt: skip
        lines.append(json.dumps({"split": job.split, **record.to_dict()}) + "\n")
    # A shard of its own: the ranks' decoding shards append to theirs.
    atomic_write_text(store / "shard-rank-written.jsonl", "".join(lines))


def publish(store: Path, run_dir: Path, metrics: dict[str, float] | None) -> Path:
    """Copy the merged rationales, and write their metrics, into ``run_dir/rationales`` as one directory rename, so
    a run directory never holds a partial or mixed set."""

    def copy(directory: Path) -> None:
        for name in [f"{split}.jsonl" for split in RATIONALE_SPLITS] + [PROMPT_PREFIX_FILE]:
            shutil.copyfile(store / name, directory / name)
        if metrics is not None:
            (directory / TEACHER_METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")

    return publish_directory(copy, run_dir / "rationales")
