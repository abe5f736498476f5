"""W&B helpers for a run (``wandb.init(...)`` or Lightning's ``WandbLogger.experiment``). The config a run logs is
scrubbed of secrets first (``scd.io.scrub_secrets``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import wandb

from scd.data.records import RationaleRecord


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
    """Log the report's rows (``scd.report.tables.report_rows``: one flat dict per cell, None where a metric was not
    measured, which W&B shows as an empty cell, not 0) as a table; returns it."""
    if not table_rows:
        raise ValueError("report table: no rows")
    columns = list(dict.fromkeys(column for row in table_rows for column in row))
    table = wandb.Table(columns=columns, data=[[row.get(column) for column in columns] for row in table_rows])
    run.log({key: table})
    return table
