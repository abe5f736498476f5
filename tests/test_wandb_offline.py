from pathlib import Path

import pytest
import wandb

from scd.data.records import RationaleRecord
from scd.evaluation.wandb_log import log_rationale_samples, log_report_table, rationale_samples_table
from scd.io import scrub_secrets, secret_values

FAKE_KEY = "fake-wandb-key-0123456789abcdef0123456789"


def test_secret_names_and_lengths():
    environ = {
        "WANDB_API_KEY": FAKE_KEY, "HF_TOKEN": "hf_abcdefgh", "AWS_SECRET_ACCESS_KEY": "aws-secret-1",
        "DB_PASSWORD": "hunter22", "TOKENIZERS_PARALLELISM": "false-ish", "SHORT_KEY": "abc", "HOME": "/root/home",
    }
    assert set(secret_values(environ)) == {FAKE_KEY, "hf_abcdefgh", "aws-secret-1", "hunter22"}


def test_scrub_secrets_masks_every_occurrence_and_copies():
    environ = {"WANDB_API_KEY": FAKE_KEY, "TOKENIZERS_PARALLELISM": "false"}
    config = {
        "logger": {"api_key": FAKE_KEY, "url": f"https://user:{FAKE_KEY}@example.org"},
        "paths": [FAKE_KEY, "data"],
        "pair": ("x", FAKE_KEY),
        "parallel": "false",
        "steps": 3,
    }
    scrubbed = scrub_secrets(config, environ)
    assert scrubbed == {
        "logger": {"api_key": "***", "url": "https://user:***@example.org"},
        "paths": ["***", "data"],
        "pair": ("x", "***"),
        "parallel": "false",
        "steps": 3,
    }
    assert config["logger"]["api_key"] == FAKE_KEY  # the input is left alone


def records(decoding: str, rationales: list[str]) -> list[RationaleRecord]:
    return [
        RationaleRecord(f"q{i}", f"Question {i}?", ["yes", "no"], 0, 1, 0, text, decoding)
        for i, text in enumerate(rationales)
    ]


def test_rationale_samples_side_by_side():
    table = rationale_samples_table(
        {"greedy": records("greedy", ["g0", "g1", "g2"]), "contrast_wrong": records("contrast_wrong", ["c0", "c1"])},
        n=2,
    )
    assert table.columns == ["id", "question", "choices", "answer", "rationale_for", "greedy", "contrast_wrong"]
    assert table.data == [
        ["q0", "Question 0?", "yes | no", "yes", "yes", "g0", "c0"],
        ["q1", "Question 1?", "yes | no", "yes", "yes", "g1", "c1"],
    ]


def test_offline_run_writes_files_without_the_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
    # A config that picked up the key (e.g. through ${oc.env:WANDB_API_KEY}) must reach W&B scrubbed.
    config = {"logger": {"api_key": FAKE_KEY, "project": "scd"}, "seed": 0}

    run = wandb.init(project="scd-test", dir=tmp_path, mode="offline", config=scrub_secrets(config))
    try:
        samples = log_rationale_samples(run, {"greedy": records("greedy", ["Fish need water."])}, n=5)
        report = log_report_table(run, [
            {"decoding": "greedy", "training": "standard", "student/accuracy/mean": 0.7, "student/accuracy/std": None},
            {"decoding": "contrast_wrong", "training": "standard", "student/accuracy/mean": 0.75},
        ])
        assert dict(run.config)["logger"] == {"api_key": "***", "project": "scd"}
    finally:
        run.finish()

    assert samples.data[0][-1] == "Fish need water."
    assert report.data[1] == ["contrast_wrong", "standard", 0.75, None]
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    run_files = [path for path in written if path.suffix == ".wandb"]
    assert len(run_files) == 1, "the offline run wrote no .wandb file"
    assert b"***" in run_files[0].read_bytes()  # the scrubbed config went into the run's record
    assert any(path.name.endswith(".table.json") for path in written)
    leaking = [str(path) for path in written if FAKE_KEY.encode() in path.read_bytes()]
    assert leaking == []
