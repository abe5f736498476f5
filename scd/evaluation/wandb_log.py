"""W&B helpers for a run (``wandb.init(...)`` or Lightning's ``WandbLogger.experiment``), and config scrubbing.

``scrub_secrets`` must see every config before it is logged or saved: W&B uploads the config it is given, and
Hydra-composed configs can pick up tokens through ``${oc.env:...}`` interpolations.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import wandb

from scd.data.records import RationaleRecord

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


def rationale_samples_table(records_by_decoding: Mapping[str, Sequence[RationaleRecord]], n: int) -> wandb.Table:
    """The first ``n`` (question, answer) pairs of the first decoding, with each decoding's rationale side by side.

    A decoding without a rationale for a pair shows an empty cell.
    """
    if not records_by_decoding:
        raise ValueError("rationale samples: no decodings given")
    decodings = list(records_by_decoding)
    by_key = {
        decoding: {(r.id, r.rationale_for): r for r in records} for decoding, records in records_by_decoding.items()
    }
    columns = ["id", "question", "choices", "answer", "rationale_for", *decodings]
    rows = []
    for record in list(records_by_decoding[decodings[0]])[:n]:
        key = (record.id, record.rationale_for)
        rationales = [by_key[d][key].rationale if key in by_key[d] else "" for d in decodings]
        rows.append(
            [record.id, record.question, " | ".join(record.choices), record.answer_text, record.rationale_for_text,
             *rationales]
        )
    return wandb.Table(columns=columns, data=rows)


def log_rationale_samples(
    run: Any,
    records_by_decoding: Mapping[str, Sequence[RationaleRecord]],
    n: int,
    key: str = "teacher/rationale_samples",
) -> wandb.Table:
    """Log ``rationale_samples_table`` to ``run`` under ``key``; returns the table."""
    table = rationale_samples_table(records_by_decoding, n)
    run.log({key: table})
    return table


def log_report_table(run: Any, table_rows: Sequence[Mapping[str, Any]], key: str = "report/table") -> wandb.Table:
    """Log the report's rows (``scd.report.report_rows``: one flat dict per cell) as a table; returns it."""
    if not table_rows:
        raise ValueError("report table: no rows")
    columns = list(dict.fromkeys(column for row in table_rows for column in row))
    table = wandb.Table(columns=columns, data=[[row.get(column) for column in columns] for row in table_rows])
    run.log({key: table})
    return table
