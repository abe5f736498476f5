"""The per-item files of a run: ``predictions/items.jsonl.gz`` for the student (below), and
``rationales/items.jsonl.gz`` for the teacher's test rationales (``teacher_item_rows``). The student's file is one JSON line per test question with everything a
paired comparison (``scd.compare``) recomputes its intervals from, small enough to commit with a study.

Each line holds the item's ``id`` and ``cluster`` (the task's cluster key: items of one cluster share their errors,
so the bootstrap resamples clusters), the ``gold``, ``predicted`` and ``perturbed`` answers (choice indices; None:
unparsable), one 0/1 indicator per answer metric (None where the metric was not measured for the item), the LAS
simulator's three answers (``sim_xe``, ``sim_x``, ``sim_e``; None where the student's answer could not be simulated)
and the fields the task adds (``Task.item_fields``: a checker's labels, say).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scd.data.records import RationaleRecord, read_split
from scd.io import atomic_write_bytes, json_object_lines
from scd.task import Task

ITEMS_FILE = "items.jsonl.gz"
# Where each kind of per-item file lives in a run directory: the student's answers, and the teacher's rationales.
ITEM_DIRS = ("predictions", "rationales")


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def item_rows(
    test: Sequence[RationaleRecord],
    predictions: Sequence[Mapping[str, Any]],
    simulated: Mapping[str, Mapping[str, int]],
    clusters: Mapping[str, str],
    task_fields: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One row per test prediction (see the module docstring); ``simulated`` maps an item id to the simulator's
    answers, ``clusters`` to its cluster key, ``task_fields`` to the task's own fields."""
    by_id = {record.id: record for record in test}
    rows = []
    for p in predictions:
        record, predicted = by_id[p["id"]], p["predicted"]
        cf_for = p.get("counterfactual_rationale_for")
        sim = simulated.get(p["id"], {})
        rows.append({
            "id": p["id"],
            "cluster": clusters.get(p["id"], p["id"]),
            "gold": record.answer,
            "predicted": predicted,
            "perturbed": record.perturbed_answer,
            "correct": int(predicted == record.answer),
            "unparsable": int(predicted is None),
            "oracle_correct": _flag(p["oracle_predicted"] == record.answer if "oracle_predicted" in p else None),
            "perturbed_kept": _flag(predicted is not None and p["perturbed_rationale_predicted"] == predicted
                                    if "perturbed_rationale_predicted" in p else None),
            "counterfactual_for": cf_for,
            "counterfactual_followed": _flag(p["counterfactual_predicted"] == cf_for
                                             if "counterfactual_predicted" in p else None),
            **{f"sim_{view}": sim.get(view) for view in ("xe", "x", "e")},
            **task_fields.get(p["id"], {}),
        })  # fmt: skip
    return rows


def teacher_item_rows(test: Sequence[RationaleRecord], clusters: Mapping[str, str],
                      task_fields: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    """One row per test rationale of the teacher (for the gold answer): id, cluster, gold answer and the task's fields
    (``Task.teacher_item_fields``), the per-item file of a teacher study (``rationales/items.jsonl.gz``)."""
    return [{"id": r.id, "cluster": clusters.get(r.id, r.id), "gold": r.answer, **task_fields.get(r.id, {})}
            for r in test]


def write_teacher_items(rationale_dir: Path, task: Task) -> Path:
    """``rationale_dir/items.jsonl.gz``: the teacher's per-item file of the run's test rationales."""
    test = read_split(rationale_dir, "test")
    rows = teacher_item_rows(test, {r.id: task.cluster_key(r) for r in test}, task.teacher_item_fields(rationale_dir))
    return write_items(rationale_dir / ITEMS_FILE, rows)


def write_items(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` gzipped with a fixed header time, so that equal rows give equal bytes."""
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    return path


def read_items(path: Path) -> list[dict[str, Any]]:
    """The rows of a per-item file; raises ValueError naming the file and line of a bad one."""
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a gzipped per-item file ({err})") from None
    rows = []
    for where, row in json_object_lines(path, text, ValueError):
        if "id" not in row:
            raise ValueError(f"{path}, {where}: not an item row (a JSON object with an id)")
        rows.append(row)
    return rows
