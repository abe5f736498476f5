"""The paper's two baselines: human-annotated rationales (decoding=human) and the teacher answering in context
(student=icl_teacher), and the experiment=paper_table sweep that puts them beside the distilled students."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPTNeoXConfig

from scd.data.records import RationaleRecord, read_split
from scd.models import load_tokenizer
from scd.pipeline import run
from scd.student.objectives import Standard
from scd.data.choices import match_choice
from scd.evaluation.answers import answer_metrics
from scd.teacher.icl import AnsweringPrompt, InContextAnswerer
from scd.teacher.prompt import Demonstration
from tests.conftest import ROOT, validated

COSE_HEADER = "id,question,choice_0,choice_1,choice_2,label,human_exp\n"
# Train: two rows lack a usable explanation ("n/a", empty); test: one ("-").
COSE_TRAIN = [
    ("t1", "Where do fish live?", "sea", "sky", "desk", 0, "fish live in water such as the sea"),
    ("t2", "What opens a lock?", "spoon", "key", "cup", 1, "a key is made to open a lock"),
    ("t3", "What tells the time?", "clock", "shoe", "leaf", 0, "n/a"),
    ("t4", "What do birds use to fly?", "wings", "wheels", "fins", 0, "birds fly with their wings"),
    ("t5", "Where is bread baked?", "oven", "pond", "cloud", 0, ""),
    ("t6", "What keeps rain off?", "umbrella", "fork", "sock", 0, "an umbrella blocks the rain"),
    ("t7", "What do cows drink?", "water", "oil", "ink", 0, "cows drink water like most animals"),
    ("t8", "What melts in the sun?", "ice", "stone", "iron", 0, "ice melts when it is warm"),
]
COSE_TEST = [
    ("d1", "What do you sit on?", "chair", "lamp", "sink", 0, "a chair is for sitting"),
    ("d2", "What do you write with?", "pen", "plate", "rug", 0, "-"),
    ("d3", "What do you sleep in?", "bed", "bowl", "car", 0, "people sleep in a bed"),
]


def write_cose(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.csv", COSE_TRAIN), ("dev.csv", COSE_TEST)):
        lines = [",".join([i, q, a, b, c, str(label), f'"{explanation}"']) for i, q, a, b, c, label, explanation in rows]
        (directory / name).write_text(COSE_HEADER + "\n".join(lines) + "\n")
    return directory


def cose_run(make_config, tmp_path: Path, *overrides: str, run_name: str = "run"):
    data = write_cose(tmp_path / "cose")
    raw = make_config("dataset=cose", f"dataset.path={data}", "dataset.dev_size=2", "dataset.limit=null",
                      "teacher.num_demonstrations=1", *overrides, run=run_name)  # fmt: skip
    run_dir = Path(raw.paths.output_dir)
    run_dir.mkdir(parents=True)
    return run(*validated(raw), raw, run_dir), run_dir


@pytest.mark.slow
def test_human_explanations_flow_into_the_students_rows_and_missing_ones_are_counted(make_config, tmp_path):
    metrics, run_dir = cose_run(make_config, tmp_path, "decoding=human", "training=standard")
    rationales = run_dir / "rationales"
    explanation = {row[0]: row[6] for row in COSE_TRAIN + COSE_TEST}
    unusable = {"t3", "t5", "d2"}
    train, dev, test = (read_split(rationales, split) for split in ("train", "dev", "test"))
    # The dev split is drawn from train; between them they hold every explained training row, and nothing else.
    assert {r.id for r in train + dev} == {row[0] for row in COSE_TRAIN} - unusable
    for record in train + dev:
        assert record.rationale == explanation[record.id] and record.rationale_for == record.answer
        assert record.decoding == "human"
    # Test keeps every question (the same test set as every other arm); the unexplained one has an empty rationale.
    assert [r.id for r in test] == [row[0] for row in COSE_TEST]
    assert {r.id: r.rationale for r in test} == {"d1": "a chair is for sitting", "d2": "", "d3": "people sleep in a bed"}
    # No rationale for a perturbed answer exists: the counterfactual splits are empty, and not measured.
    assert read_split(rationales, "train_counterfactual") == [] and read_split(rationales, "test_counterfactual") == []
    assert "student/counterfactual_consistency" not in metrics
    missing_train_dev = metrics["rationales/missing_explanations/train"] + metrics["rationales/missing_explanations/dev"]
    assert missing_train_dev == 2 and metrics["rationales/missing_explanations/test"] == 1
    # The student's training rows are the explanations, trained on in full ("... So the answer is A").
    rows = [row for group in Standard().groups(rationales, "train") for row in group]
    assert sorted(row.record.rationale for row in rows) == sorted(explanation[r.id] for r in train)
    assert all(not row.answer_only for row in rows)


def test_human_rationales_refuse_counterfactual_training_in_one_line(tmp_path):
    data = write_cose(tmp_path / "cose")
    result = subprocess.run(
        [sys.executable, "run.py", "experiment=smoke", "dataset=cose", f"dataset.path={data}", "decoding=human",
         "training=counterfactual", f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("scd: error:")]
    assert len(errors) == 1
    assert "training=counterfactual" in errors[0] and "decoding=human" in errors[0]
    assert "decoding.counterfactual" in errors[0] and not (tmp_path / "cache" / "rationales").exists()


@pytest.mark.slow
def test_human_rationales_with_a_decoded_counterfactual_set_train_counterfactually(make_config, tmp_path):
    metrics, run_dir = cose_run(
        make_config, tmp_path, "decoding=human", "training=counterfactual",
        "decoding.counterfactual={_target_:scd.teacher.strategies.ContrastWrong,lam:0.5}",
    )
    rationales = run_dir / "rationales"
    train = {r.id: r for r in read_split(rationales, "train")}
    counterfactual = read_split(rationales, "train_counterfactual") + read_split(rationales, "dev_counterfactual")
    # Decoded for every training question, even where no human explained the gold answer.
    assert sorted(r.id for r in counterfactual) == sorted(row[0] for row in COSE_TRAIN)
    assert all(r.rationale_for == r.perturbed_answer != r.answer for r in counterfactual)
    assert all(train[i].rationale == next(row[6] for row in COSE_TRAIN if row[0] == i) for i in train)
    assert "student/counterfactual_consistency" in metrics


def test_answering_prompt_parses_both_orders():
    answer_first = AnsweringPrompt("Q : {question} A : the answer is {answer} . {rationale}", "\n\n")
    assert answer_first.answer_first
    assert answer_first.query("can a fish swim ?", ("yes", "no")) == "Q : can a fish swim ? A : the answer is"
    assert answer_first.parse(" yes . every fish can swim .", ("yes", "no")) == (0, "every fish can swim .")
    assert answer_first.parse(" maybe . who knows", ("yes", "no")) == (None, "who knows")
    reason_first = AnsweringPrompt("Q : {question} A : {rationale} So the answer is {answer} .", "\n\n")
    assert not reason_first.answer_first
    assert reason_first.query("can a fish swim ?", ("yes", "no")) == "Q : can a fish swim ? A :"
    assert reason_first.parse(" fish have fins . So the answer is No .", ("yes", "no")) == (1, "fish have fins .")
    assert reason_first.parse(" fish have fins .", ("yes", "no")) == (None, "fish have fins .")
    assert reason_first.after_rationale("q ?", ("yes", "no"), "r .") == "Q : q ? A : r . So the answer is"
    assert match_choice(" Blue Whale. ", ("shark", "blue whale")) == 1
    with pytest.raises(ValueError, match="one {answer} and one {rationale}"):
        AnsweringPrompt("Q : {question} A : {rationale}", "\n\n")


def test_an_icl_template_without_both_slots_is_refused_at_start(make_config, tmp_path):
    raw = make_config("student=icl_teacher", "training=standard", "student.in_context.template='Q : {question} A :'")
    with pytest.raises(ValueError, match=r"^student.in_context.template needs one \{answer\} and one \{rationale\}"):
        run(*validated(raw), raw, tmp_path / "run")
    assert not (tmp_path / "run" / "rationales").exists()  # refused before the teacher stage


def tiny_teacher() -> AutoModelForCausalLM:
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=256, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=512, initializer_range=0.3)  # fmt: skip
    return AutoModelForCausalLM.from_config(config).eval()


def reference_continuation(model, tokenizer, prefix: list[int], query: list[int], max_new_tokens: int,
                           separator: str) -> str:  # fmt: skip
    """Greedy continuation by a full recompute at every step, cut at the separator."""
    new: list[int] = []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logits = model(torch.tensor([prefix + query + new])).logits[0, -1]
        new.append(int(logits.argmax()))
        if separator in tokenizer.decode(new, skip_special_tokens=True):
            break
    return tokenizer.decode(new, skip_special_tokens=True).split(separator)[0]


@pytest.mark.parametrize("broken", [False, True])
def test_in_context_answers_equal_a_full_recompute_greedy_decode(broken, monkeypatch):
    tokenizer = load_tokenizer("byt5")
    model = tiny_teacher()
    prompt = AnsweringPrompt("Q: {question} A: the answer is {answer}. {rationale}", "\n\n")
    demos = [Demonstration("can a fish swim?", ("yes", "no"), "yes", "fish swim.")]
    answerer = InContextAnswerer(model, tokenizer, prompt, demos, max_new_tokens=12, batch_size=2, show_progress=False)
    if broken:
        # A prefix cache of the wrong demonstrations: the engine's output must then differ from the reference.
        answerer.prefix_ids = answerer.prefix_ids[:-3]
    records = [RationaleRecord(f"x{i}", q, ["yes", "no"], 0, 1, 0, "", "greedy", {})
               for i, q in enumerate(["can a dog bark?", "can a stone fly?", "is ice cold?"])]  # fmt: skip
    got = [row["output"] for row in answerer.predict(records)]
    full_prefix = tokenizer(prompt.prefix(demos), add_special_tokens=False).input_ids
    want = [
        reference_continuation(model, tokenizer, full_prefix, tokenizer(prompt.query(r.question, r.choices),
                                                             add_special_tokens=False).input_ids, 12, "\n\n").strip()
        for r in records
    ]  # fmt: skip
    assert (got == want) != broken


@pytest.mark.slow
@pytest.mark.parametrize("template", [None, "Q: {question} A: {rationale} So the answer is {answer}."])
def test_icl_teacher_run_writes_predictions_and_metrics(make_config, tmp_path, template):
    overrides = ["student=icl_teacher", "decoding=greedy", "training=standard"]
    if template:
        overrides.append(f"student.in_context.template='{template}'")
    raw = make_config(*overrides)
    run_dir = Path(raw.paths.output_dir)
    run_dir.mkdir(parents=True)
    metrics = run(*validated(raw), raw, run_dir)
    predictions = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    test = read_split(run_dir / "rationales", "test")
    assert [p["id"] for p in predictions] == [r.id for r in test]
    assert metrics["student/accuracy"] == pytest.approx(sum(p["correct"] for p in predictions) / len(predictions))
    assert metrics["student/unparsable"] == pytest.approx(sum(p["predicted"] is None for p in predictions) / len(test))
    assert not (run_dir / "student").exists()  # nothing was trained
    consistency = {"student/oracle_accuracy", "student/perturbed_consistency", "student/counterfactual_consistency"}
    # Answering first, no rationale can change the answer: those metrics apply only when it reasons first.
    assert (consistency <= set(metrics)) == (template is not None)
    assert bool(consistency & set(metrics)) == (template is not None)


def test_answer_metrics_count_an_answerers_answers_by_value():
    class Scripted:
        """An answerer whose outputs are fixed, to check the metrics' arithmetic."""

        reads_rationales = True

        def predict(self, records):
            outputs = [(0, "r0"), (1, "r1"), (None, "r2"), (0, "r3")]
            return [{"id": r.id, "output": "", "rationale": text, "predicted": p} for r, (p, text) in zip(records, outputs)]

        def answers_after(self, records, rationales, desc):
            # Oracle: right on 3 of 4; perturbed: keeps the first answer only; counterfactual: follows 1 of 2; a pass
            # a later metric adds: no answer.
            return {"oracle answers": [0, 0, 1, 0], "perturbed answers": [0, 0, 0, 1],
                    "counterfactual answers": [1, 1]}.get(desc, [None] * 4)[: len(records)]  # fmt: skip

        def answers_after_perturbed(self, records, rationales, share, rng, desc):
            return self.answers_after(records, rationales, desc)

    test = [RationaleRecord(f"q{i}", "q", ["a", "b"], answer, 1 - answer, answer, "gold", "greedy", {})
            for i, answer in enumerate([0, 1, 1, 0])]  # fmt: skip
    counter = [RationaleRecord(f"q{i}", "q", ["a", "b"], test[i].answer, 1 - test[i].answer, 1 - test[i].answer, "cf",
                               "greedy", {}) for i in (0, 1)]  # fmt: skip
    metrics, rows = answer_metrics(Scripted(), test, counter, perturb_share=0.5, seed=0)
    expected = {
        "student/accuracy": 0.75, "student/unparsable": 0.25, "student/oracle_accuracy": 0.75,
        "student/perturbed_consistency": 0.25, "student/counterfactual_consistency": 0.5,
    }  # fmt: skip
    assert {key: metrics[key] for key in expected} == expected
    assert [row["correct"] for row in rows] == [True, True, False, True]


@pytest.mark.slow
def test_paper_table_sweep_reports_six_rows(tmp_path):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "run.py", "-m", "experiment=[smoke,paper_table]", f"hydra.sweep.dir={sweep}",
         f"paths.cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = subprocess.run([sys.executable, "-m", "scd.report", str(sweep)], cwd=ROOT, capture_output=True, text=True)
    rows = [line for line in report.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    arms = ["icl_teacher", "human", "greedy", "contrast_empty", "contrast_wrong", "contrast_wrong_counterfactual"]
    assert len(rows) == 6
    for arm, row in zip(arms, rows):
        assert f"| {arm} |" in row
