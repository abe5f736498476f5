"""The path a real checkpoint takes: directories written by ``save_pretrained`` (a Qwen2 teacher with a Llama-3-style
BPE tokenizer with BOS, a T5 student with a SentencePiece-style Unigram tokenizer), loaded by ``teacher.name_or_path``
and ``student.name_or_path`` with ``teacher.dtype=bfloat16`` and ``teacher.device_map=auto``, through ``run.py`` and
``scd.predict``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, T5Config, T5ForConditionalGeneration

from tests.conftest import ROOT
from tests.real_tokenizers import bpe_with_bos, sentencepiece_unigram


def save_teacher(directory: Path) -> None:
    tokenizer = bpe_with_bos()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def save_student(directory: Path) -> None:
    tokenizer = sentencepiece_unigram()
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@pytest.mark.slow
def test_saved_checkpoints_run_end_to_end_and_predict(tmp_path):
    teacher, student, run_dir = tmp_path / "teacher", tmp_path / "student", tmp_path / "run"
    save_teacher(teacher)
    save_student(student)
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "experiment=smoke", "threads=1", f"hydra.run.dir={run_dir}",
         f"paths.cache_dir={tmp_path / 'cache'}", f"teacher.name_or_path={teacher}", "teacher.random_init=null",
         "teacher.tokenizer=null", "teacher.dtype=bfloat16", "teacher.device_map=auto",
         f"student.name_or_path={student}", "student.random_init=null", "student.tokenizer=null", "dataset.limit=4"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-20000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["student/accuracy"] <= 1.0
    # The teacher ran from its directory, in bfloat16: its rationales are its tokenizer's text.
    rationales = [json.loads(line) for line in (run_dir / "rationales" / "train.jsonl").read_text().splitlines()]
    assert len(rationales) == 4 and all(isinstance(r["rationale"], str) for r in rationales)
    saved = json.loads((run_dir / "student" / "config.json").read_text())
    assert saved["model_type"] == "t5" and (run_dir / "student" / "tokenizer.json").is_file()
    answers = tmp_path / "answers.jsonl"
    predicted = subprocess.run(
        [sys.executable, "-m", "scd.predict", str(run_dir), "--question", "Penguins are birds that cannot fly.",
         "--choices", "true", "false", "--output", str(answers), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    [row] = [json.loads(line) for line in answers.read_text().splitlines()]
    assert row["question"] == "Penguins are birds that cannot fly." and "output" in row
    assert predicted.stdout.startswith("1: Penguins are birds that cannot fly. [true | false] -> ")
