"""``report.html``: a sweep's (or one run's) results on one self-contained page, written by
``python -m scd.report <dir> --html``.

The page needs nothing but itself: CSS is inline, the figures are PNG data URIs, there is no script and no link to
fetch. It holds the results table, the figures, a sample of test questions with, per cell, the teacher's rationales
for the gold and the perturbed answer beside the student's own rationale and answer (each rationale with the label
its run's task gives it, where the task has a checker), and the config keys whose value differs between cells.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from scd.data.records import RationaleRecord
from scd.io import atomic_write_text
from scd.report.collect import MISSING, Cell, Run, run_tasks
from scd.metrics import Catalog
from scd.report.plots import DPI, FigureBuilder, caption, report_figures
from scd.report.samples import SIDES, CellSamples, cell_samples
from scd.report.tables import TABLE_NOTE, failed_runs, table_header, table_row
from scd.summary import metric_catalog

REPORT_FILE = "report.html"
# CSS pixels per inch: a figure shows at the size it was drawn.
CSS_DPI = 96

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d1d1f; max-width: 1600px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f5; font-weight: 600; }
th .name { display: block; font-weight: 400; color: #555; font-size: 12px; }
table.results td { white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fde8e8; } tr.partial td { background: #fff6dd; }
.note { color: #555; font-size: 13px; }
.warning { background: #fff6dd; padding: 6px 10px; }
figure { display: inline-block; margin: 8px 16px 16px 0; vertical-align: top; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; max-width: 800px; }
.question { margin: 18px 0 4px; font-weight: 600; }
table.samples td { min-width: 180px; max-width: 360px; }
.label { display: inline-block; margin-top: 4px; padding: 0 6px; border-radius: 8px; background: #e4ecf7;
         font-size: 12px; }
.right { color: #08660b; } .wrong { color: #a30d0d; }
code { background: #f3f3f5; padding: 0 3px; }
"""

def _png_width(data: bytes) -> int:
    # The IHDR chunk follows the 8-byte signature and its own 8-byte header: width, then height.
    return struct.unpack(">I", data[16:20])[0]


def _header_cell(name: str, catalog: Catalog) -> str:
    # Long metric names may break after their "/" and "_"; a declared metric's name goes beneath its key.
    key = escape(name).replace("/", "/<wbr>").replace("_", "_<wbr>")
    display = catalog.name(name) if name in catalog else None
    return f"<th>{key}" + (f'<span class="name">{escape(display)}</span>' if display else "") + "</th>"


def results_section(cells: Sequence[Cell], columns: Sequence[str], warnings: Sequence[str], catalog: Catalog) -> str:
    rows = []
    for cell in cells:
        state = cell.status.split()[0]  # completed, failed or partial
        rows.append(f'<tr class="{state}">' + "".join(f"<td>{escape(v)}</td>" for v in table_row(cell, columns))
                    + "</tr>")
    header = "".join(_header_cell(name, catalog) for name in table_header(cells, columns))
    warned = "".join(f'<p class="warning">{escape(line)}</p>' for line in warnings)
    failed = failed_runs(cells)
    failed_list = ("<p>Failed runs:</p><ul>" + "".join(f"<li>{escape(line)}</li>" for line in failed) + "</ul>"
                   if failed else "")
    return (f'<h2>Results</h2>{warned}<div class="scroll"><table class="results"><tr>{header}</tr>{"".join(rows)}'
            f'</table></div><p class="note">{escape(TABLE_NOTE)} Failed cells are red, cells with some failed seeds '
            f"yellow.</p>{failed_list}")


def figures_section(directory: Path, figures: dict[str, FigureBuilder]) -> str:
    parts = ["<h2>Figures</h2>"]
    missing = []
    for name, builder in figures.items():
        path = directory / f"{name}.png"
        if not path.is_file():
            missing.append(name)
            continue
        data = path.read_bytes()
        width = round(_png_width(data) * CSS_DPI / DPI)
        source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        parts.append(f'<figure><img alt="{escape(name)}" width="{width}" src="{source}"><figcaption>'
                     f"{escape(caption(builder))} Also as <code>{escape(name)}.svg</code>.</figcaption></figure>")
    if missing:
        parts.append(f'<p class="note">Not drawn, no cell has their metrics: {escape(", ".join(missing))}.</p>')
    return "".join(parts)


def sample_ids(samples: Sequence[CellSamples], n: int) -> list[str]:
    """``n`` test ids spread evenly over the test split, among those every cell has a gold rationale for."""
    ids = [i for i in samples[0].teacher["gold"] if all(i in s.teacher["gold"] for s in samples)]
    step = max(1, len(ids) // n) if n else 1
    return ids[::step][:n]


def _rationale(samples: CellSamples, record: RationaleRecord | None) -> str:
    if record is None:
        return f"<td>{MISSING}</td>"
    label = samples.label(record)
    badge = f'<br><span class="label">{escape(label)}</span>' if label is not None else ""
    return f"<td>{escape(record.rationale) or '<i>(empty)</i>'}{badge}</td>"


def _answer(prediction: dict[str, Any] | None, record: RationaleRecord) -> str:
    if prediction is None:
        return f"<td>{MISSING}</td>"
    predicted = prediction.get("predicted")
    if predicted is None:
        return '<td class="wrong">unparsable</td>'
    if predicted == record.answer:
        return f'<td class="right">{escape(record.choices[predicted])} (right)</td>'
    return f'<td class="wrong">{escape(record.choices[predicted])} (wrong)</td>'


def samples_section(cells: Sequence[Cell], directory: Path, n: int) -> str:
    samples = cell_samples(cells)
    title = "<h2>Teacher and student side by side</h2>"
    if not samples:
        return title + '<p class="note">No run has test rationales.</p>'
    question_ids = sample_ids(samples, n)
    shown = ", ".join(f"{s.cell.label}: job {s.run.path.relative_to(directory)}" for s in samples)
    parts = [title, f'<p class="note">{len(question_ids)} test questions. Per cell, the teacher\'s rationale for the '
             "gold and for the perturbed answer, and the student's own rationale and answer, each rationale with the "
             f"label its task gives it (if any). Each cell shows one run ({escape(shown)}).</p>"]
    header = ("<tr><th>cell</th><th>teacher, for the gold answer</th><th>teacher, for the perturbed answer</th>"
              "<th>student's rationale</th><th>student's answer</th></tr>")
    for question_id in question_ids:
        record = samples[0].teacher["gold"][question_id]
        parts.append(f'<p class="question">{escape(record.question)}</p><p>choices: '
                     f"{escape(' | '.join(record.choices))} · gold: <b>{escape(record.answer_text)}</b> · "
                     f"perturbed: <b>{escape(record.choices[record.perturbed_answer])}</b> · id "
                     f"<code>{escape(question_id)}</code></p>")
        rows = [header]
        for s in samples:
            teacher = "".join(_rationale(s, s.teacher[side].get(question_id)) for _, side in SIDES)
            student = _rationale(s, s.student_record(question_id)) + _answer(s.predictions.get(question_id), record)
            rows.append(f"<tr><th>{escape(s.cell.label)}</th>{teacher}{student}</tr>")
        parts.append(f'<div class="scroll"><table class="samples">{"".join(rows)}</table></div>')
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


def config_differences(cells: Sequence[Cell]) -> dict[str, list[str]]:
    """The config keys whose value differs between cells (their first readable run each; a seed alone does not
    make a cell), with each cell's value in cell order."""
    flats = [_flat_config(run) for run in (next((r for r in cell.runs if r.config is not None), None)
                                           for cell in cells) if run is not None]  # fmt: skip
    keys = dict.fromkeys(key for flat in flats for key in flat if key != "seed")
    return {key: [flat.get(key, MISSING) for flat in flats] for key in keys
            if len({flat.get(key) for flat in flats}) > 1}


def config_section(cells: Sequence[Cell], directory: Path) -> str:
    jobs = []
    for cell in cells:
        for run in cell.runs:
            state = run.status if run.status == "completed" else f"{run.status}: {run.error}"
            jobs.append(f"<tr><td>{escape(str(run.path.relative_to(directory)))}</td><td>{escape(cell.label)}</td>"
                        f"<td>{escape(str(run.seed))}</td><td>{escape(state)}</td></tr>")
    parts = ['<h2>Jobs</h2><div class="scroll"><table class="jobs"><tr><th>job</th><th>cell</th><th>seed</th>'
             f'<th>status</th></tr>{"".join(jobs)}</table></div><h2>Config differences between cells</h2>']
    readable = [cell for cell in cells if any(run.config is not None for run in cell.runs)]
    if len(readable) < 2:
        return "".join(parts) + '<p class="note">One cell: nothing to compare.</p>'
    differences = config_differences(readable)
    header = "<tr><th>key</th>" + "".join(f"<th>{escape(cell.label)}</th>" for cell in readable) + "</tr>"
    rows = [f"<tr><td><code>{escape(key)}</code></td>" + "".join(f"<td>{escape(v)}</td>" for v in values) + "</tr>"
            for key, values in differences.items()]
    parts.append(f'<p class="note">The {len(differences)} config keys whose value differs between cells (seeds '
                 f'excluded), as each job saved them.</p><div class="scroll"><table class="configs">{header}'
                 f'{"".join(rows)}</table></div>')
    return "".join(parts)


def write_html(directory: Path, runs: Sequence[Run], cells: Sequence[Cell], columns: Sequence[str],
               warnings: Sequence[str] = (), *, samples: int = 6) -> Path:
    """Write ``report.html`` into ``directory`` (after the figures, which it inlines) and return its path."""
    tasks = run_tasks(runs)
    completed = sum(run.status == "completed" for run in runs)
    if len(runs) == 1:
        kind, summary = "run", f"{escape(str(directory))}: one run, {escape(runs[0].status)}."
    else:
        kind = "sweep"
        summary = (f"{escape(str(directory))}: {len(runs)} runs, {completed} completed, {len(runs) - completed} "
                   f"failed, {len(cells)} cells.")
    body = "".join([
        f"<h1>scd {kind} report</h1><p>{summary}</p>",
        results_section(cells, columns, warnings, metric_catalog(tasks)),
        figures_section(directory, report_figures(tasks)),
        samples_section(cells, directory, samples),
        config_section(cells, directory),
    ])
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>scd {kind} report: '
            f"{escape(directory.name)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n")
    path = directory / REPORT_FILE
    atomic_write_text(path, page)
    return path
