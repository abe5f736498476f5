"""Student training (resume, export) and evaluation, end to end on tiny random-init models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

import scd.student.evaluate as evaluation
from scd.config import validate
from scd.data.records import RationaleRecord, read_rationales, read_split
from scd.models import load_model, load_tokenizer
from scd.student.callbacks import build_callbacks
from scd.student.data import collate_rows
from scd.evaluation.answers import ANSWER_METRICS, answer_metrics
from scd.student.evaluate import StudentAnswerer, generate_continuations, perturb_rationale_prefix
from scd.student.formatting import rationale_prefix_span
from scd.student.train import build_trainer, fit_student
from tests.conftest import TINY_STUDENTS as TINY
from tests.conftest import compose_config
from tests.helpers import FIXTURES, TRAINER, student, trainer


def test_resume_continues_the_step_count_and_export_reloads(tmp_path: Path) -> None:
    module, data = student("seq2seq", "counterfactual")
    fit_student(module, data, trainer(tmp_path, 3), ckpt_path="last")
    assert module.trainer.global_step == 3 and module.steps_run == 3
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3

    module, data = student("seq2seq", "counterfactual")
    exported = fit_student(module, data, trainer(tmp_path, 5, patience=3), ckpt_path="last")
    assert module.trainer.global_step == 5 and module.steps_run == 2
    assert exported == tmp_path / "student"

    # The export holds the best checkpoint's weights and reloads with the Auto classes.
    best = module.trainer.checkpoint_callback.best_model_path
    state = torch.load(best, weights_only=True)["state_dict"]
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(exported).eval()
    for name, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, state[f"model.{name}"], rtol=0, atol=0)
    tokenizer = AutoTokenizer.from_pretrained(exported)
    assert tokenizer("can a blick fly ?")["input_ids"] == module.tokenizer("can a blick fly ?")["input_ids"]
    batch = collate_rows(data.dev_groups, tokenizer.pad_token_id)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}
    module.model.eval()
    torch.testing.assert_close(reloaded(**inputs).logits, module.model(**inputs).logits, rtol=0, atol=0)


def test_fresh_start_when_there_is_no_last_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    module, data = student("causal", "standard")
    caplog.set_level("INFO", logger="scd.student.train")
    exported = fit_student(module, data, trainer(tmp_path, 2), ckpt_path="last")
    assert "training from scratch" in caplog.text
    assert module.trainer.global_step == 2
    reloaded = AutoModelForCausalLM.from_pretrained(exported).eval()
    batch = collate_rows(data.dev_groups, module.tokenizer.pad_token_id)
    module.model.eval()
    torch.testing.assert_close(
        reloaded(input_ids=batch["input_ids"]).logits, module.model(input_ids=batch["input_ids"]).logits, rtol=0, atol=0
    )


@pytest.mark.parametrize(
    ("arch", "training", "tags"),
    [
        ("seq2seq", "standard", "distinct"),
        ("seq2seq", "counterfactual", "shared"),
        ("causal", "counterfactual", "none"),
    ],
)
def test_fit_and_evaluate_end_to_end(tmp_path: Path, arch: str, training: str, tags: str) -> None:
    module, data = student(arch, training, tags)
    exported = fit_student(module, data, trainer(tmp_path, 4), ckpt_path=None)
    model = (AutoModelForSeq2SeqLM if arch == "seq2seq" else AutoModelForCausalLM).from_pretrained(exported)
    test = read_split(FIXTURES, "test")
    answerer = StudentAnswerer(model, AutoTokenizer.from_pretrained(exported), arch, tags=tags, batch_size=3,
                               max_new_tokens=12, answer_max_new_tokens=4, show_progress=False)
    metrics, rows = answer_metrics(answerer, test, read_rationales(FIXTURES / "test_counterfactual.jsonl"),
                                   perturb_share=0.3, seed=0)
    # Every answer metric applies: the student reads rationales and counterfactual ones were given.
    assert set(metrics) == set(ANSWER_METRICS)
    # A consistency where no answer it compares parsed is not measured (NaN); a 4-step student rarely parses.
    assert all(0.0 <= value <= 1.0 or (math.isnan(value) and key.endswith("_consistency"))
               for key, value in metrics.items())  # fmt: skip
    assert [row["id"] for row in rows] == [record.id for record in test]
    assert metrics["student/unparsable"] == pytest.approx(np.mean([row["predicted"] is None for row in rows]))


@pytest.mark.parametrize("arch", ["seq2seq", "causal"])
def test_batched_generation_equals_one_at_a_time(arch: str) -> None:
    tokenizer = load_tokenizer("byt5")
    model = load_model(arch, tokenizer, random_init=TINY[arch], seed=3)
    prompts = [tokenizer(text)["input_ids"] for text in ("can a blick fly ?", "a", "what colour is a pif ?")]
    prefixes = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("[factual] x", "", "[factual] so long")]
    kwargs = {"max_new_tokens": 6, "show_progress": False}
    batched = generate_continuations(model, tokenizer, arch, prompts, prefixes, batch_size=3, **kwargs)
    single = [
        generate_continuations(model, tokenizer, arch, [p], [q], batch_size=1, **kwargs)[0]
        for p, q in zip(prompts, prefixes)
    ]
    assert batched == single
    assert any(batched)


def test_perturbation_replaces_the_given_share_of_rationale_tokens_only() -> None:
    tokenizer = load_tokenizer("byt5")
    rationale = "every wug can fly , and a blick is a wug ."  # 42 bytes
    text, start, stop = rationale_prefix_span(rationale, "[factual]")
    original = tokenizer(text, add_special_tokens=False)["input_ids"]
    perturbed = perturb_rationale_prefix(tokenizer, rationale, "[factual]", 0.5, np.random.default_rng(0))
    changed = [i for i, (a, b) in enumerate(zip(original, perturbed)) if a != b]
    assert len(perturbed) == len(original)
    assert 15 <= len(changed) <= 21 and all(start <= i < stop for i in changed)  # 21 replaced, a few by themselves
    assert not set(perturbed) & set(tokenizer.all_special_ids)
    again = perturb_rationale_prefix(tokenizer, rationale, "[factual]", 0.5, np.random.default_rng(0))
    assert again == perturbed
    assert perturb_rationale_prefix(tokenizer, rationale, "[factual]", 0.0, np.random.default_rng(0)) == original


def test_metrics_count_from_scripted_generations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [
        RationaleRecord(f"q{i}", "can it fly ?", ["yes", "no"], answer, 1 - answer, answer, "r .", "greedy")
        for i, answer in enumerate([0, 1, 0, 1])
    ]
    counter = [RationaleRecord("q0", "can it fly ?", ["yes", "no"], 0, 1, 1, "no r .", "greedy")]
    scripted = {
        # Student outputs: right, wrong, unparsable, right.
        "student rationales": ["[factual] r . So the answer is yes.", "[factual] r . So the answer is yes.",
                               "[factual] r .", "[factual] r . So the answer is no."],
        "oracle answers": [" yes.", " no.", " Yes", " maybe"],
        "perturbed answers": [" yes.", " no.", " no.", " yes."],
        "counterfactual answers": [" no."],
    }

    def fake_generate(model, tokenizer, arch, prompts, prefixes, *, desc, **kwargs):
        outputs = scripted.get(desc, [""] * len(prompts))  # a pass a later metric adds: unparsable answers
        assert len(prompts) == len(outputs)
        return outputs

    monkeypatch.setattr(evaluation, "generate_continuations", fake_generate)
    answerer = StudentAnswerer(None, load_tokenizer("byt5"), "seq2seq", show_progress=False)
    metrics, rows = answer_metrics(answerer, records, counter, perturb_share=0.3, seed=0)
    expected = {
        "student/accuracy": 0.5,
        "student/unparsable": 0.25,
        "student/oracle_accuracy": 0.75,
        # q0 keeps yes, q1 changes yes -> no, q2 had no answer, q3 changes no -> yes.
        "student/perturbed_consistency": 0.25,
        "student/counterfactual_consistency": 1.0,
    }
    assert {key: metrics[key] for key in expected} == expected
    assert [row["predicted"] for row in rows] == [0, 0, None, 1]
    assert rows[0]["counterfactual_predicted"] == 1 and "counterfactual_predicted" not in rows[1]
    without, _ = answer_metrics(answerer, records, perturb_share=0.3, seed=0)
    assert "student/counterfactual_consistency" not in without


def test_the_progress_bar_counts_steps_out_of_the_total(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = validate(compose_config(["callbacks.early_stopping=null"], tmp_path, tmp_path / "cache"))
    callbacks = build_callbacks(cfg.callbacks, progress_bar=True, monitor="val/factual_loss")
    module, data = student("seq2seq", "standard")
    # 2 steps per epoch: the one bar goes on across 3 epochs, and a resumed fit continues it.
    fit_student(module, data, build_trainer(tmp_path, {**TRAINER, "enable_progress_bar": True, "max_steps": 5},
                                            callbacks, False), ckpt_path=None)
    first = capsys.readouterr().out
    assert "train steps" in first and "5/5" in first and "Epoch" not in first
    callbacks = build_callbacks(cfg.callbacks, progress_bar=True, monitor="val/factual_loss")
    module, data = student("seq2seq", "standard")
    fit_student(module, data, build_trainer(tmp_path, {**TRAINER, "enable_progress_bar": True, "max_steps": 7},
                                            callbacks, False), ckpt_path="last")
    resumed = capsys.readouterr().out
    assert "5/7" in resumed and "7/7" in resumed and "1/7" not in resumed


@pytest.mark.parametrize(("training", "shown"), [
    ("counterfactual", {"val/loss", "val/factual_loss", "val/counterfactual_loss"}),
    ("standard", {"val/loss"}),
])  # fmt: skip
def test_progress_shows_each_validation_term_where_there_are_several(tmp_path: Path, training: str, shown: set) -> None:
    """The checkpoint watches val/factual_loss: with several terms the progress lines show it beside val/loss."""
    module, data = student("seq2seq", training)
    fitted = trainer(tmp_path, 2)
    fit_student(module, data, fitted, ckpt_path=None)
    assert {key for key in fitted.progress_bar_metrics if key.startswith("val/")} == shown
