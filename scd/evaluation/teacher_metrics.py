"""The metrics of one set of teacher rationales (keys ``teacher/<metric>`` and the task's), computed once, by the
teacher stage, and kept in the set's cache entry.

They depend on the rationales, the teacher and the judge, never on the student: every job that shares a rationale
set (a sweep over training modes or seeds) shares them, and the evaluate stage needs no teacher. In the cache entry:

- ``teacher_metrics.json``: ``teacher/fluency`` (the teacher's perplexity of its rationales after its prompt),
  ``teacher/new_info``, ``teacher/vacuity`` and the task's exact teacher metrics, with the versions they were
  measured by (``TEACHER_METRICS_VERSION`` and the task's ``teacher_metrics_version``): an entry measured by other
  versions is measured again when reused, so a metric added later reaches rationale sets cached before it;
- ``judge-<key>.json``: ``teacher/supports_answer``, from a judge simulator trained on the rationales, with the
  judge's config. The key is that config's hash, and the config is checked on reuse: a run with another simulator
  trains its own judge, without loading the teacher.

Each is written once per version, under the entry's lock; a read-only cache gives what it holds and computes what it
lacks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.utilities.seed import isolate_rng

from scd.config import Config
from scd.evaluation.simulator import fit_simulator
from scd.evaluation.teacher_quality import fluency, supports_answer_with_simulator, teacher_simulator_rows, text_metrics
from scd.io import atomic_write_text, can_write, config_key, exclusive
from scd.data.records import read_split
from scd.models import CACHED_TRAINING_THREADS, inference_device, load_tokenizer, torch_threads
from scd.task import Task
from scd.teacher.store import PROMPT_PREFIX_FILE, TEACHER_METRICS_FILE
from scd.teacher.loading import Teacher, teacher_prompt

log = logging.getLogger(__name__)

# Raise when a teacher/* metric is added or computed differently: cached rationale sets are then measured again.
TEACHER_METRICS_VERSION = 1
JUDGE_SEED = 0
# What a missing or damaged metrics file counts as written by: no version, so it is measured again.
_UNREADABLE = object()


def vocabulary_key(tokenizer: str | None) -> str | None:
    """A tokenizer's identity by its vocabulary (ids in order), wherever its files are."""
    if tokenizer is None:
        return None
    vocab = load_tokenizer(tokenizer).get_vocab()
    return config_key(sorted(vocab, key=vocab.get))


def stored(path: Path, compute: Callable[[], dict[str, Any]], version: Any = None) -> dict[str, Any]:
    """The JSON object in ``path``, computed and written once per ``version``, under the lock of its cache entry (held
    already while the teacher stage generates; taken here when it reuses a complete entry). An object written by
    another version (or none), or a file that cannot be read, is computed again and replaced. A read-only cache keeps
    what it holds: what it lacks is computed for this run only."""

    def written_version() -> Any:
        """The version the file was written by; a missing or unreadable file has none that matches."""
        try:
            return json.loads(path.read_text()).get("version", None)
        except (OSError, ValueError, AttributeError):
            return _UNREADABLE

    def current() -> bool:
        return written_version() == version

    if not current():
        if not can_write(path.parent):
            log.info("%s is read-only: %s computed for this run only", path.parent, path.name)
            return {"version": version, **compute()}
        with exclusive(path.parent):
            if not current():
                if path.exists():
                    log.info("%s: measured by version %s, measuring again with %s", path, written_version(), version)
                atomic_write_text(path, json.dumps({"version": version, **compute()}, indent=2, sort_keys=True) + "\n")
    return json.loads(path.read_text())


class RationaleSetMetrics:
    """The teacher stage's ``measure``: the metrics of the rationale set in a cache entry, computing and storing the
    parts it does not hold yet. ``shared_tokenizer`` is what the judge's ``tokenizer: teacher`` loads."""

    def __init__(self, cfg: Config, task: Task, shared_tokenizer: str | None) -> None:
        self.cfg = cfg
        self.task = task
        self.shared_tokenizer = shared_tokenizer
        # The judge measures the rationale set, so it is one per set: its seed is fixed, not the run's (the LAS
        # simulator, which measures a student, follows the run's seed).
        self.judge = replace(cfg.simulator, seed=JUDGE_SEED)
        # As JSON gives it back, so that a stored judge config compares equal to this one. The tokenizer by its
        # vocabulary, not its path: a cache copied or moved elsewhere keeps its judges.
        self.judge_config = json.loads(json.dumps({"simulator": asdict(self.judge),
                                                   "tokenizer": vocabulary_key(shared_tokenizer),
                                                   "threads": CACHED_TRAINING_THREADS}))  # fmt: skip
        self.version = {"scd": TEACHER_METRICS_VERSION, type(task).__name__: task.teacher_metrics_version}

    def __call__(self, store: Path, teacher: Callable[[], Teacher]) -> dict[str, float]:
        # The global random state is the run's (the student trains next); the judge's own is fixed by its seed, so the
        # stored value does not depend on which job of a sweep computed it.
        judge_file = store / f"judge-{config_key(self.judge_config)}.json"
        with isolate_rng():
            torch.manual_seed(JUDGE_SEED)
            measured = stored(store / TEACHER_METRICS_FILE, lambda: {"metrics": self.with_teacher(store, *teacher())},
                              self.version)  # fmt: skip
            judged = stored(judge_file, lambda: {"config": self.judge_config, "metrics": self.with_judge(store)})
        if judged["config"] != self.judge_config:
            raise ValueError(f"{judge_file}: written for another judge config; delete it to train this one's judge")
        return {**measured["metrics"], **judged["metrics"]}

    def with_teacher(self, store: Path, model: Any, tokenizer: Any) -> dict[str, float]:
        """Fluency under ``model``, the model-free text metrics and the task's exact teacher metrics."""
        test, test_cf = read_split(store, "test"), read_split(store, "test_counterfactual")
        metrics = text_metrics(test, test_cf)
        # The teacher wrote each rationale after the demonstrations and the query: score it in that context.
        prompt = teacher_prompt(self.cfg.teacher)
        prefix = (store / PROMPT_PREFIX_FILE).read_text(encoding="utf-8")
        pairs = [(prefix + prompt.query(r.question, r.choices, r.answer_text), r.rationale) for r in test if r.rationale]
        if pairs:
            if self.cfg.teacher.device_map is None:
                model = model.to(inference_device(self.cfg.trainer.accelerator))
            metrics["teacher/fluency"] = fluency(model, tokenizer, pairs, batch_size=self.cfg.teacher.batch_size)
        else:
            # Recorded as not measured (n/a), not left out: a metric that vanishes reads as if it was never asked.
            log.warning("teacher/fluency not measured: every test rationale is empty (decoding %s)",
                        ", ".join(sorted({r.decoding for r in test})))
            metrics["teacher/fluency"] = float("nan")
        metrics.update(self.task.teacher_metrics(store))
        return metrics

    def with_judge(self, store: Path) -> dict[str, float]:
        """Supports-answer, judged by a simulator trained to read which answer each rationale argues for."""
        train, train_cf = read_split(store, "train"), read_split(store, "train_counterfactual")
        with torch_threads(CACHED_TRAINING_THREADS):
            judge, tokenizer = fit_simulator(self.judge, self.cfg.trainer, teacher_simulator_rows(train + train_cf),
                                             self.shared_tokenizer)  # fmt: skip
        test = read_split(store, "test")
        score = supports_answer_with_simulator(judge, tokenizer, test, batch_size=self.cfg.simulator.batch_size)
        return {"teacher/supports_answer": score}
