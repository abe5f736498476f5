"""Training objectives as components: built from conf/training/ or in Python alike, val/loss measures the objective
trained, and the student trains in train mode whatever mode its model was loaded in."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from transformers import AutoModelForSeq2SeqLM

from scd.models import load_model, load_tokenizer
from scd.data.records import RationaleFileError
from pytorch_lightning.callbacks import EarlyStopping

from scd.student.callbacks import RunCheckpoint
from scd.student.data import IGNORE_INDEX, StudentDataModule, collate_rows
from scd.student.module import StudentModule
from scd.student.objectives import Counterfactual, RowLosses, RowMean, Standard, row_losses, token_losses
from scd.student.stage import check_student_trainer
from tests.conftest import TINY_STUDENTS, compose_config, validated

FIXTURES = Path(__file__).parent / "fixtures" / "student" / "rationales"
QUIET = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


def test_config_builds_the_objective_class_the_python_api_builds(tmp_path: Path) -> None:
    _, components = validated(compose_config(["training=counterfactual", "training.alpha=0.3", "training.tags=shared"],
                                             tmp_path, tmp_path))  # fmt: skip
    built = components.training
    assert type(built) is Counterfactual
    assert (built.mode, built.alpha, built.tags) == ("counterfactual", 0.3, "shared")
    assert built.weights() == (0.7, 0.3)
    standard = validated(compose_config(["training=standard"], tmp_path, tmp_path))[1].training
    assert type(standard) is Standard and standard.mode == "standard" and standard.weights() == (1.0,)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Counterfactual(alpha=1.5), "training.alpha must be in [0, 1], got 1.5"),
        (lambda: Counterfactual(alpha=-0.1), "training.alpha must be in [0, 1], got -0.1"),
        (lambda: Counterfactual(alpha=2), "training.alpha must be in [0, 1], got 2.0"),
        (lambda: Counterfactual(alpha="half"), "training.alpha must be a number in [0, 1], got 'half'"),
        (lambda: Standard(tags="both"), "training.tags must be one of ['distinct', 'shared', 'none'], got 'both'"),
    ],
)
def test_the_class_owns_its_checks(build, message: str) -> None:
    with pytest.raises(ValueError) as error:
        build()
    assert str(error.value) == message


def dev_reference(model, tokenizer, objective) -> dict[str, float]:
    """Each task's token mean over all of dev, from the model's own loss on one batch of that task's rows."""
    data = StudentDataModule(FIXTURES, tokenizer, "seq2seq", objective, decoder_start_token_id=0)
    data.setup("validate")
    losses = {}
    for index, task in enumerate(objective.kinds):
        batch = collate_rows([[group[index]] for group in data.dev_groups], tokenizer.pad_token_id)
        with torch.no_grad():
            losses[task] = model(**{k: v for k, v in batch.items() if k not in ("kind", "answer_mask")}).loss.item()
    return losses


@pytest.mark.parametrize("objective", [Standard(), Counterfactual(alpha=0.3)], ids=["standard", "counterfactual"])
def test_val_loss_is_the_objective_over_all_of_dev(objective) -> None:
    tokenizer = load_tokenizer("byt5")
    model = load_model("seq2seq", tokenizer, random_init=TINY_STUDENTS["seq2seq"]).eval()
    # Two dev batches of unequal size (2 + 1 questions): the epoch value must weight by tokens, not by batch.
    data = StudentDataModule(FIXTURES, tokenizer, "seq2seq", objective, eval_batch_size=2, decoder_start_token_id=0)
    module = StudentModule(model, tokenizer, objective)
    (logged,) = pl.Trainer(accelerator="cpu", **QUIET).validate(module, datamodule=data)
    reference = dev_reference(model, tokenizer, objective)
    expected = sum(weight * reference[task] for task, weight in zip(objective.kinds, objective.weights()))
    assert logged["val/loss"] == pytest.approx(expected, abs=1e-5)
    for task in objective.kinds:
        assert logged[f"val/{task}_loss"] == pytest.approx(reference[task], abs=1e-5)
    if isinstance(objective, Counterfactual):
        # The counterfactual rows of dev move val/loss away from the factual loss alone.
        assert abs(logged["val/loss"] - reference["factual"]) > 1e-3


def test_a_mean_of_batch_means_would_fail_the_val_loss_test() -> None:
    """The negative check of the test above: its dev batches are uneven enough that weighting batches instead of
    tokens gives a different value."""
    tokenizer = load_tokenizer("byt5")
    model = load_model("seq2seq", tokenizer, random_init=TINY_STUDENTS["seq2seq"]).eval()
    data = StudentDataModule(FIXTURES, tokenizer, "seq2seq", Standard(), eval_batch_size=2, decoder_start_token_id=0)
    data.setup("validate")
    with torch.no_grad():
        batch_means = [model(**{k: v for k, v in b.items() if k not in ("kind", "answer_mask")}).loss.item() for b in data.val_dataloader()]
    token_mean = dev_reference(model, tokenizer, Standard())["factual"]
    assert abs(sum(batch_means) / len(batch_means) - token_mean) > 1e-4


def test_counterfactual_objective_needs_the_dev_counterfactual_rationales(tmp_path: Path) -> None:
    for path in FIXTURES.iterdir():
        if path.name != "dev_counterfactual.jsonl":
            (tmp_path / path.name).write_bytes(path.read_bytes())
    with pytest.raises(RationaleFileError, match=r"dev_counterfactual\.jsonl: no such rationale file"):
        StudentDataModule(tmp_path, load_tokenizer("byt5"), "causal", Counterfactual()).setup("fit")
    # The standard objective reads no counterfactual file.
    StudentDataModule(tmp_path, load_tokenizer("byt5"), "causal", Standard()).setup("fit")


class ModeRecorder(StudentModule):
    """Records the model's mode in each training and validation step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.modes: dict[str, list[bool]] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.modes["train"].append(self.model.training)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.modes["val"].append(self.model.training)
        return super().validation_step(batch, batch_idx)


def test_a_from_pretrained_student_trains_in_train_mode(tmp_path: Path) -> None:
    tokenizer = load_tokenizer("byt5")
    init = {**TINY_STUDENTS["seq2seq"], "dropout_rate": 0.5}
    load_model("seq2seq", tokenizer, random_init=init).save_pretrained(tmp_path / "t5")
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "t5")
    assert not model.training  # transformers loads in eval mode: what the student must undo
    data = StudentDataModule(FIXTURES, tokenizer, "seq2seq", Counterfactual(), batch_size=4, decoder_start_token_id=0)
    module = ModeRecorder(model, tokenizer, Counterfactual())
    # 2 steps per epoch, validation after each: train, validate, train again.
    pl.Trainer(accelerator="cpu", max_steps=4, num_sanity_val_steps=0, **QUIET).fit(module, datamodule=data)
    assert module.modes["train"] == [True] * 4
    assert module.modes["val"] and not any(module.modes["val"])


def row_batch(tokenizer, objective, questions: int = 3):
    """The first dev questions' rows, encoded for a seq2seq student, as one batch and one batch per row."""
    data = StudentDataModule(FIXTURES, tokenizer, "seq2seq", objective, decoder_start_token_id=0)
    data.setup("validate")
    rows = [[row] for group in data.dev_groups[:questions] for row in group]
    return collate_rows(rows, tokenizer.pad_token_id), [collate_rows([row], tokenizer.pad_token_id) for row in rows]


def test_row_mean_is_the_mean_of_each_rows_own_token_mean(tmp_path: Path) -> None:
    assert type(validated(compose_config(["training=row_mean"], tmp_path, tmp_path))[1].training) is RowMean
    tokenizer = load_tokenizer("byt5")
    model = load_model("seq2seq", tokenizer, random_init=TINY_STUDENTS["seq2seq"]).eval()
    batch, singles = row_batch(tokenizer, RowMean())
    with torch.no_grad():
        own = [model(**{k: v for k, v in single.items() if k not in ("kind", "answer_mask")}).loss.item() for single in singles]
        losses = RowMean().loss(model, batch)
        standard = Standard().loss(model, batch)["loss"].item()
    assert losses["loss"].item() == pytest.approx(sum(own) / len(own), abs=1e-5)
    assert losses["factual_loss"].item() == losses["loss"].item()
    # Not vacuous: the rows' lengths differ enough that the token mean over all rows is another value.
    assert abs(standard - losses["loss"].item()) > 1e-3


def test_row_mean_val_loss_is_the_mean_over_all_dev_rows() -> None:
    tokenizer = load_tokenizer("byt5")
    model = load_model("seq2seq", tokenizer, random_init=TINY_STUDENTS["seq2seq"]).eval()
    # Two dev batches of unequal size (2 + 1 questions): each row counts once, whichever batch it is in.
    data = StudentDataModule(FIXTURES, tokenizer, "seq2seq", RowMean(), eval_batch_size=2, decoder_start_token_id=0)
    (logged,) = pl.Trainer(accelerator="cpu", **QUIET).validate(StudentModule(model, tokenizer, RowMean()),
                                                                datamodule=data)  # fmt: skip
    _, singles = row_batch(tokenizer, RowMean(), questions=len(data.dev_groups))
    with torch.no_grad():
        own = [model(**{k: v for k, v in single.items() if k not in ("kind", "answer_mask")}).loss.item() for single in singles]
    assert logged["val/loss"] == pytest.approx(sum(own) / len(own), abs=1e-5)
    assert logged["val/factual_loss"] == pytest.approx(logged["val/loss"], abs=1e-7)


class AnswerWeighted(Standard):
    """A loss form of another shape, as a contributor writes it: rationale-token mean plus ``beta`` times the
    answer-token mean, from ``token_losses`` and the batch's answer mask, with the rationale term picking checkpoints."""

    selection_term = "rationale"

    def __init__(self, mode: str = "answer_weighted", tags: str = "distinct", beta: float = 2.0) -> None:
        super().__init__(mode, tags)
        self.beta = beta

    @property
    def loss_terms(self) -> tuple[str, ...]:
        return ("rationale", "answer")

    def weights(self) -> tuple[float, ...]:
        return (1.0, self.beta)

    def terms(self, model, batch) -> dict[str, RowLosses]:
        tokens = token_losses(model, batch, label_smoothing=0.1)
        rationale = tokens.labelled & ~tokens.answer
        return {"rationale": RowLosses((tokens.losses * rationale).sum(1), rationale.sum(1)),
                "answer": RowLosses((tokens.losses * tokens.answer).sum(1), tokens.answer.sum(1))}


@pytest.mark.parametrize("arch", ["seq2seq", "causal"])
def test_the_batch_marks_the_answer_labels(arch: str) -> None:
    tokenizer = load_tokenizer("byt5")
    data = StudentDataModule(FIXTURES, tokenizer, arch, Counterfactual(), decoder_start_token_id=0)
    data.setup("validate")
    factual, counterfactual = data.dev_groups[0]
    batch = collate_rows([[factual, counterfactual]], tokenizer.pad_token_id)
    labels, answer = batch["labels"], batch["answer_mask"]
    # The counterfactual row trains on its answer only: its labels are exactly the answer mask.
    assert answer[1].tolist() == (labels[1] != IGNORE_INDEX).tolist()
    # The factual row trains on everything; its answer mask is the labels' tail "<answer>." + eos.
    gold = Standard().groups(FIXTURES, "dev")[0][0].record.rationale_for_text
    answer_ids = labels[0][answer[0]].tolist()
    assert tokenizer.decode(answer_ids, skip_special_tokens=True) == f"{gold}."
    assert answer_ids[-1] == tokenizer.eos_token_id and answer[0].sum() < (labels[0] != IGNORE_INDEX).sum()


def test_token_losses_take_cross_entropy_options_and_match_the_row_losses() -> None:
    tokenizer = load_tokenizer("byt5")
    model = load_model("seq2seq", tokenizer, random_init=TINY_STUDENTS["seq2seq"]).eval()
    data = StudentDataModule(FIXTURES, tokenizer, "seq2seq", Standard(), decoder_start_token_id=0)
    data.setup("validate")
    batch = collate_rows(data.dev_groups, tokenizer.pad_token_id)
    with torch.no_grad():
        plain, smoothed = token_losses(model, batch), token_losses(model, batch, label_smoothing=0.1)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=batch["decoder_input_ids"]).logits
    sums, counts = row_losses(model, batch)
    assert torch.equal(plain.losses.sum(1), sums) and torch.equal(plain.labelled.sum(1), counts)
    expected = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"], label_smoothing=0.1)
    assert smoothed.losses.sum() / smoothed.labelled.sum() == pytest.approx(expected.item(), abs=1e-5)
    assert smoothed.losses.sum() != plain.losses.sum()


def test_an_objective_names_the_term_that_picks_checkpoints(make_config) -> None:
    # The default callbacks name no monitor: they watch the objective's selection term (no val/factual_loss here).
    cfg, components = validated(make_config("training=standard", f"training._target_={__name__}.AnswerWeighted",
                                            "training.mode=answer_weighted"))
    trainer = check_student_trainer(cfg, components.training, Path(cfg.paths.output_dir))
    checkpoint = next(c for c in trainer.callbacks if isinstance(c, RunCheckpoint))
    assert checkpoint.monitor == "val/rationale_loss"
    standard, components = validated(make_config(
        "training=standard", "callbacks.checkpoint.monitor=train/loss",
        "+callbacks.early_stopping._target_=pytorch_lightning.callbacks.EarlyStopping"))
    trainer = check_student_trainer(standard, components.training, Path(standard.paths.output_dir))
    assert next(c for c in trainer.callbacks if isinstance(c, RunCheckpoint)).monitor == "train/loss"
    assert next(c for c in trainer.callbacks if isinstance(c, EarlyStopping)).monitor == "val/factual_loss"


def test_an_objective_of_another_form_trains_from_token_losses(make_config) -> None:
    tokenizer = load_tokenizer("byt5")
    model = load_model("seq2seq", tokenizer, random_init=TINY_STUDENTS["seq2seq"]).eval()
    objective = AnswerWeighted(beta=2.0)
    data = StudentDataModule(FIXTURES, tokenizer, "seq2seq", objective, decoder_start_token_id=0)
    data.setup("validate")
    batch = collate_rows(data.dev_groups, tokenizer.pad_token_id)
    with torch.no_grad():
        losses = objective.loss(model, batch)
    assert losses["loss"].item() == pytest.approx(losses["rationale_loss"].item() + 2 * losses["answer_loss"].item())
    assert losses["answer_loss"].item() != pytest.approx(losses["rationale_loss"].item())
