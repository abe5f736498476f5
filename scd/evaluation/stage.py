"""The evaluate stage: the student's accuracy and consistency, LAS with a trained simulator, and the task's exact
metrics of the student's predictions. Returns the metrics that go to ``metrics.json``.

The teacher's rationale metrics are not computed here: the teacher stage measured them with the rationale set
(``scd.evaluation.teacher_metrics``), and the pipeline copies them into ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from scd.config import Config
from scd.data.records import RationaleRecord
from scd.evaluation.simulator import VIEWS, SimulatorRow, fit_simulator, simulator_las
from scd.io import atomic_write_text, read_split
from scd.models import inference_device, load_model, load_tokenizer
from scd.student.evaluate import evaluate_student, predict_rationales
from scd.task import Task

log = logging.getLogger(__name__)


def simulator_rows(records: list[RationaleRecord], predictions: list[dict[str, Any]]) -> list[SimulatorRow]:
    """The student's own rationale and answer per record; unparsable answers cannot be simulated and are left out."""
    return [
        SimulatorRow(r.question, tuple(r.choices), p["rationale"], p["predicted"])
        for r, p in zip(records, predictions) if p["predicted"] is not None
    ]


def run_evaluate_stage(cfg: Config, run_dir: Path, task: Task, shared_tokenizer: str | None) -> dict[str, float]:
    """``shared_tokenizer`` is what the simulator's ``tokenizer: teacher`` loads."""
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
        # Simulate the student's answers on test from question+rationale, question and rationale (Hase et al., 2020).
        simulator, simulator_tokenizer = fit_simulator(cfg, train_rows, shared_tokenizer)
        las, simulated = simulator_las(simulator, simulator_tokenizer, test_rows, batch_size=cfg.simulator.batch_size,
                                       bootstrap_samples=cfg.simulator.bootstrap_samples, seed=cfg.simulator.seed)  # fmt: skip
        metrics.update({key: value for key, value in las.to_metrics().items() if value is not None})
        # Per item, beside predictions/test.jsonl: the simulator's answer from each view (items the student answered),
        # what a bootstrap over test items needs.
        answered = [p["id"] for p in test_predictions if p["predicted"] is not None]
        lines = [json.dumps({"id": item, **{view: int(simulated[view][k]) for view in VIEWS}}) + "\n"
                 for k, item in enumerate(answered)]  # fmt: skip
        atomic_write_text(run_dir / "predictions" / "simulator.jsonl", "".join(lines))
    else:
        log.warning("LAS skipped: the student's answers could not be parsed (train %d, test %d usable)",
                    len(train_rows), len(test_rows))
        atomic_write_text(run_dir / "predictions" / "simulator.jsonl", "")
    metrics.update(task.student_metrics(rationale_dir, test_predictions))
    return metrics
