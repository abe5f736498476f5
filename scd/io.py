"""Files every stage reads and writes: atomic writes, locks, JSON lines, and secrets kept out of configs.

- ``atomic_write_text`` / ``publish_directory``: a file or directory either holds all of its new content or does not
  change, so a killed run never leaves a partial artifact that a later run would read as complete;
- ``exclusive`` / ``lock_file``: locks that parallel jobs take before building a shared cache entry;
- ``decode_utf8`` / ``json_object_lines``: JSON-lines files read with errors that name the file and line (the
  rationale files, ``scd.data.records``, and the data sets' files);
- ``scrub_secrets``: a config with environment secrets masked, before it is logged or saved. W&B uploads the config
  it is given, and Hydra-composed configs can pick up tokens through ``${oc.env:...}`` interpolations.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


# The lock files each thread holds (``lock_file``).
_held_locks = threading.local()

# --- atomic writes and locks -----------------------------------------------------------------------------------------


def config_key(config: Any) -> str:
    """A short stable hash of a JSON-able config: what names a cache entry built from it (rationale sets, judges, a
    task's trained teacher and its tokenizer)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _temporary(path: Path) -> Path:
    # The process id keeps two writers of one file (DDP ranks, sweep jobs sharing the cache) off each other's temp file.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) so that ``path`` either holds all of it or does not change (``atomic_write_bytes``)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` either holds all of it or does not change.

    What ``path`` points to is never replaced: a symlink is followed and the regular file it names is replaced (the
    link stays), and a path that is not a regular file (``/dev/stdout``, a terminal, ``/dev/null``, a FIFO) is written
    directly, since renaming a file onto it would replace the device or pipe instead of writing to it."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        try:
            with open(path, "wb") as handle:
                handle.write(data)
        except OSError as err:
            raise OSError(f"could not write {path}: {err.strerror or err}") from err
        return
    target = Path(os.path.realpath(path))
    tmp = _temporary(target)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(f"could not write {path}: {err.strerror or err}") from err


def publish_directory(write: Callable[[Path], object], target: Path) -> Path:
    """Let ``write`` fill a fresh temporary directory, then move it to ``target`` (replacing an older one), so that
    ``target`` never holds a partial set of files. Returns ``target``. A symlinked ``target`` keeps its link: the
    directory it names is the one replaced."""
    resolved = Path(os.path.realpath(target))
    tmp = _temporary(resolved)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        # A directory cannot be renamed over a non-empty one: between these two steps there is no target at all,
        # which readers see as "not written yet", never as a partial one.
        shutil.rmtree(resolved, ignore_errors=True)
        os.replace(tmp, resolved)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(f"could not write {target}: {err.strerror or err}") from err
    return target


@contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (its ``.lock`` file) for the duration of the block."""
    with lock_file(directory / ".lock"):
        yield


@contextmanager
def lock_file(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if need be) for the duration of the block; the lock goes
    with the process, so a killed holder never leaves it locked. A thread that holds it already just goes on (a
    second flock of the same file by one process would wait for itself); other threads and processes wait."""
    held = _held_locks.__dict__.setdefault("paths", set())
    key = Path(path).resolve()
    if key in held:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)


def can_write(directory: Path) -> bool:
    """Whether files can be created in ``directory`` (a read-only cache cannot take new files, nor a lock)."""
    try:
        with open(directory / ".lock", "a"):
            return True
    except OSError:
        return False


# --- JSON lines ------------------------------------------------------------------------------------------------------


def decode_utf8(path: Path, data: bytes, error: type[Exception]) -> str:
    """``data``, read from ``path``, as UTF-8 text (a leading byte-order mark dropped); bytes that are not UTF-8 raise
    ``error`` naming the file and line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise error(f"{path}, line {line}: file is not UTF-8 ({err.reason} at byte {err.start})") from None


def json_object_lines(path: Path, text: str, error: type[Exception]) -> Iterator[tuple[str, dict[str, Any]]]:
    """("line N", object) for each non-blank line of the JSON-lines ``text`` read from ``path``. A line that is not a
    JSON object raises ``error`` naming the file and line. Lines end at "\\n" only: a JSON string may hold U+2028,
    which ``str.splitlines`` breaks on."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(f"{path}, line {number}: malformed JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(row, dict):
            raise error(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
        yield f"line {number}", row


# --- secrets ---------------------------------------------------------------------------------------------------------

MASK = "***"
# A name part ending in one of these words marks a secret: WANDB_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, DB_PASSWORD,
# APIKEY. Requiring the word to end a part keeps TOKENIZERS_PARALLELISM and KEYBOARD_* out.
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD)(_|$)")
# Shorter values ("1", "true") cannot be told from ordinary config values, so they are not masked.
MIN_SECRET_LENGTH = 6


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of the environment variables whose names mark them as secrets, longest first."""
    environ = os.environ if environ is None else environ
    values = {value for name, value in environ.items() if SECRET_NAME.search(name.upper())}
    return sorted((value for value in values if len(value) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def scrub_secrets(config: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A copy of ``config`` in which every occurrence of an environment secret inside a string is replaced by
    ``***`` (nested dicts, lists and tuples included). Non-string values are kept as they are.

    >>> scrub_secrets({"url": "https://u:s3cr3t-pw@host", "n": 1}, environ={"DB_PASSWORD": "s3cr3t-pw"})
    {'url': 'https://u:***@host', 'n': 1}
    """
    secrets = secret_values(environ)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, MASK)
            return value
        if isinstance(value, Mapping):
            return {key: scrub(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(scrub(item) for item in value)
        return value

    return scrub(config)
