"""Where rationales live: a cache directory per teacher-relevant config, resumable shards, atomic final files.

Layout of ``<cache_dir>/rationales/<key>/``:
- ``shard-rank<r>.jsonl``: records appended as they are decoded (may end in a line cut by a kill);
- ``<split>.jsonl``: the merged, ordered files, each written to a temporary name and renamed into place;
- ``COMPLETE``: written last, the manifest: each final file's row count, size and SHA-256. Only a directory with
  this marker is reused, and only once every file matches it; anything else is resumed;
- ``teacher_metrics.json``, ``judge-<key>.json``: the rationale set's metrics (``scd.evaluation.teacher_metrics``),
  written once under the lock after the marker and then reused with the rationales;
- ``.lock``: held by the job generating into the directory, so parallel jobs with one teacher config generate once.
  Reusing a complete entry takes no lock (it never changes again), so a read-only cache serves complete entries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scd.data.records import RationaleRecord, write_rationales
from scd.io import atomic_write_text

COMPLETE_MARKER = "COMPLETE"


class CacheError(ValueError):
    """A cache entry whose files do not match what was recorded when it was written (lost lines, a cut line)."""

# The instruction and demonstrations the teacher saw before every question, saved beside the rationales.
PROMPT_PREFIX_FILE = "prompt_prefix.txt"
# The metrics of the run's rationale set, beside it in the run directory.
TEACHER_METRICS_FILE = "teacher_metrics.json"


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
        # split("\n"), not splitlines(): a record may hold U+2028, which splitlines() breaks on.
        for number, line in enumerate(good.decode("utf-8").split("\n")[:-1], start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CacheError(f"{shard}, line {number}: damaged record ({err.msg}: column {err.colno}); "
                                 f"delete {shard_dir} to regenerate this cache entry") from None
            records.setdefault((record["split"], record["id"]), record)
    return records


def merge_shards(shard_dir: Path, order: dict[str, Sequence[str]], extra_files: Sequence[str] = ()) -> None:
    """Write ``<split>.jsonl`` for every split in ``order`` (ids in data order), then the completion marker with the
    manifest of those files and of ``extra_files`` (already in ``shard_dir``)."""
    records = read_shards(shard_dir)
    for split, ids in order.items():
        missing = [i for i in ids if (split, i) not in records]
        if missing:
            raise RuntimeError(f"rationales for split {split!r} are incomplete: {len(missing)} ids missing, e.g. {missing[:3]}")
        write_rationales(shard_dir / f"{split}.jsonl", [RationaleRecord.from_dict(records[(split, i)]) for i in ids])
    manifest = {name: file_facts(shard_dir / name) for name in [*(f"{split}.jsonl" for split in order), *extra_files]}
    atomic_write_text(shard_dir / COMPLETE_MARKER, json.dumps({"files": manifest}, indent=1, sort_keys=True) + "\n")


def file_facts(path: Path) -> dict[str, Any]:
    """What the manifest records of a file: its rows (complete lines), bytes and SHA-256."""
    data = path.read_bytes()
    return {"rows": data.count(b"\n"), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def is_complete(directory: Path) -> bool:
    """True if ``directory`` holds a complete entry whose files match its manifest; False if it is not complete yet.
    Raises CacheError, naming the entry and how to regenerate it, if a file was damaged after it was written."""
    marker = directory / COMPLETE_MARKER
    if not marker.exists():
        return False
    regenerate = f"delete {directory} to regenerate this cache entry"
    try:
        manifest = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise CacheError(f"cache entry {directory}: {COMPLETE_MARKER} is not a readable manifest; {regenerate}") from None
    for name, recorded in sorted(manifest.items()):
        path = directory / name
        if not path.is_file():
            raise CacheError(f"cache entry {directory}: {name} is missing; {regenerate}")
        found = file_facts(path)
        if found["rows"] != recorded["rows"]:
            raise CacheError(f"cache entry {directory}: {name} has {found['rows']} rows, its manifest records "
                             f"{recorded['rows']}; {regenerate}")
        if found != recorded:
            raise CacheError(f"cache entry {directory}: {name} does not match the checksum its manifest records; "
                             f"{regenerate}")
    return True
