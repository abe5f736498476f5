"""The evaluate stage: the student's accuracy and consistency, LAS with a trained simulator, and the quality of the
teacher's rationales; ToyWorld adds its exact metrics. Returns the metrics that go to ``metrics.json``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from scd.config import Config
from scd.data.records import RationaleRecord
from scd.evaluation.las import leakage_adjusted_simulatability
from scd.evaluation.simulator import VIEWS, SimulatorRow, simulate, train_simulator
from scd.evaluation.teacher_quality import fluency, supports_answer_with_simulator, teacher_simulator_rows, text_metrics
from scd.models import inference_device, load_model, load_tokenizer
from scd.student.data import read_split
from scd.student.evaluate import evaluate_student, predict_rationales
from scd.teacher.prompt import PromptTemplate
from scd.teacher.stage import PROMPT_PREFIX_FILE

log = logging.getLogger(__name__)


def build_simulator(cfg: Config, teacher_source: str | None) -> tuple[Any, Any]:
    s = cfg.simulator
    # "teacher": the teacher's tokenizer, as for the student (ToyWorld's word-level vocabulary).
    tokenizer = load_tokenizer(teacher_source if s.tokenizer == "teacher" else s.tokenizer or s.name_or_path)
    model = load_model("seq2seq", tokenizer, name_or_path=s.name_or_path, random_init=s.random_init, seed=s.seed)
    return model, tokenizer


def fit_simulator(cfg: Config, rows: list[SimulatorRow], teacher_source: str | None) -> tuple[Any, Any]:
    model, tokenizer = build_simulator(cfg, teacher_source)
    s = cfg.simulator
    trainer_kwargs = {"max_steps": s.max_steps, "accelerator": cfg.trainer.accelerator,
                      "enable_progress_bar": cfg.trainer.enable_progress_bar}
    train_simulator(model, tokenizer, rows, trainer_kwargs=trainer_kwargs, batch_size=s.batch_size, lr=s.lr, seed=s.seed)
    return model, tokenizer


def las_metrics(
    cfg: Config, train_rows: list[SimulatorRow], test_rows: list[SimulatorRow], teacher_source: str | None
) -> dict[str, float]:
    """Simulate the student's answers on test from question+rationale, question and rationale (Hase et al., 2020)."""
    model, tokenizer = fit_simulator(cfg, train_rows, teacher_source)
    sims = {view: simulate(model, tokenizer, test_rows, view, batch_size=cfg.simulator.batch_size) for view in VIEWS}
    result = leakage_adjusted_simulatability(
        [row.target for row in test_rows], sims["xe"], sims["x"], sims["e"],
        bootstrap_samples=cfg.simulator.bootstrap_samples, seed=cfg.simulator.seed,
    )
    return {key: value for key, value in result.to_metrics().items() if value is not None}


def simulator_rows(records: list[RationaleRecord], predictions: list[dict[str, Any]]) -> list[SimulatorRow]:
    """The student's own rationale and answer per record; unparsable answers cannot be simulated and are left out."""
    return [
        SimulatorRow(r.question, tuple(r.choices), p["rationale"], p["predicted"])
        for r, p in zip(records, predictions) if p["predicted"] is not None
    ]


def teacher_metrics(
    cfg: Config, rationale_dir: Path, teacher_model: Any, teacher_tokenizer: Any, teacher_source: str | None
) -> dict[str, float]:
    """Quality of the teacher's rationales for this decoding (automatic stand-ins for the paper's human ratings)."""
    train, train_cf = read_split(rationale_dir, "train"), read_split(rationale_dir, "train_counterfactual")
    test, test_cf = read_split(rationale_dir, "test"), read_split(rationale_dir, "test_counterfactual")
    metrics = {f"teacher/{k.split('/')[-1]}": v for k, v in text_metrics(test, test_cf).items()}
    judge, judge_tokenizer = fit_simulator(cfg, teacher_simulator_rows(train + train_cf), teacher_source)
    metrics["teacher/supports_answer"] = supports_answer_with_simulator(
        judge, judge_tokenizer, test, batch_size=cfg.simulator.batch_size
    )
    # The teacher wrote each rationale after the demonstrations and the query: score it in that context.
    prompt = PromptTemplate(cfg.teacher.template, cfg.teacher.separator, cfg.teacher.instruction)
    prefix = (rationale_dir / PROMPT_PREFIX_FILE).read_text(encoding="utf-8")
    pairs = [(prefix + prompt.query(r.question, r.choices, r.answer_text), r.rationale) for r in test if r.rationale]
    if pairs:
        if cfg.teacher.device_map is None:
            teacher_model = teacher_model.to(inference_device(cfg.trainer.accelerator))
        metrics["teacher/fluency"] = fluency(teacher_model, teacher_tokenizer, pairs, batch_size=cfg.teacher.batch_size)
    return metrics


def run_evaluate_stage(
    cfg: Config, run_dir: Path, teacher: tuple[Any, Any], teacher_source: str | None, world: Any
) -> dict[str, float]:
    """``teacher`` is the (model, tokenizer) pair used for fluency; ``teacher_source`` names its tokenizer."""
    rationale_dir = run_dir / "rationales"
    student_dir = run_dir / "student"
    if not student_dir.is_dir():
        raise ValueError(f"no trained student in {student_dir}: run the student stage first (stages=[student,evaluate])")
    s = cfg.student
    tokenizer = load_tokenizer(str(student_dir), trust_remote_code=s.trust_remote_code)
    device = inference_device(cfg.trainer.accelerator)
    model = load_model(s.arch, tokenizer, name_or_path=str(student_dir), trust_remote_code=s.trust_remote_code)
    model = model.to(device).eval()
    test, test_cf = read_split(rationale_dir, "test"), read_split(rationale_dir, "test_counterfactual")
    metrics = evaluate_student(
        model, tokenizer, s.arch, test, run_dir=run_dir, test_counterfactual=test_cf, tags=cfg.training.tags,
        batch_size=s.eval_batch_size, max_new_tokens=s.max_new_tokens, perturb_share=s.perturb_share, seed=cfg.seed,
        show_progress=cfg.trainer.enable_progress_bar,
    )
    test_predictions = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines()]
    train = read_split(rationale_dir, "train")
    train_predictions = predict_rationales(
        model, tokenizer, s.arch, train, tags=cfg.training.tags, batch_size=s.eval_batch_size,
        max_new_tokens=s.max_new_tokens, show_progress=cfg.trainer.enable_progress_bar,
    )
    train_rows, test_rows = simulator_rows(train, train_predictions), simulator_rows(test, test_predictions)
    if train_rows and test_rows:
        metrics.update(las_metrics(cfg, train_rows, test_rows, teacher_source))
    else:
        log.warning("LAS skipped: the student's answers could not be parsed (train %d, test %d usable)",
                    len(train_rows), len(test_rows))
    metrics.update(teacher_metrics(cfg, rationale_dir, *teacher, teacher_source))
    if world is not None:
        from scd.toyworld.metrics import toyworld_metrics

        metrics.update(toyworld_metrics(world, rationale_dir, test_predictions))
    return metrics
