"""ToyWorld teacher: trains in seconds on a tiny world, is cached, and its readiness probe measures real retrieval."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from scd.models import CACHED_TRAINING_THREADS
from scd.toyworld import teacher
from scd.toyworld.checker import judge
from scd.toyworld.corpus import CorpusConfig
from scd.toyworld.teacher import (
    TeacherConfig,
    TeacherConfigError,
    TeacherNotReadyError,
    cache_key,
    ensure_teacher,
    probe_questions,
    probe_teacher,
    teacher_report,
)
from scd.toyworld.world import load_toyworld
from tests.conftest import TOYWORLD_PROMPT
from tests.helpers import TINY_WORLD

TINY_TEACHER = TeacherConfig(n_layers=2, d_model=32, n_heads=2, block_size=32, batch_size=8, max_steps=150,
                             learning_rate=3e-3, warmup_steps=10, probe_threshold=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    cache = tmp_path_factory.mktemp("teachers")
    return cache, ensure_teacher(TINY_WORLD, CorpusConfig(), TINY_TEACHER, TOYWORLD_PROMPT, cache, progress=False)


def load_teacher(path):
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_teacher_is_saved_with_report_and_loads(tiny_teacher):
    cache, path = tiny_teacher
    assert path.parent == cache and path.name.endswith(cache_key(TINY_WORLD, CorpusConfig(), TINY_TEACHER, TOYWORLD_PROMPT))
    report = teacher_report(path)
    assert report["teacher_config"]["max_steps"] == TINY_TEACHER.max_steps and report["train_seconds"] > 0
    world, splits = load_toyworld(TINY_WORLD)
    assert report["probe"]["n"] == len(probe_questions(splits, TINY_TEACHER.probe_size)) > 0
    model, tokenizer = load_teacher(path)
    assert model.config.model_type == "gpt_neox" and model.config.vocab_size == len(tokenizer)
    assert tokenizer.convert_tokens_to_ids("[factual]") != tokenizer.unk_token_id
    assert (path / "teacher" / "version_0" / "metrics.csv").exists()  # Lightning's CSV log of the loss


def test_tiny_teacher_learns_the_format(tiny_teacher):
    """150 steps teach a tiny teacher the grammar (not yet the facts): its greedy rationales parse."""
    _, path = tiny_teacher
    model, tokenizer = load_teacher(path)
    world, splits = load_toyworld(TINY_WORLD)
    held_out = splits["dev"] + splits["test"]
    questions = probe_questions(splits, TINY_TEACHER.probe_size)
    result = probe_teacher(model, tokenizer, questions, splits["train"][:2], TOYWORLD_PROMPT)
    assert result == teacher.ProbeResult(**teacher_report(path)["probe"])  # deterministic, and what was recorded
    grammatical = 0
    for example in held_out:
        separator = TOYWORLD_PROMPT.separator
        query = TOYWORLD_PROMPT.query(example.question, example.choices, example.answer_text)
        inputs = tokenizer(separator + query, return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        continuation = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])
        assert separator in continuation  # it ends its rationale with the separator, as in the corpus
        grammatical += judge(world, example, continuation.split(separator)[0]).grammatical
    assert grammatical >= 0.75 * len(held_out)


def test_second_call_reuses_the_cache(tiny_teacher, monkeypatch):
    cache, path = tiny_teacher

    def no_training(*args, **kwargs):
        raise AssertionError("the cached teacher was trained again")

    monkeypatch.setattr(teacher, "train_teacher", no_training)
    assert ensure_teacher(TINY_WORLD, CorpusConfig(), TINY_TEACHER, TOYWORLD_PROMPT, cache, progress=False) == path
    # A different configuration is a different teacher: it would train.
    with pytest.raises(AssertionError, match="trained again"):
        ensure_teacher(TINY_WORLD, CorpusConfig(teacher_error_rate=0.0), TINY_TEACHER, TOYWORLD_PROMPT, cache,
                       progress=False)
    assert len([p for p in cache.iterdir() if p.name.startswith("toyworld-teacher-")]) == 1


def test_untrained_teacher_fails_the_probe(tmp_path):
    config = dataclasses.replace(TINY_TEACHER, max_steps=1, probe_threshold=0.95)
    with pytest.raises(TeacherNotReadyError, match="failed its readiness probe"):
        ensure_teacher(TINY_WORLD, CorpusConfig(), config, TOYWORLD_PROMPT, tmp_path, progress=False)
    # The teacher is kept for inspection; asking again reports the same verdict without training, or just warns.
    with pytest.warns(UserWarning, match="failed its readiness probe"):
        ensure_teacher(TINY_WORLD, CorpusConfig(), config, TOYWORLD_PROMPT, tmp_path, require_ready=False,
                       progress=False)


@pytest.mark.parametrize("field, value", [("d_model", 30), ("max_steps", 0), ("probe_threshold", 2.0)])
def test_bad_teacher_config_names_the_field(field, value):
    with pytest.raises(TeacherConfigError, match=field):
        TeacherConfig(**{field: value})


def test_the_teacher_is_the_same_whatever_the_runs_thread_count(tmp_path):
    """The build trains on CACHED_TRAINING_THREADS threads: a run on one thread and a run on two get the same weights
    (before, the order of the two-threaded reductions gave another teacher)."""
    config = TeacherConfig(n_layers=2, d_model=128, n_heads=4, block_size=128, batch_size=8, max_steps=20,
                           warmup_steps=5, probe_size=4, probe_threshold=0.0)  # fmt: skip
    weights = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            path = ensure_teacher(TINY_WORLD, CorpusConfig(), config, TOYWORLD_PROMPT, tmp_path / str(threads),
                                  progress=False)  # fmt: skip
            assert torch.get_num_threads() == threads  # the run's own setting is put back
            weights.append((path / "model.safetensors").read_bytes())
    finally:
        torch.set_num_threads(previous)
    assert teacher_report(path)["build_threads"] == CACHED_TRAINING_THREADS
    assert weights[0] == weights[1]
