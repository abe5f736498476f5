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

from scd.config import Config, InContextConfig, StudentConfig, TeacherConfig, TrainerConfig
from scd.data.example import Example
from scd.data.records import RationaleRecord, read_split
from scd.evaluation.items import ITEMS_FILE, item_rows, write_items
from scd.evaluation.answers import Answerer, answer_metrics, write_predictions
from scd.evaluation.simulator import VIEWS, SimulatorRow, fit_simulator, simulator_las
from scd.io import atomic_write_text
from scd.models import inference_device, load_model, load_tokenizer
from scd.progress import output_is_terminal
from scd.student.evaluate import StudentAnswerer
from scd.task import Task
from scd.teacher.icl import AnsweringPrompt, InContextAnswerer
from scd.teacher.loading import demonstrations, load_teacher_model

log = logging.getLogger(__name__)


def simulator_rows(records: list[RationaleRecord], predictions: list[dict[str, Any]]) -> list[SimulatorRow]:
    """The student's own rationale and answer per record; unparsable answers cannot be simulated and are left out."""
    return [
        SimulatorRow(r.question, tuple(r.choices), p["rationale"], p["predicted"], r.id)
        for r, p in zip(records, predictions) if p["predicted"] is not None
    ]


def run_evaluate_stage(
    cfg: Config, tags: str, run_dir: Path, task: Task, shared_tokenizer: str | None, teacher_dir: str | None,
    train_examples: list[Example],
) -> dict[str, float]:
    """``tags``: the training objective's task tags, which the student's inputs carry. ``shared_tokenizer`` is what
    the simulator's ``tokenizer: teacher`` loads; ``teacher_dir`` and the training examples (its demonstrations) serve
    ``student=icl_teacher``, where the teacher answers in the student's place."""
    rationale_dir = run_dir / "rationales"
    test, test_cf = read_split(rationale_dir, "test"), read_split(rationale_dir, "test_counterfactual")
    train = read_split(rationale_dir, "train")
    if cfg.student.in_context is not None:
        log.info("evaluate: the teacher answers %d test questions (and %d counterfactual ones) in context, then its "
                 "%d training questions for the simulator", len(test), len(test_cf), len(train))  # fmt: skip
        answerer: Answerer = in_context_teacher(cfg, teacher_dir, train_examples)
    else:
        log.info("evaluate: the student answers %d test questions (and %d counterfactual ones), then its %d "
                 "training questions for the simulator", len(test), len(test_cf), len(train))  # fmt: skip
        answerer = trained_student(cfg.student, cfg.trainer, tags, run_dir)
    metrics, test_predictions = answer_metrics(answerer, test, test_cf, perturb_share=cfg.student.perturb_share,
                                               seed=cfg.seed)  # fmt: skip
    write_predictions(run_dir, test_predictions)
    train_predictions = answerer.predict(train)
    train_rows, test_rows = simulator_rows(train, train_predictions), simulator_rows(test, test_predictions)
    if train_rows and test_rows:
        # Simulate the student's answers on test from question+rationale, question and rationale (Hase et al., 2020).
        log.info("LAS: training simulator=%s on the student's answers to %d training questions, then simulating "
                 "%d test answers", cfg.simulator.name, len(train_rows), len(test_rows))  # fmt: skip
        simulator, simulator_tokenizer = fit_simulator(cfg.simulator, cfg.trainer, train_rows, shared_tokenizer)
        las, simulated = simulator_las(simulator, simulator_tokenizer, test_rows, batch_size=cfg.simulator.batch_size,
                                       input_limit=cfg.simulator.input_limit(),
                                       bootstrap_samples=cfg.simulator.bootstrap_samples, seed=cfg.simulator.seed)  # fmt: skip
        metrics.update({key: value for key, value in las.to_metrics().items() if value is not None})
        # Per item, beside predictions/test.jsonl: the simulator's answer from each view (items the student answered),
        # what a bootstrap over test items needs.
        answered = [p["id"] for p in test_predictions if p["predicted"] is not None]
        simulated_by_item = {item: {view: int(simulated[view][k]) for view in VIEWS} for k, item in enumerate(answered)}
        lines = [json.dumps({"id": item, **views}) + "\n" for item, views in simulated_by_item.items()]
        atomic_write_text(run_dir / "predictions" / "simulator.jsonl", "".join(lines))
    else:
        log.warning("LAS skipped: the student's answers could not be parsed (train %d, test %d usable)",
                    len(train_rows), len(test_rows))
        atomic_write_text(run_dir / "predictions" / "simulator.jsonl", "")
        simulated_by_item = {}
    metrics.update(task.student_metrics(rationale_dir, test_predictions))
    write_items(run_dir / "predictions" / ITEMS_FILE,
                item_rows(test, test_predictions, simulated_by_item, {r.id: task.cluster_key(r) for r in test},
                          task.item_fields(rationale_dir, test_predictions)))  # fmt: skip
    return metrics


def show_bars(trainer: TrainerConfig) -> bool:
    """Generation's tqdm bars only where they are read as bars (a terminal); a log file gets the start lines."""
    return trainer.enable_progress_bar and output_is_terminal()


def trained_student(s: StudentConfig, trainer: TrainerConfig, tags: str, run_dir: Path) -> StudentAnswerer:
    """The student the student stage trained into ``run_dir/student``, given inputs with the objective's ``tags``."""
    student_dir = run_dir / "student"
    if not student_dir.is_dir():
        raise ValueError(f"no trained student in {student_dir}: run the student stage first (stages=[student,evaluate])")
    tokenizer = load_tokenizer(str(student_dir), trust_remote_code=s.trust_remote_code)
    device = inference_device(trainer.accelerator)
    model = load_model(s.arch, tokenizer, name_or_path=str(student_dir), trust_remote_code=s.trust_remote_code)
    return StudentAnswerer(model.to(device).eval(), tokenizer, s.arch, tags=tags,
                           batch_size=s.eval_batch_size, max_new_tokens=s.max_new_tokens, input_limit=s.input_limit(),
                           show_progress=show_bars(trainer))  # fmt: skip


def answering_prompt(teacher: TeacherConfig, in_context: InContextConfig) -> AnsweringPrompt:
    """The in-context teacher's prompt; building it checks the template's slots (``run`` does so at start, before the
    teacher stage)."""
    return AnsweringPrompt(in_context.template or teacher.template, teacher.separator, teacher.instruction)


def in_context_teacher(cfg: Config, teacher_dir: str | None, train_examples: list[Example]) -> InContextAnswerer:
    """The teacher answering in context (``scd.teacher.icl``), after demonstrations from the training examples."""
    t, icl = cfg.teacher, cfg.student.in_context
    model, tokenizer = load_teacher_model(t, teacher_dir)
    if t.device_map is None:
        model = model.to(inference_device(cfg.trainer.accelerator))
    prompt = answering_prompt(t, icl)
    return InContextAnswerer(
        model, tokenizer, prompt, demonstrations(t, train_examples, cfg.dataset.seed),
        max_new_tokens=icl.max_new_tokens, batch_size=icl.batch_size, show_progress=show_bars(cfg.trainer),
    )
