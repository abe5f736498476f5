"""Where rationales live: a cache directory per teacher-relevant config, resumable shards, atomic final files.

Layout of ``<cache_dir>/rationales/<key>/``:
- ``shard-rank<r>.jsonl``: records appended as they are decoded (may end in a line cut by a kill);
- ``<split>.jsonl``: the merged, ordered files, each written to a temporary name and renamed into place;
- ``COMPLETE``: written after them. Only a directory with this marker is reused; anything else is resumed;
- ``teacher_metrics.json``, ``judge-<key>.json``: the rationale set's metrics (``scd.evaluation.teacher_metrics``),
  written once under the lock and then reused with the rationales;
- ``.lock``: held by the job generating into the directory, so parallel jobs with one teacher config generate once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scd.data.records import RationaleRecord
from scd.io import atomic_write_text, write_rationales

COMPLETE_MARKER = "COMPLETE"


def config_key(teacher_relevant: dict[str, Any]) -> str:
    """A short stable hash of the config that decides the rationales (data, teacher, prompt, decoding)."""
    blob = json.dumps(teacher_relevant, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_shards(shard_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """All complete records in the shards, keyed by (split, id). A line cut by a kill is dropped from its file."""
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for shard in sorted(shard_dir.glob("shard-rank*.jsonl")):
        raw = shard.read_bytes()
        good = raw[: raw.rfind(b"\n") + 1]
        if len(good) != len(raw):
            # Only the last line can be partial (lines are appended whole); cut it so appends start on a clean line.
            with open(shard, "r+b") as handle:
                handle.truncate(len(good))
        for line in good.decode("utf-8").splitlines():
            record = json.loads(line)
            records.setdefault((record["split"], record["id"]), record)
    return records


def merge_shards(shard_dir: Path, order: dict[str, Sequence[str]]) -> None:
    """Write ``<split>.jsonl`` for every split in ``order`` (ids in data order), then the completion marker."""
    records = read_shards(shard_dir)
    for split, ids in order.items():
        missing = [i for i in ids if (split, i) not in records]
        if missing:
            raise RuntimeError(f"rationales for split {split!r} are incomplete: {len(missing)} ids missing, e.g. {missing[:3]}")
        write_rationales(shard_dir / f"{split}.jsonl", [RationaleRecord.from_dict(records[(split, i)]) for i in ids])
    atomic_write_text(shard_dir / COMPLETE_MARKER, "\n".join(order) + "\n")


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).exists()
