"""report.html: one self-contained page with the table, the plots, rationales side by side and config differences;
loaded in headless Chromium where one is installed."""

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
from scd.report import collect_runs, main, rationale_sets, write_report
from scd.task import DatasetTask
from scd.toyworld import grammar
from scd.toyworld.task import ToyWorldTask
from tests.test_report import make_run, metrics

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
    return sweep


def test_page_is_self_contained_with_table_plots_rationales_and_config_differences(sweep):
    write_report(sweep, html=True)
    page = (sweep / "report.html").read_text()
    assert "<script" not in page and "<link" not in page and "http://" not in page and "https://" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(base64.b64decode(s.split(",", 1)[1]).startswith(b"\x89PNG") for s in sources)
    # The table: one row per cell, the failed seed counted and listed.
    assert '<tr class="completed"><td>greedy</td><td>standard</td><td>2</td><td>0.720 ± 0.028</td>' in page
    assert '<tr class="partial"><td>contrast_wrong</td><td>standard</td><td>1 (+1 failed)</td><td>0.800</td>' in page
    assert "job `3` (contrast_wrong/standard, seed 1): RuntimeError: out of memory" in page
    # Rationales: both decodings side by side (the two greedy runs share one set), gold and perturbed rows, escaped
    # text, labels only from the decoding whose task gives them.
    assert page.count('<table class="rationales">') == 6
    assert "<th>greedy</th><th>contrast_wrong</th>" in page
    assert "Is thing 0 &lt;cold&gt;?" in page and "<cold>" not in page
    assert ("<tr><th>for the perturbed answer (no)</th><td>greedy says no for 0</td><td>contrast_wrong says no for 0"
            '<br><span class="label">5 words</span></td></tr>') in page
    assert page.count('<span class="label">') == 6 * 2
    # Config differences: what tells the runs apart, per job.
    assert "<code>seed</code> = 1<br><code>decoding.name</code> = &quot;contrast_wrong&quot;<br>" in page
    assert "<code>decoding=greedy training=standard seed=0</code>" in page


def test_a_job_with_a_broken_config_shows_its_error_in_the_page(sweep):
    (sweep / "0" / ".hydra" / "config.yaml").write_text("decoding: [greedy\n")
    write_report(sweep, html=True)
    page = (sweep / "report.html").read_text()
    assert f"{sweep}/0/.hydra/config.yaml: cannot parse" in page
    assert "<th>greedy</th><th>contrast_wrong</th>" in page  # job 1 still brings greedy's rationales


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
    """The report builds the task from a run's config as Hydra saves it (interpolations unresolved)."""
    run_dir = make_run(tmp_path, 0, "greedy", "standard", 0)
    cfg = make_config("dataset=toyworld")
    cfg.paths.output_dir = "${hydra:runtime.output_dir}"
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    add_rationales(run_dir, "greedy", task=None)
    [rationales] = rationale_sets(collect_runs(tmp_path))
    record = rationales.records["gold"]["q0"]
    record.meta = {"kind": "yes_no", "entity": "e", "property": "p"}
    assert rationales.labeller(record) == "malformed"  # "greedy says yes for 0" is outside ToyWorld's grammar


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
    assert counts == {"tables": "3", "images": "2"}  # header and two cells; both plots decoded
    assert console == []
    # The checks can fail: a broken image and a script error are seen.
    broken = tmp_path / "broken.html"
    page = (sweep / "report.html").read_text()
    broken.write_text(page.replace("base64,iVBOR", "base64,AAAA", 1).replace("</body>",
                      "<script>console.error('broken page')</script></body>"))
    counts, console = render(broken)
    assert counts["images"] == "1" and len(console) == 1 and "broken page" in console[0]
