"""Bad input, case by case: each ends the run with exit status 1 and one error line that names what is wrong.

The data cases are CREAK-format files in a temporary directory (``dataset=creak dataset.path=<dir>``), run through
``scd.cli.main_task`` in process; only the errors Hydra itself finds (an unknown group option, a misspelled
key) need the real command line.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scd.io as atomic_io
import scd.teacher.generation as generation
from scd.cli import main_task
from tests.conftest import ROOT

ENOSPC = os.strerror(errno.ENOSPC)


def creak_row(i: int, **changes: object) -> dict:
    row = {"ex_id": f"c{i}", "sentence": f"Claim number {i} is true.", "explanation": f"Claim {i} holds.",
           "label": "true" if i % 2 else "false", "entity": f"Entity {i}"}
    row.update(changes)
    return {key: value for key, value in row.items() if value is not None}


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A valid CREAK directory: 6 train claims (2 held out as dev) and 3 test claims in dev.json."""
    directory = tmp_path / "creak"
    directory.mkdir()
    write_lines(directory / "train.json", [creak_row(i) for i in range(6)])
    write_lines(directory / "dev.json", [creak_row(i) for i in range(10, 13)])
    return directory


@pytest.fixture
def fails(make_config, capsys, data):
    """``fails(*overrides)``: run main_task on CREAK at ``data``, expect exit 1, return the one stderr line."""

    def run(*overrides: str, status: bool = True) -> str:
        raw = make_config("dataset=creak", f"dataset.path={data}", "dataset.dev_size=2", *overrides)
        with pytest.raises(SystemExit) as exit_info:
            main_task(raw)
        assert exit_info.value.code == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("scd: error: ")
        if status:
            recorded = json.loads((Path(raw.paths.output_dir) / "status.json").read_text())
            assert recorded["status"] == "failed" and recorded["error"].endswith(lines[0].removeprefix("scd: error: "))
        return lines[0]

    return run


def test_malformed_json_line(fails, data):
    write_lines(data / "train.json", [creak_row(0), '{"ex_id": "c1", "sentence": "Unclosed', creak_row(2)])
    assert fails() == (f"scd: error: {data / 'train.json'}, line 2: malformed JSON "
                       "(Unterminated string starting at at column 29)")


@pytest.mark.parametrize("field", ["sentence", "label"])
def test_missing_question_or_answer(fails, data, field):
    write_lines(data / "dev.json", [creak_row(10), creak_row(11, **{field: None})])
    assert fails() == f"scd: error: {data / 'dev.json'}, line 2, field {field!r}: missing"


def test_answer_not_among_the_choices(fails, data):
    write_lines(data / "train.json", [creak_row(0), creak_row(1), creak_row(2, label="maybe")])
    assert fails() == f"scd: error: {data / 'train.json'}, line 3, field 'label': expected 'true' or 'false', got 'maybe'"


def test_duplicate_ids(fails, data):
    write_lines(data / "train.json", [creak_row(0), creak_row(1), creak_row(2, ex_id="c0")])
    assert fails() == f"scd: error: {data / 'train.json'}, line 3, field 'id': duplicate id 'c0' (first at line 1)"


def test_empty_split(fails, data):
    (data / "dev.json").write_text("\n")
    assert fails() == f"scd: error: {data / 'dev.json'}: empty, no examples"


def test_missing_split_file(fails, data):
    (data / "dev.json").unlink()
    assert fails() == f"scd: error: {data / 'dev.json'}: no such file; check dataset.path and dataset.splits"


def test_file_that_is_not_utf8(fails, data):
    first = json.dumps(creak_row(0)).encode() + b"\n"
    (data / "train.json").write_bytes(first + b'{"ex_id": "c1\xff"}\n')
    offset = len(first) + len(b'{"ex_id": "c1')
    assert fails() == f"scd: error: {data / 'train.json'}, line 2: file is not UTF-8 (invalid start byte at byte {offset})"


def test_unknown_data_format(fails):
    assert fails("dataset.format=creek") == (
        "scd: error: unknown data format 'creek'; known formats: commonsenseqa, cose, creak, qasc, strategyqa")


@pytest.mark.parametrize(
    "override,message",
    [
        ("decoding.lam=7", "decoding.lam must be in [0, 1], got 7.0"),
        ("decoding.lam=-0.5", "decoding.lam must be in [0, 1], got -0.5"),
        ("training.alpha=1.5", "training.alpha must be in [0, 1], got 1.5"),
        ("training.alpha=-1", "training.alpha must be in [0, 1], got -1.0"),
    ],
)
def test_value_out_of_range(fails, override, message):
    assert fails(override) == f"scd: error: {message}"


def test_prompt_longer_than_the_models_context(fails):
    # The tiny teacher's two demonstrations alone are longer than 200 bytes.
    line = fails("teacher.max_context=200")
    assert line.startswith("scd: error: prompt longer than the teacher's context: test example 'c10' needs ")
    assert line.endswith(" + 24 new tokens > 200; use fewer teacher.num_demonstrations or a smaller teacher.max_new_tokens")


class FullDisk:
    """A file opened for writing on a full disk: every write fails with ENOSPC."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, ENOSPC)

    def __getattr__(self, name: str):
        return getattr(self.handle, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


def full_disk(below: Path):
    """An ``open`` for which every file under ``below`` lies on a full disk."""

    def open_(file, mode="r", *args, **kwargs):
        handle = builtins.open(file, mode, *args, **kwargs)
        full = Path(file).resolve().is_relative_to(below) and any(flag in mode for flag in "wax+")
        return FullDisk(handle) if full else handle

    return open_


@pytest.mark.parametrize("module", [atomic_io, generation], ids=["atomic_write", "shard_append"])
def test_full_cache_disk_while_writing(fails, monkeypatch, tmp_path, module):
    # The module's own `open` shadows the builtin: the atomic writes (the first is the teacher's prompt
    # prefix) or the teacher's shard appends hit a full cache disk; the run directory can still record the failure.
    cache = tmp_path / "cache"
    monkeypatch.setattr(module, "open", full_disk(cache), raising=False)
    line = fails("stages=[teacher]")
    (store_dir,) = (cache / "rationales").iterdir()
    if module is atomic_io:
        assert line == f"scd: error: could not write {store_dir / 'prompt_prefix.txt'}: {ENOSPC}"
    else:
        assert line == f"scd: error: could not append to {store_dir / 'shard-rank0.jsonl'}: {ENOSPC}"


def test_full_disk_everywhere(fails, monkeypatch, tmp_path):
    # Not even the run's record (the first file a run writes) can be written: that first failure is reported.
    monkeypatch.setattr(atomic_io, "open", full_disk(tmp_path), raising=False)
    assert fails(status=False) == f"scd: error: could not write {tmp_path / 'run' / 'run_config.json'}: {ENOSPC}"


# Hydra reports these before any of our code runs; they go through the real command line (a few seconds each). They
# are one line because run.py wraps its main in scd.cli.cli (Hydra's own report spans several lines).
@pytest.mark.slow
@pytest.mark.parametrize(
    "override,message",
    [
        ("decoding=beam", "scd: error: In 'config': Could not find 'decoding/beam'; options: "
                          + ", ".join(sorted(path.stem for path in (ROOT / "conf" / "decoding").glob("*.yaml")))),
        ("decoding.lamda=0.5", "scd: error: Could not override 'decoding.lamda'. Key 'lamda' is not in struct"),
    ],
)
def test_hydra_level_errors_through_the_cli(tmp_path, override, message):
    env = {**os.environ, "WANDB_MODE": "offline", "SCD_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("HYDRA_FULL_ERROR", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "experiment=smoke", override, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [message]
