"""The student under hostile use (issue 12): bad student, trainer and callback settings fail at start in one line;
a checkpoint of another student is refused in one line; a moved run directory resumes; the CSV log is appended."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.loggers import CSVLogger
from transformers import AutoModelForSeq2SeqLM

from scd.cli import main_task
from scd.config import validate
from scd.loggers import build_logger, csv_logger
from scd.student.callbacks import RunCheckpoint, build_callbacks
from scd.progress import StepProgressBar
from scd.student.stage import student_trainer
from scd.student.train import fit_student
from tests.conftest import compose_config, validated
from tests.helpers import student, trainer


@pytest.fixture
def fails(make_config, capsys):
    """``fails(*overrides)``: run main_task on the smoke config, expect exit 1; return the one stderr line."""

    def run(*overrides: str) -> str:
        raw = make_config(*overrides)
        with pytest.raises(SystemExit) as exit_info:
            main_task(raw)
        assert exit_info.value.code == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        # Refused before the teacher stage: no rationale was generated.
        assert not (Path(raw.paths.cache_dir) / "rationales").exists()
        return lines[0]

    return run


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("student.max_new_tokens=0", "student.max_new_tokens must be >= 1, got 0"),
        ("student.eval_batch_size=0", "student.eval_batch_size must be >= 1, got 0"),
        ("+student.random_init.num_layer=7",
         "student.random_init: unknown key 'num_layer' for t5 (T5Config); did you mean 'num_layers'?"),
        ("+teacher.random_init.num_hidden_layer=3",
         "teacher.random_init: unknown key 'num_hidden_layer' for gpt_neox (GPTNeoXConfig); "
         "did you mean 'num_hidden_layers'?"),
        ("+simulator.random_init.vocab_size=300", "simulator.random_init: 'vocab_size' is set from the tokenizer; remove it"),
        ("student.random_init.model_type=t6",
         "student.random_init.model_type must name a transformers model type (t5, gpt_neox, ...), got 't6'"),
        ("trainer.max_steps=-5",
         "trainer: `max_steps` must be a non-negative integer or -1 (infinite steps). You passed in -5."),
        ("+callbacks.checkpoint.monitr=val/loss", "callbacks.checkpoint: unknown key 'monitr' for "
         "scd.student.callbacks.RunCheckpoint; known: "),
        ("callbacks.progress_bar._target_=scd.student.callbacks.NoSuchBar",
         "callbacks.progress_bar._target_: cannot import 'scd.student.callbacks.NoSuchBar'"),
        ("+training.beta=2", "training: unknown key 'beta' for scd.student.objectives.Counterfactual; "
         "known: mode, alpha, tags"),
    ],
)
def test_bad_student_settings_fail_at_start_in_one_line(fails, override: str, message: str) -> None:
    assert fails(override).startswith(f"scd: error: {message}")


def test_every_trainer_argument_passes_through_and_lightning_checks_it(make_config) -> None:
    cfg, components = validated(make_config("trainer.limit_train_batches=0.1", "trainer.accumulate_grad_batches=2"))
    built = student_trainer(cfg, components.training, Path(cfg.paths.output_dir), logger=False)
    assert built.limit_train_batches == 0.1 and built.accumulate_grad_batches == 2
    cfg, components = validated(make_config("trainer.fast_dev_run=true"))
    assert student_trainer(cfg, components.training, Path(cfg.paths.output_dir), logger=False).fast_dev_run is True
    # Accepted by the config; Lightning itself refuses FSDP on a CPU, with its own reason.
    fsdp, components = validated(make_config("trainer.strategy=fsdp", "trainer.accelerator=cpu"))
    with pytest.raises(ValueError, match=r"^trainer: The strategy `fsdp` requires a GPU accelerator"):
        student_trainer(fsdp, components.training, Path(fsdp.paths.output_dir), logger=False)


def test_callbacks_come_from_the_group_and_null_drops_one(tmp_path: Path) -> None:
    cfg = validate(compose_config(["student.early_stopping_patience=7"], tmp_path, tmp_path))
    checkpoint, early_stopping, progress_bar = build_callbacks(cfg.callbacks, progress_bar=True, monitor="val/x_loss")
    assert type(checkpoint) is RunCheckpoint and type(progress_bar) is StepProgressBar
    assert type(early_stopping) is EarlyStopping and early_stopping.patience == 7 and early_stopping.monitor == "val/x_loss"
    # trainer.enable_progress_bar=false drops the bar, which Lightning would otherwise refuse.
    cfg = validate(compose_config(["callbacks.early_stopping=null"], tmp_path, tmp_path))
    assert [type(c) for c in build_callbacks(cfg.callbacks, progress_bar=False, monitor="val/x_loss")] == [RunCheckpoint]


def test_fast_dev_run_trains_one_step_and_exports(make_config) -> None:
    raw = make_config("stages=[teacher,student]", "trainer.fast_dev_run=true")
    assert main_task(raw) is not None
    run_dir = Path(raw.paths.output_dir)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1
    assert (run_dir / "student" / "model.safetensors").exists()


def test_a_checkpoint_of_another_student_is_refused_in_one_line(tmp_path: Path) -> None:
    module, data = student("seq2seq", "standard")
    fit_student(module, data, trainer(tmp_path, 2), ckpt_path=None)
    other, data = student("causal", "standard")
    with pytest.raises(ValueError) as error:
        fit_student(other, data, trainer(tmp_path, 4), ckpt_path="last")
    assert str(error.value).startswith(f"{tmp_path / 'checkpoints' / 'last.ckpt'}: a checkpoint of another student (")
    assert "\n" not in str(error.value)
    assert other.steps_run == 0


def test_the_cli_refuses_a_checkpoint_of_another_student_in_one_line(make_config, capsys) -> None:
    assert main_task(make_config("stages=[teacher,student]")) is not None
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main_task(make_config("stages=[student]", "ckpt_path=last", "student=tiny_causal"))
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scd: error: "), lines


def test_a_moved_run_directory_resumes_and_exports_its_own_best_checkpoint(tmp_path: Path) -> None:
    first, moved = tmp_path / "first", tmp_path / "moved"
    module, data = student("seq2seq", "standard")
    # 2 steps per epoch: validation (and a best checkpoint) at steps 2 and 4.
    fit_student(module, data, trainer(first, 4), ckpt_path=None)
    state = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
    (callback_state,) = [v for k, v in state["callbacks"].items() if k.startswith("RunCheckpoint")]
    best_name = callback_state["best_model_path"]
    assert best_name.startswith("best-step") and not Path(best_name).is_absolute()
    shutil.move(first, moved)

    # Step 5 stops mid-epoch, before any validation: the best checkpoint is still the moved run's.
    module, data = student("seq2seq", "standard")
    exported = fit_student(module, data, trainer(moved, 5), ckpt_path="last")
    assert module.trainer.global_step == 5 and module.steps_run == 1
    assert module.trainer.checkpoint_callback.best_model_path == str((moved / "checkpoints" / best_name).resolve())
    best = torch.load(moved / "checkpoints" / best_name, weights_only=True)["state_dict"]
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(exported)
    for name, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, best[f"model.{name}"], rtol=0, atol=0)


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_csv_log_is_appended_on_resume_and_by_an_evaluate_only_run(tmp_path: Path) -> None:
    def logger():
        return build_logger(csv_logger, tmp_path, {"seed": 0}, None)

    module, data = student("seq2seq", "standard")
    fit_student(module, data, trainer(tmp_path, 3, logger=logger()), ckpt_path=None)
    module, data = student("seq2seq", "standard")
    fit_student(module, data, trainer(tmp_path, 5, logger=logger()), ckpt_path="last")
    trained = [int(row["step"]) for row in csv_rows(tmp_path) if row["train/loss"]]
    assert trained == [0, 1, 2, 3, 4]
    # An evaluate-only run logs its metrics below the training curves (a new column widens the header).
    logger().log_metrics({"student/accuracy": 0.5})
    rows = csv_rows(tmp_path)
    assert [int(row["step"]) for row in rows if row["train/loss"]] == trained
    assert rows[-1]["student/accuracy"] == "0.5"
    assert json.dumps(rows).count("val/loss") > 0


def test_the_logger_group_names_its_logger_by_target(make_config, tmp_path: Path) -> None:
    built = {option: validated(make_config(f"logger={option}"))[1].logger for option in ("csv", "wandb", "none")}
    assert built["none"] is None and build_logger(built["none"], tmp_path, {}, None) is False
    assert built["csv"].func is csv_logger and built["wandb"].keywords == {"project": "scd", "group": None,
                                                                         "mode": "offline"}  # fmt: skip
    logger = build_logger(built["csv"], tmp_path, {"seed": 0}, None)
    logger.log_metrics({"val/loss": 1.0}, step=0)
    logger.save()
    assert (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[1].startswith("0,1.0")
    # Another logger is its _target_: here Lightning's plain CSVLogger, given the run directory.
    other = validated(make_config("logger=csv", f"logger._target_={__name__}.plain_csv"))[1].logger
    assert type(build_logger(other, tmp_path, {}, None)) is CSVLogger
    with pytest.raises(ValueError, match=r"^logger: unknown key 'projct'"):
        validated(make_config("logger=wandb", "+logger.projct=x"))


def plain_csv(run_dir: Path, sweep_group: str | None = None) -> CSVLogger:
    return CSVLogger(save_dir=str(run_dir), name="plain")
