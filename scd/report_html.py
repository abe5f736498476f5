"""``report.html``: a sweep's results on one self-contained page, written by ``python -m scd.report <sweep> --html``.

The page needs nothing but itself: CSS is inline, the plots are PNG data URIs, there is no script and no link to
fetch. It holds the results table, the plots, a sample of test questions with the rationales of every decoding side
by side (for the gold and the perturbed answer, with the label the run's task gives each rationale, on ToyWorld the
checker's), and what each run's config changes against the others.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from scd.report import (
    MISSING,
    PLOTS,
    SIDES,
    TABLE_NOTE,
    Cell,
    RationaleSet,
    Run,
    failed_runs,
    rationale_sets,
    table_header,
    table_row,
)

REPORT_FILE = "report.html"

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d1d1f; max-width: 1600px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f5; font-weight: 600; }
table.results td { white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fde8e8; } tr.partial td { background: #fff6dd; }
.note { color: #555; font-size: 13px; }
img { max-width: 100%; border: 1px solid #eee; margin: 8px 16px 8px 0; }
.question { margin: 18px 0 4px; font-weight: 600; }
table.rationales td { min-width: 220px; max-width: 420px; }
.label { display: inline-block; margin-top: 4px; padding: 0 6px; border-radius: 8px; background: #e4ecf7;
         font-size: 12px; }
code { background: #f3f3f5; padding: 0 3px; }
"""


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _header_cell(name: str) -> str:
    # Long metric names may break after their "/" and "_".
    return "<th>" + escape(name).replace("/", "/<wbr>").replace("_", "_<wbr>") + "</th>"


def results_section(cells: Sequence[Cell], columns: Sequence[str]) -> str:
    rows = []
    for cell in cells:
        state = cell.status.split()[0]  # completed, failed or partial
        rows.append(f'<tr class="{state}">' + "".join(f"<td>{escape(v)}</td>" for v in table_row(cell, columns))
                    + "</tr>")
    header = "".join(_header_cell(name) for name in table_header(cells, columns))
    failed = failed_runs(cells)
    failed_list = ("<p>Failed runs:</p><ul>" + "".join(f"<li>{escape(line)}</li>" for line in failed) + "</ul>"
                   if failed else "")
    return (f'<h2>Results</h2><div class="scroll"><table class="results"><tr>{header}</tr>{"".join(rows)}</table>'
            f'</div><p class="note">{escape(TABLE_NOTE)} Failed cells are red, cells with some failed seeds yellow.'
            f"</p>{failed_list}")


def plots_section(sweep_dir: Path) -> str:
    images = [f'<img alt="{escape(name)}" src="{_data_uri(sweep_dir / name)}">'
              for name in PLOTS if (sweep_dir / name).is_file()]
    missing = [name for name in PLOTS if not (sweep_dir / name).is_file()]
    note = f'<p class="note">Not plotted, no run has its metrics: {escape(", ".join(missing))}.</p>' if missing else ""
    return "<h2>Plots</h2>" + "".join(images) + note


def sample_ids(sets: Sequence[RationaleSet], n: int) -> list[str]:
    """``n`` test ids spread evenly over the test split, among those every set has a gold rationale for."""
    ids = [i for i in sets[0].records["gold"] if all(i in s.records["gold"] for s in sets)]
    step = max(1, len(ids) // n) if n else 1
    return ids[::step][:n]


def _rationale_cell(rationale_set: RationaleSet, side: str, question_id: str) -> str:
    record = rationale_set.records[side].get(question_id)
    if record is None:
        return f"<td>{MISSING}</td>"
    label = rationale_set.labeller(record) if rationale_set.labeller is not None else None
    badge = f'<br><span class="label">{escape(label)}</span>' if label is not None else ""
    return f"<td>{escape(record.rationale) or '<i>(empty)</i>'}{badge}</td>"


def rationales_section(runs: Sequence[Run], samples: int) -> str:
    sets = rationale_sets(runs)
    title = "<h2>Rationales side by side</h2>"
    if not sets:
        return title + '<p class="note">No run has test rationales.</p>'
    question_ids = sample_ids(sets, samples)
    parts = [title, f'<p class="note">{len(question_ids)} test questions; for each decoding the rationale written for '
             "the gold answer and the one written for the perturbed answer, with the label the task gives it (if "
             "any).</p>"]
    header = "<tr><th></th>" + "".join(f"<th>{escape(s.name)}</th>" for s in sets) + "</tr>"
    for question_id in question_ids:
        record = sets[0].records["gold"][question_id]
        answers = {"gold": record.answer_text, "perturbed": record.choices[record.perturbed_answer]}
        parts.append(f'<p class="question">{escape(record.question)}</p><p>choices: '
                     f"{escape(' | '.join(record.choices))} · gold: <b>{escape(answers['gold'])}</b> · "
                     f"perturbed: <b>{escape(answers['perturbed'])}</b> · id <code>{escape(question_id)}</code></p>")
        rows = [header]
        for _, side in SIDES:
            cells = "".join(_rationale_cell(s, side, question_id) for s in sets)
            rows.append(f"<tr><th>for the {side} answer ({escape(answers[side])})</th>{cells}</tr>")
        parts.append(f'<div class="scroll"><table class="rationales">{"".join(rows)}</table></div>')
    return "".join(parts)


def _flat_config(run: Run) -> dict[str, str]:
    """The run's config leaves as dotted key -> JSON text (interpolations unresolved, as Hydra saved them)."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix.rstrip(".")] = json.dumps(node)

    walk(OmegaConf.to_container(run.config, resolve=False), "")
    return flat


def config_differences(runs: Sequence[Run]) -> dict[Path, dict[str, str]]:
    """Per readable run: the config keys whose value is not the same in every readable run, with its value."""
    flats = {run.path: _flat_config(run) for run in runs if run.config is not None}
    keys = dict.fromkeys(key for flat in flats.values() for key in flat)
    differing = [key for key in keys if len({flat.get(key) for flat in flats.values()}) > 1]
    return {path: {key: flat.get(key, MISSING) for key in differing} for path, flat in flats.items()}


def config_section(runs: Sequence[Run], sweep_dir: Path) -> str:
    differences = config_differences(runs)
    rows = []
    for run in runs:
        overrides = " ".join(f"{k}={v}" for k, v in run.overrides.items()) or MISSING
        if run.config is None:
            changed = escape(run.error)
        else:
            changed = "<br>".join(f"<code>{escape(k)}</code> = {escape(v)}" for k, v in differences[run.path].items())
        rows.append(f"<tr><td>{escape(str(run.path.relative_to(sweep_dir)))}</td><td>{escape(run.status)}</td>"
                    f"<td><code>{escape(overrides)}</code></td><td>{changed or MISSING}</td></tr>")
    return ('<h2>Config differences</h2><p class="note">Each run\'s overrides, and the config keys whose value is not '
            'the same in every run.</p><div class="scroll"><table class="configs"><tr><th>job</th><th>status</th>'
            f'<th>overrides</th><th>differs in</th></tr>{"".join(rows)}</table></div>')


def write_html(sweep_dir: Path, runs: Sequence[Run], cells: Sequence[Cell], columns: Sequence[str], *,
               samples: int = 6) -> Path:
    """Write ``report.html`` into ``sweep_dir`` (after the plots, which it inlines) and return its path."""
    completed = sum(run.status == "completed" for run in runs)
    summary = (f"{escape(str(sweep_dir))}: {len(runs)} runs, {completed} completed, {len(runs) - completed} failed, "
               f"{len(cells)} cells.")
    body = "".join([
        f"<h1>scd sweep report</h1><p>{summary}</p>",
        results_section(cells, columns),
        plots_section(sweep_dir),
        rationales_section(runs, samples),
        config_section(runs, sweep_dir),
    ])
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>scd report: '
            f"{escape(sweep_dir.name)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n")
    path = sweep_dir / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path
