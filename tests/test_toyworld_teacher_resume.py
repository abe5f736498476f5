"""An interrupted ToyWorld teacher build resumes: SIGTERM (and Ctrl-C, from the last periodic checkpoint) keeps a
checkpoint in the cache entry, and the rerun trains only the remaining steps to the same weights as a build that was
never interrupted (compared with torch.equal: CPU training with no dropout is deterministic)."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import torch
from transformers import AutoModelForCausalLM

from scd.signals import Interrupted, interrupt_on_signals
from scd.student.callbacks import CHECKPOINT_DIR
from scd.toyworld import teacher
from scd.toyworld.corpus import CorpusConfig
from scd.toyworld.teacher import TeacherConfig, checkpoint_step, ensure_teacher, partial_dir
from tests.conftest import TOYWORLD_PROMPT
from tests.helpers import TINY_WORLD

STEPS = 20
SMALL_TEACHER = TeacherConfig(n_layers=1, d_model=32, n_heads=2, block_size=32, batch_size=8, max_steps=STEPS,
                              learning_rate=3e-3, warmup_steps=4, probe_size=4, probe_threshold=0.0)  # fmt: skip


def build(cache):
    return ensure_teacher(TINY_WORLD, CorpusConfig(), SMALL_TEACHER, TOYWORLD_PROMPT, cache, progress=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return AutoModelForCausalLM.from_pretrained(build(tmp_path_factory.mktemp("uninterrupted"))).state_dict()


@pytest.fixture
def steps_trained(monkeypatch):
    """The global step of every training step this process runs; ``signal_at[step]`` sends that signal to this
    process during that step, as ``kill`` or Ctrl-C would."""
    trained: list[int] = []
    signal_at: dict[int, int] = {}
    real_step = teacher.CausalLMModule.training_step

    def training_step(self, batch, batch_idx):
        trained.append(self.global_step)
        if self.global_step in signal_at:
            os.kill(os.getpid(), signal_at[self.global_step])
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(teacher.CausalLMModule, "training_step", training_step)
    # A periodic checkpoint every 5 steps, so that a 20-step build makes some.
    monkeypatch.setattr(teacher, "CHECKPOINT_EVERY_N_STEPS", 5)
    return trained, signal_at


@pytest.mark.parametrize("signum, kept_step", [(signal.SIGTERM, 8), (signal.SIGINT, 5)])
def test_an_interrupted_teacher_build_resumes_to_the_same_weights(signum, kept_step, uninterrupted, steps_trained,
                                                                  tmp_path, caplog):  # fmt: skip
    """SIGTERM during step 8 stops the loop after it and checkpoints there; Ctrl-C stops mid-step, so the periodic
    checkpoint of step 5 is kept. Either way the rerun trains the remaining steps only."""
    trained, signal_at = steps_trained
    signal_at[7] = signum
    with pytest.raises(Interrupted), interrupt_on_signals():
        build(tmp_path)
    key = teacher.cache_key(TINY_WORLD, CorpusConfig(), SMALL_TEACHER, TOYWORLD_PROMPT)
    path = tmp_path / f"toyworld-teacher-{key}"
    assert not path.exists()  # no teacher under the final name
    assert checkpoint_step(partial_dir(path) / CHECKPOINT_DIR / "last.ckpt") == kept_step

    trained.clear()
    signal_at.clear()
    with caplog.at_level(logging.INFO):
        assert build(tmp_path) == path
    assert trained == list(range(kept_step, STEPS))
    for line in ("ToyWorld teacher: training on first use", f"resuming the interrupted build from step {kept_step} of "
                 f"{STEPS}", f"ToyWorld teacher: training {STEPS} steps", "ToyWorld teacher: step 20/20 (100%)"):
        assert line in caplog.text, line
    resumed = AutoModelForCausalLM.from_pretrained(path).state_dict()
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in uninterrupted)
    # The built teacher keeps no training state, and nothing is left to resume.
    assert not (path / CHECKPOINT_DIR).exists() and not partial_dir(path).exists()
    # One loss log across both processes, each logged step once (every 2nd of 20: Lightning counts steps from 0).
    rows = (path / "teacher" / "version_0" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[1]) for row in rows] == list(range(1, STEPS, 2))


def test_a_build_stopped_before_its_first_checkpoint_starts_clean(steps_trained, uninterrupted, tmp_path):
    trained, signal_at = steps_trained
    signal_at[2] = signal.SIGINT
    with pytest.raises(Interrupted), interrupt_on_signals():
        build(tmp_path)
    trained.clear()
    signal_at.clear()
    path = build(tmp_path)
    assert trained == list(range(STEPS))
    resumed = AutoModelForCausalLM.from_pretrained(path).state_dict()
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in uninterrupted)
