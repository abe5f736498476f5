"""Student data module, collate, and the standard / counterfactual objectives' losses in the Lightning module."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from transformers.optimization import Adafactor

from scd.data.records import RationaleFileError, read_rationales, read_split
from scd.models import load_model, load_tokenizer
from scd.student.data import IGNORE_INDEX, EncodedRow, StudentDataModule, collate_rows, encode_row
from scd.student.module import StudentModule
from scd.student.objectives import Counterfactual, Standard
from tests.conftest import TINY_STUDENTS as TINY, compose_config, validated

FIXTURES = Path(__file__).parent / "fixtures" / "student" / "rationales"


def tiny(arch: str):
    tokenizer = load_tokenizer("byt5")
    # eval(): no dropout, so two forward passes over the same rows agree.
    return load_model(arch, tokenizer, random_init=TINY[arch]).eval(), tokenizer


def groups(arch: str, tokenizer, counterfactual: bool, split: str = "train") -> list[list[EncodedRow]]:
    """The first 3 questions of a split as the objective's rows: factual, each followed by its counterfactual row."""
    objective = Counterfactual() if counterfactual else Standard()
    start = 0 if arch == "seq2seq" else None
    return [
        [encode_row(row, tokenizer, arch, decoder_start_token_id=start) for row in group]
        for group in objective.groups(FIXTURES, split)[:3]
    ]


def hf_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's own token-mean loss, as a reference."""
    inputs = {k: v for k, v in batch.items() if k not in ("kind", "answer_mask")}
    return model(**inputs).loss


@pytest.mark.parametrize("arch", ["seq2seq", "causal"])
def test_fused_step_equals_separate_forwards(arch: str) -> None:
    model, tokenizer = tiny(arch)
    module = StudentModule(model, tokenizer, Counterfactual(alpha=0.3))
    pairs = groups(arch, tokenizer, counterfactual=True)
    fused = collate_rows(pairs, tokenizer.pad_token_id)
    assert fused["kind"].tolist() == [0, 1] * 3
    losses = module.losses(fused)
    factual = hf_loss(model, collate_rows([[g[0]] for g in pairs], tokenizer.pad_token_id))
    counter = hf_loss(model, collate_rows([[g[1]] for g in pairs], tokenizer.pad_token_id))
    assert losses["factual_loss"].item() == pytest.approx(factual.item(), abs=1e-5)
    assert losses["counterfactual_loss"].item() == pytest.approx(counter.item(), abs=1e-5)
    assert losses["loss"].item() == pytest.approx(0.7 * factual.item() + 0.3 * counter.item(), abs=1e-5)


def test_alpha_zero_equals_standard_loss_and_gradients() -> None:
    model, tokenizer = tiny("seq2seq")
    standard = StudentModule(model, tokenizer, Standard()).losses(
        collate_rows(groups("seq2seq", tokenizer, False), tokenizer.pad_token_id)
    )
    assert set(standard) == {"loss", "factual_loss"}
    standard["loss"].backward()
    standard_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    module = StudentModule(model, tokenizer, Counterfactual(alpha=0.0))
    counterfactual = module.losses(collate_rows(groups("seq2seq", tokenizer, True), tokenizer.pad_token_id))
    counterfactual["loss"].backward()
    assert counterfactual["counterfactual_loss"].item() > 0
    assert counterfactual["loss"].item() == pytest.approx(standard["loss"].item(), abs=1e-6)
    for expected, param in zip(standard_grads, model.parameters()):
        torch.testing.assert_close(param.grad, expected, atol=1e-6, rtol=1e-5)


def test_collate_pads_to_the_longest_row_of_the_batch() -> None:
    rows = [
        [EncodedRow([5, 6, 7], [IGNORE_INDEX, 8, 9], [0, 8], 0, [False, False, True])],
        [EncodedRow([5], [4], [0], 1, [True])],
    ]
    batch = collate_rows(rows, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 8, 9], [4, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["decoder_input_ids"].tolist() == [[0, 8], [0, 0]]
    assert batch["kind"].tolist() == [0, 1]
    assert batch["answer_mask"].tolist() == [[False, False, True], [True, False, False]]


def test_datamodule_batches_pair_factual_and_counterfactual_rows() -> None:
    tokenizer = load_tokenizer("byt5")
    data = StudentDataModule(FIXTURES, tokenizer, "causal", Counterfactual(), batch_size=4, eval_batch_size=1)
    data.setup("fit")
    batches = list(data.train_dataloader())
    assert [b["input_ids"].shape[0] for b in batches] == [8, 4]  # 6 questions, 2 rows each
    for batch in batches:
        assert batch["kind"].tolist() == [0, 1] * (batch["input_ids"].shape[0] // 2)
        assert "decoder_input_ids" not in batch
    # Dev has the counterfactual rows too, so val/loss scores the objective trained; one question per batch is
    # padded only to the longer of its two rows.
    dev = list(data.val_dataloader())
    assert [b["kind"].tolist() for b in dev] == [[0, 1]] * 3
    assert [b["input_ids"].shape[1] for b in dev] == [max(len(r.input_ids) for r in g) for g in data.dev_groups]
    assert [g[1].input_ids for g in data.dev_groups] != [g[0].input_ids for g in data.dev_groups]


def test_datamodule_needs_a_counterfactual_for_every_train_question(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES, tmp_path, dirs_exist_ok=True)
    lines = (tmp_path / "train_counterfactual.jsonl").read_text().splitlines()
    (tmp_path / "train_counterfactual.jsonl").write_text("\n".join(lines[1:]) + "\n")
    data = StudentDataModule(tmp_path, load_tokenizer("byt5"), "causal", Counterfactual())
    with pytest.raises(RationaleFileError, match=r"train_counterfactual\.jsonl.*'t1'"):
        data.setup("fit")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": 1, "question": "q", "choices": ["a", "b"], "answer": 0, "perturbed_answer": 1, "rationale": "r"}',
         "missing field 'rationale_for'"),
        ('{"id": 1, "question": "q", "choices": ["a", "b"], "answer": 2, "perturbed_answer": 1, "rationale_for": 0, '
         '"rationale": "r"}', "field 'answer' must be a choice index below 2"),
        ('{"id": 1, "question": "q", "choices": ["a"], "answer": 0, "perturbed_answer": 0, "rationale_for": 0, '
         '"rationale": "r"}', "field 'choices'"),
        ("{not json", "malformed JSON"),
    ],
)
def test_bad_rationale_lines_name_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "dev.jsonl"
    good = (FIXTURES / "dev.jsonl").read_text().splitlines()[0]
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(RationaleFileError, match=rf"dev\.jsonl, line 2: .*{message}"):
        read_rationales(path)


@pytest.mark.parametrize(("name", "kind"), [("adamw", torch.optim.AdamW), ("adafactor", Adafactor)])
def test_optimizer_and_linear_warmup_from_their_config_groups(name: str, kind: type, tmp_path: Path) -> None:
    _, components = validated(compose_config([f"optimizer={name}", "student.lr=0.01", "student.weight_decay=0.1",
                                              "student.warmup_steps=2"], tmp_path, tmp_path))  # fmt: skip
    model, tokenizer = tiny("seq2seq")
    module = StudentModule(model, tokenizer, Standard(), optimizer=components.optimizer,
                           lr_schedule=components.lr_schedule)  # fmt: skip
    module.trainer = pl.Trainer(max_steps=10, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert type(optimizer) is kind
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.1, 0.0]
    assert [len(group["params"]) for group in optimizer.param_groups] == [
        sum(p.ndim >= 2 for p in model.parameters()), sum(p.ndim < 2 for p in model.parameters())]
    rates = []
    for _ in range(10):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:3] == pytest.approx([0.0, 0.005, 0.01])
    assert rates[-1] == pytest.approx(0.01 * 1 / 8)


def test_student_t5_3b_chooses_adafactor_and_the_command_line_can_override_it(tmp_path: Path) -> None:
    assert compose_config(["student=t5_3b"], tmp_path, tmp_path).optimizer._target_ == (
        "transformers.optimization.Adafactor")
    assert compose_config(["student=t5_3b", "optimizer=adamw"], tmp_path, tmp_path).optimizer._target_ == (
        "torch.optim.AdamW")


@pytest.mark.parametrize(("override", "message"), [
    ("student.lr=-1", "optimizer: Invalid learning rate: -1.0"),
    ("+optimizer.momentum=0.9", "optimizer: unknown key 'momentum' for torch.optim.AdamW; known: params, lr, betas, "
                                "eps, weight_decay, amsgrad, maximize, foreach, capturable, differentiable, fused"),
    ("student.warmup_steps=-1", "student.warmup_steps must be >= 0, got -1"),
])
def test_bad_optimization_settings_are_refused_at_start(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        validated(compose_config([override], tmp_path, tmp_path))
    assert str(error.value) == message


@pytest.mark.parametrize(("arguments", "message"), [
    ({"arch": "rnn", "random_init": TINY["seq2seq"]}, "arch must be one of ['seq2seq', 'causal'], got 'rnn'"),
    ({"arch": "seq2seq"}, "model: set exactly one of name_or_path and random_init"),
    ({"arch": "seq2seq", "random_init": TINY["seq2seq"], "name_or_path": "t5-small"},
     "model: set exactly one of name_or_path and random_init"),
])
def test_load_model_checks_its_arguments_with_the_configs_checks(arguments: dict, message: str) -> None:
    arch = arguments.pop("arch")
    with pytest.raises(ValueError) as error:
        load_model(arch, load_tokenizer("byt5"), **arguments)
    assert str(error.value) == message
