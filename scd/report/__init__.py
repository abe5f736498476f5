"""Paper-style results for a Hydra multirun sweep, or for one run: ``python -m scd.report <dir> [--html] [--wandb]``.

The directory receives ``table.md`` and ``table.csv`` (a row per cell: decoding x training x every other override
that varies, the seeds summarized as mean ± sample std), the figures as PNG and SVG, and with ``--html``
``report.html``. Modules, each using only those before it: ``collect`` (runs and cells), ``samples`` (a cell's test
rationales and predictions), ``tables``, ``plots``, ``html``, ``wandb_upload`` and ``cli``.
"""

from scd.report.cli import main, write_report
from scd.report.collect import Cell, ReportError, Run, collect_runs, group_cells

__all__ = ["Cell", "ReportError", "Run", "collect_runs", "group_cells", "main", "write_report"]
