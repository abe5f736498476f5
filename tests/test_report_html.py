"""report.html: one self-contained page with the table, the figures, teacher and student side by side and the
config differences between cells; loaded in headless Chromium where one is installed."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from scd.config import validate
from scd.data.records import RationaleRecord
from scd.report import collect_runs, group_cells, main, write_report
from scd.report.samples import cell_samples
from scd.task import DatasetTask
from scd.toyworld import grammar
from scd.toyworld.task import ToyWorldTask
from tests.helpers import make_run, metrics

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")


class WordCountTask(DatasetTask):
    """A task that labels each rationale with its length."""

    def label_rationale(self, record: RationaleRecord) -> str:
        return f"{len(record.rationale.split())} words"


def rationale(question_id: int, decoding: str, rationale_for: int) -> dict:
    return {"id": f"q{question_id}", "question": f"Is thing {question_id} <cold>?", "choices": ["yes", "no"],
            "answer": 0, "perturbed_answer": 1, "rationale_for": rationale_for,
            "rationale": f"{decoding} says {'yes' if rationale_for == 0 else 'no'} for {question_id}",
            "decoding": decoding}


def add_rationales(run_dir: Path, decoding: str, task: str | None) -> None:
    """Test rationales for 10 questions, both sides; ``task`` (a class path) goes into the run's config."""
    (run_dir / "rationales").mkdir()
    for name, side in (("test", 0), ("test_counterfactual", 1)):
        rows = [rationale(i, decoding, side) for i in range(10)]
        (run_dir / "rationales" / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    if task is not None:
        with (run_dir / ".hydra" / "config.yaml").open("a") as config:
            config.write(f"dataset:\n  task:\n    _target_: {task}\n")


def add_predictions(run_dir: Path, decoding: str) -> None:
    """The student's test predictions: question 0 unparsable, 1 wrong ("no"), the others right ("yes")."""
    rows = [{"id": f"q{i}", "output": "...", "rationale": f"student of {decoding} thinks about {i}",
             "predicted": None if i == 0 else int(i == 1), "answer": 0, "correct": i > 1} for i in range(10)]
    (run_dir / "predictions").mkdir()
    (run_dir / "predictions" / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """greedy and contrast_wrong, standard training, two seeds each; one contrast_wrong seed failed."""
    sweep = tmp_path / "sweep"
    jobs = [("greedy", 0, 0.70), ("greedy", 1, 0.74), ("contrast_wrong", 0, 0.80), ("contrast_wrong", 1, None)]
    for job, (decoding, seed, accuracy) in enumerate(jobs):
        values = metrics(accuracy, 0.1, 0.05, 0.15, 0.5, 20.0) if accuracy is not None else None
        status = None if accuracy is not None else {"status": "failed", "error": "RuntimeError: out of memory"}
        run_dir = make_run(sweep, job, decoding, "standard", seed, values, status)
        add_rationales(run_dir, decoding, "tests.test_report_html.WordCountTask" if decoding == "contrast_wrong"
                       else "scd.task.DatasetTask")
        if accuracy is not None:
            add_predictions(run_dir, decoding)
    return sweep


def test_page_is_self_contained_with_table_figures_samples_and_config_differences(sweep):
    write_report(sweep, html=True)
    page = (sweep / "report.html").read_text()
    assert "<script" not in page and "<link" not in page and "http://" not in page and "https://" not in page
    assert "<h1>scd sweep report</h1>" in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(base64.b64decode(s.split(",", 1)[1]).startswith(b"\x89PNG") for s in sources)
    # A figure of a task these runs do not use is not drawn, nor listed as missing.
    assert "cue_agrees_vs_opposes" not in page and "Not drawn" not in page
    # The table: one row per cell, the failed seed counted and listed; a metric's display name under its key.
    assert '<tr class="completed"><td>greedy</td><td>standard</td><td>2</td><td>0.720 ± 0.028</td>' in page
    assert '<tr class="partial"><td>contrast_wrong</td><td>standard</td><td>1 (+1 failed)</td><td>0.800</td>' in page
    assert "job `3` (contrast_wrong / standard, seed 1): RuntimeError: out of memory" in page
    assert "teacher/<wbr>supports_<wbr>answer" not in page  # this sweep's runs have no judge score
    # Side by side: a row per cell, the teacher's rationale for each answer, then the student's own rationale and
    # answer; escaped text; labels only from the cell whose task gives them, for the teacher's and the student's.
    assert page.count('<table class="samples">') == 6
    assert ("<tr><th>contrast_wrong / standard</th><td>contrast_wrong says yes for 1<br><span class=\"label\">5 words"
            "</span></td><td>contrast_wrong says no for 1<br><span class=\"label\">5 words</span></td><td>student of "
            'contrast_wrong thinks about 1<br><span class="label">6 words</span></td><td class="wrong">no (wrong)'
            "</td></tr>") in page
    assert ('<tr><th>greedy / standard</th><td>greedy says yes for 0</td><td>greedy says no for 0</td><td>student of '
            'greedy thinks about 0</td><td class="wrong">unparsable</td></tr>') in page
    assert '<td class="right">yes (right)</td>' in page
    assert "Is thing 0 &lt;cold&gt;?" in page and "<cold>" not in page
    assert page.count('<span class="label">') == 6 * 3
    # Config differences: only what differs between the cells, one column per cell (the seed is not a difference).
    configs = page[page.index('<table class="configs">'):]
    assert configs.startswith('<table class="configs"><tr><th>key</th><th>greedy / standard</th><th>contrast_wrong '
                              "/ standard</th></tr><tr><td><code>decoding.name</code></td><td>&quot;greedy&quot;</td>"
                              "<td>&quot;contrast_wrong&quot;</td></tr><tr><td><code>dataset.task._target_</code>")
    assert "<code>seed</code>" not in page


def test_a_one_run_report_is_titled_as_a_run(tmp_path):
    run_dir = make_run(tmp_path, 0, "greedy", "standard", 0, metrics(0.7, 0.1, 0.0, 0.2, 0.5, 20.0))
    write_report(run_dir, html=True)
    page = (run_dir / "report.html").read_text()
    assert "<h1>scd run report</h1>" in page and "<title>scd run report: 0</title>" in page
    assert f"<p>{run_dir}: one run, completed.</p>" in page
    assert "One cell: nothing to compare." in page and "sweep" not in page


def test_a_job_with_a_broken_config_shows_its_error_in_the_page(sweep):
    (sweep / "0" / ".hydra" / "config.yaml").write_text("decoding: [greedy\n")
    write_report(sweep, html=True)
    page = (sweep / "report.html").read_text()
    assert f"{sweep}/0/.hydra/config.yaml: cannot parse" in page
    assert "<tr><th>greedy / standard</th><td>greedy says yes for 0</td>" in page  # job 1 still brings greedy's


def test_cli_writes_the_page(sweep, capsys):
    main([str(sweep), "--html"])
    assert capsys.readouterr().out.strip().endswith(f"scd.report: wrote {sweep / 'report.html'}")


def test_toyworld_task_labels_a_rationale_with_the_checker_verdict(make_config):
    world = {"n_categories": 4, "entities_per_category": 4, "n_properties": 8, "n_train": 20, "n_dev": 4,
             "n_test": 8, "mc_fraction": 0.0}
    task = ToyWorldTask(validate(make_config("dataset=toyworld")), world=world)
    ex = task.splits()["test"][0]
    e, c, p = ex.meta["entity"], ex.meta["category"], ex.meta["property"]
    gold_yes = ex.choices[ex.answer] == grammar.YES

    def record(text: str) -> RationaleRecord:
        return RationaleRecord(ex.id, ex.question, list(ex.choices), ex.answer, 1 - ex.answer, ex.answer, text,
                               "greedy", dict(ex.meta))

    assert task.label_rationale(record(grammar.chain(e, c, p, gold_yes, "rule_first"))) == "supporting"
    assert task.label_rationale(record(grammar.chain(e, c, p, not gold_yes, "rule_first"))) == "contradicting"
    assert task.label_rationale(record("this is")) == "malformed"
    assert DatasetTask(validate(make_config())).label_rationale(record("this is")) is None


def test_a_toyworld_run_config_gives_the_report_its_labels(make_config, tmp_path):
    """The report builds the task from a run's config as Hydra saves it (interpolations unresolved), and labels the
    student's rationale with it too."""
    run_dir = make_run(tmp_path, 0, "greedy", "standard", 0)
    cfg = make_config("dataset=toyworld")
    cfg.paths.output_dir = "${hydra:runtime.output_dir}"
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    add_rationales(run_dir, "greedy", task=None)
    add_predictions(run_dir, "greedy")
    [samples] = cell_samples(group_cells(collect_runs(tmp_path)))
    record = samples.teacher["gold"]["q0"]
    record.meta = {"kind": "yes_no", "entity": "e", "property": "p"}
    assert samples.label(record) == "malformed"  # "greedy says yes for 0" is outside ToyWorld's grammar
    student = samples.student_record("q0")
    assert student.rationale == "student of greedy thinks about 0" and student.id == "q0"
    assert samples.label(student) == "malformed"


def chromium(page: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", *flags, page.as_uri()], capture_output=True, text=True, timeout=300)


# Appended to a copy of the page: once loaded, count the rendered tables and the images that decoded.
PROBE = ("<script>addEventListener('load', () => { document.body.dataset.tables = document.querySelectorAll("
         "'table.results tr').length; document.body.dataset.images = [...document.images]"
         ".filter(image => image.naturalWidth > 0).length; });</script>")


def render(page: Path) -> tuple[dict[str, str], list[str]]:
    """The probe's counts and the console messages of ``page`` loaded in headless Chromium."""
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = chromium(probed, "--dump-dom")
    counts = dict(re.findall(r'data-(tables|images)="(\d+)"', result.stdout))
    return counts, [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


@needs_chromium
def test_chromium_renders_the_table_and_images_without_console_messages(sweep, tmp_path):
    write_report(sweep, html=True)
    counts, console = render(sweep / "report.html")
    assert counts == {"tables": "3", "images": "3"}  # header and two cells; the three figures decoded
    assert console == []
    # The checks can fail: a broken image and a script error are seen.
    broken = tmp_path / "broken.html"
    page = (sweep / "report.html").read_text()
    broken.write_text(page.replace("base64,iVBOR", "base64,AAAA", 1).replace("</body>",
                      "<script>console.error('broken page')</script></body>"))
    counts, console = render(broken)
    assert counts["images"] == "2" and len(console) == 1 and "broken page" in console[0]
