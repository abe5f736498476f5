"""LoRA students (``student.lora``) on tiny pretrained bases saved to disk, a T5 and a Qwen2 (the presets' student
families), under both objectives: only the adapters train and the loss falls; checkpoints hold the adapters and
resume exactly; the export (adapters + base name, or ``--merged`` full weights) is what evaluation and
``scd.predict`` load; the ``t5_3b`` recipe's trainable-parameter count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from scd.config import validate
from scd.models import load_model
from scd.student.data import StudentDataModule, collate_rows
from scd.student.lora import export, main, trainable_parameters
from scd.student.stage import build_student
from scd.student.train import fit_student
from tests.conftest import compose_config, validated
from tests.real_tokenizers import bpe_with_bos, sentencepiece_unigram
from tests.test_student_train import FIXTURES, trainer

# Dropout off (base and adapters): runs that differ only in being interrupted must compute the same steps.
BASES = {
    "seq2seq": dict(model_type="t5", d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2, dropout_rate=0.0),
    "causal": dict(model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024),
}


# Each family's kind of tokenizer (a Qwen2 checkpoint's tokenizer loads as Qwen2's BPE whatever class it names).
TOKENIZERS = {"seq2seq": sentencepiece_unigram, "causal": bpe_with_bos}


@pytest.fixture(scope="module", params=["seq2seq", "causal"])
def base(request, tmp_path_factory) -> tuple[str, Path]:
    """A pretrained base as a hub checkpoint is: model and tokenizer written by save_pretrained."""
    directory = tmp_path_factory.mktemp(f"base-{request.param}")
    tokenizer = TOKENIZERS[request.param]()
    load_model(request.param, tokenizer, random_init=BASES[request.param], seed=1).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return request.param, directory


def lora_config(arch: str, base_dir: Path, run_dir: Path, *overrides: str):
    raw = compose_config(["experiment=smoke", f"student.arch={arch}", f"student.name_or_path={base_dir}",
                          "student.random_init=null", "student.tokenizer=null", "student.lora.r=4",
                          "student.lora.dropout=0.0", "student.lr=1e-2", *overrides], run_dir, run_dir / "cache")
    return validated(raw)


class InOrder(StudentDataModule):
    """Training batches in file order: a resumed run's second epoch is then the uninterrupted run's (a shuffle draws
    from the global random state, which a resumed process does not share)."""

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_groups, batch_size=self.batch_size, collate_fn=self._collate())


def student(arch: str, base_dir: Path, run_dir: Path, training: str, batch_size: int = 4):
    cfg, components = lora_config(arch, base_dir, run_dir, f"training={training}")
    module = build_student(cfg.student, cfg.seed, str(base_dir), components.training, components.optimizer,
                           components.lr_schedule)
    data = InOrder(FIXTURES, module.tokenizer, arch, components.training, batch_size=batch_size,
                             decoder_start_token_id=getattr(module.model.config, "decoder_start_token_id", None))
    return module, data


def dev_loss(module, data) -> float:
    batch = collate_rows(data.dev_groups, module.tokenizer.pad_token_id)
    module.model.eval()
    with torch.no_grad():
        return float(module.losses(batch)["loss"])


@pytest.mark.parametrize("training", ["standard", "counterfactual"])
def test_only_the_adapters_train_and_the_loss_falls(base, tmp_path, training):
    arch, base_dir = base
    module, data = student(arch, base_dir, tmp_path, training)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    module.model.train()
    module.losses(batch)["loss"].backward()
    with_grad = {name for name, p in module.model.named_parameters() if p.grad is not None}
    assert with_grad and all("lora_" in name for name in with_grad)
    assert with_grad == {name for name, p in module.model.named_parameters() if p.requires_grad}
    module.model.zero_grad()
    frozen = {name: p.detach().clone() for name, p in module.model.named_parameters() if not p.requires_grad}
    before = dev_loss(module, data)
    fit_student(module, data, trainer(tmp_path, 12), ckpt_path=None)
    assert dev_loss(module, data) < before
    assert all(torch.equal(p, frozen[name]) for name, p in module.model.named_parameters() if name in frozen)
    # The checkpoint holds the adapters, not the base.
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state and all("lora_" in name for name in state)


class StopAt(pl.Callback):
    """Ends training after ``step`` steps, as a kill would, while the schedule still spans the whole run."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        trainer.should_stop = trainer.global_step >= self.step


def adapters(module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.model.named_parameters() if p.requires_grad}


def test_resume_gives_the_weights_of_an_uninterrupted_run(base, tmp_path):
    arch, base_dir = base
    # One batch an epoch: with two, a resumed run already differs from an uninterrupted one for a full-weight student
    # (measured: 0.003 at most after 4 steps), which is Lightning's resume of the epoch, not the adapters'.
    whole, data = student(arch, base_dir, tmp_path / "whole", "counterfactual", batch_size=64)
    fit_student(whole, data, trainer(tmp_path / "whole", 4, limit_val_batches=0), ckpt_path=None)
    first, data = student(arch, base_dir, tmp_path / "cut", "counterfactual", batch_size=64)
    interrupted = trainer(tmp_path / "cut", 4, limit_val_batches=0)
    interrupted.callbacks.append(StopAt(2))
    fit_student(first, data, interrupted, ckpt_path=None)
    assert first.trainer.global_step == 2
    resumed, data = student(arch, base_dir, tmp_path / "cut", "counterfactual", batch_size=64)
    fit_student(resumed, data, trainer(tmp_path / "cut", 4, limit_val_batches=0), ckpt_path="last")
    assert resumed.trainer.global_step == 4
    expected, got = adapters(whole), adapters(resumed)
    assert expected.keys() == got.keys()
    assert not all(torch.equal(got[name], value) for name, value in adapters(first).items())
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0)


@pytest.mark.slow
def test_export_is_adapters_and_base_name_and_predict_matches_the_in_run_evaluation(base, tmp_path):
    """A smoke run with a LoRA student: ``student/`` holds the adapters naming the base, the run's predictions equal
    scd.predict's on the same questions, and ``--merged`` full weights give the same logits."""
    from scd.data.records import read_split
    from scd.pipeline import run
    from scd.predict import Question, load_student, predict

    arch, base_dir = base
    run_dir = tmp_path / "run"
    raw = compose_config(["experiment=smoke", f"student.arch={arch}", f"student.name_or_path={base_dir}",
                          "student.random_init=null", "student.tokenizer=null", "student.lora.r=4"],
                         run_dir, tmp_path / "cache")  # fmt: skip
    run(*validated(raw), raw, run_dir)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(raw, run_dir / ".hydra" / "config.yaml")  # as run.py leaves it: scd.predict reads the run's settings
    student_dir = run_dir / "student"
    assert json.loads((student_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_dir)
    assert not (student_dir / "model.safetensors").exists()
    evaluated = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    test = read_split(run_dir / "rationales", "test")
    questions = [Question(r.id, r.question, r.choices, r.answer) for r in test]
    # In the run's batches: a causal student's rows are left-padded to their batch's longest.
    rows = predict(load_student(run_dir), questions, batch_size=raw.student.eval_batch_size, show_progress=False)
    assert [row["predicted"] for row in rows] == [row["predicted"] for row in evaluated]
    assert [row["rationale"] for row in rows] == [row["rationale"] for row in evaluated]

    merged_dir = tmp_path / "merged"
    main([str(run_dir), str(merged_dir), "--merged"])
    auto = AutoModelForSeq2SeqLM if arch == "seq2seq" else AutoModelForCausalLM
    merged, adapted = auto.from_pretrained(merged_dir).eval(), auto.from_pretrained(student_dir).eval()
    assert not any("lora_" in name for name in merged.state_dict())
    ids = torch.tensor([[5, 6, 7, 8, 1]])
    inputs = {"input_ids": ids, **({"decoder_input_ids": ids[:, :2]} if arch == "seq2seq" else {})}
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, adapted(**inputs).logits, rtol=1e-5, atol=1e-5)
    rows_merged = predict(load_student(merged_dir), questions, batch_size=raw.student.eval_batch_size,
                          show_progress=False)  # fmt: skip
    assert [row["predicted"] for row in rows_merged] == [row["predicted"] for row in rows]


def test_the_t5_3b_recipe_counts_its_trainable_parameters_from_the_config():
    """``student=t5_3b student.lora.r=16``: T5-3B's dimensions, built on the meta device (no download)."""
    from transformers import T5Config, T5ForConditionalGeneration

    from scd.config import LoraConfig
    from scd.student.lora import apply_lora

    config = T5Config(d_model=1024, d_ff=16384, num_heads=32, d_kv=128, num_layers=24, num_decoder_layers=24,
                      vocab_size=32128)  # fmt: skip
    with torch.device("meta"):
        model = T5ForConditionalGeneration(config)
    trainable, total = trainable_parameters(apply_lora(model, LoraConfig(r=16), "seq2seq"))
    # q, k, v, o of 24 encoder self-attentions and 24 decoder self- and cross-attentions: 288 projections of
    # 1024 <-> 32·128, each adapted by 16 · (1024 + 4096) weights.
    assert trainable == 288 * 16 * (1024 + 4096) == 23_592_960
    assert total - trainable == 2_851_598_336  # T5-3B's own weights


@pytest.mark.parametrize(("overrides", "message"), [
    (["student.lora.r=0"], "student.lora.r must be >= 1 or null, got 0"),
    (["student.lora.r=8"], "student.lora adapts a pretrained student: set student.name_or_path (the exported adapter "
                           "names its base model, which a random_init does not have)"),
    (["student=t5_3b", "student.lora.r=8", "student.lora.dropout=1"],
     "student.lora: alpha > 0 and 0 <= dropout < 1 are required, got alpha=32.0, dropout=1.0"),
])
def test_bad_lora_settings_are_one_error_line(tmp_path, overrides, message):
    with pytest.raises(ValueError) as error:
        validate(compose_config(["experiment=smoke", *overrides], tmp_path, tmp_path))
    assert str(error.value) == message


def test_a_family_without_default_targets_is_told_to_name_them():
    from scd.config import LoraConfig
    from scd.models import load_tokenizer
    from scd.student.lora import apply_lora

    bloom = load_model("causal", load_tokenizer("byt5"), random_init=dict(model_type="bloom", hidden_size=32,
                                                                          n_layer=1, n_head=2))  # fmt: skip
    with pytest.raises(ValueError, match=r"^student.lora.target_modules: no default for model_type 'bloom'; name"):
        apply_lora(bloom, LoraConfig(r=4), "causal")
    adapted = apply_lora(bloom, LoraConfig(r=4, target_modules=["query_key_value"]), "causal")
    assert 0 < trainable_parameters(adapted)[0] < trainable_parameters(adapted)[1]


def test_merging_a_full_weight_student_is_one_error_line(base, tmp_path, capsys):
    _, base_dir = base
    with pytest.raises(SystemExit) as exit_status:
        main([str(base_dir), str(tmp_path / "out"), "--merged"])
    assert exit_status.value.code == 1
    assert capsys.readouterr().err == f"scd: error: {base_dir}: no LoRA student here (no adapter_config.json)\n"
