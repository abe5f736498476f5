"""The pre-registered analysis (experiments/toyworld/PREREGISTRATION.md): a ToyWorld sweep -> one table per hypothesis.

    python experiments/toyworld/analyze.py <sweep dir> [--out DIR] [--samples 2000]

Every job directory of the sweep (one with ``metrics.json`` and ``.hydra/config.yaml``) is an (arm, seed) pair; an arm
is (teacher, decoding, training, tags, teacher error rate). Per test item the script reads

- from ``predictions/test.jsonl``: the student's answer and rationale, and its answer after the teacher's rationale for
  the perturbed answer (``counterfactual_predicted``);
- from ``predictions/simulator.jsonl`` where present: the LAS simulator's answers from question+rationale, question
  and rationale (``xe``, ``x``, ``e``);
- from ``rationales/test.jsonl``: the teacher's rationale and the question's wording cue;

and judges rationales with the world's checker (the world is rebuilt from the job's ``dataset.world``).

A comparison "A - B" is a paired difference: over the seeds both arms ran and the test items both have, the mean over
seeds of (metric of A - metric of B) on the same items. Its 95% interval is a percentile bootstrap that resamples
seeds and test items with replacement (the same draw for both arms). Verdicts: a claim "A > B" holds when the interval
lies above 0, does not hold when it lies below 0, and is inconclusive otherwise; a claim "A within +-m of B" holds when
the interval lies inside [-m, m], does not hold when it lies wholly outside, and is inconclusive otherwise. A hypothesis
holds when all its claims hold, does not hold when any does not, and is inconclusive otherwise.

Writes ``hypotheses.md`` and ``hypotheses.json`` (into ``--out``, default the sweep directory): the verdicts, a table of
every arm (mean and standard deviation over seeds: accuracy per question kind and cue, consistency, LAS, and the
checker's label shares of the teacher's and the student's test rationales), and, for each hypothesis that does not
hold or is inconclusive, the evidence: the label shares of the arms compared and test items side by side.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from scd.data.example import Example
from scd.toyworld.checker import LABELS, judge
from scd.toyworld.world import World, WorldConfig, generate_world

DECODINGS = ("greedy", "contrast_empty", "contrast_wrong", "gold")
EQUIVALENCE_MARGIN = 0.02  # H2: "accuracy within 2 points"
DEFAULT_ERROR_RATE = 0.2  # the teacher's default (conf/teacher/toyworld.yaml)


class SweepError(ValueError):
    """A sweep directory the analysis cannot read."""


@dataclass(frozen=True, order=True)
class Arm:
    teacher: str
    decoding: str
    training: str
    tags: str
    error_rate: float | None  # the ToyWorld teacher's error rate; None for a teacher that has none (gold)
    student: str = "toyworld"  # icl_teacher: the teacher answers in context (its rationales: ``decoding``)

    def label(self) -> str:
        if self.student == "icl_teacher":
            return "ICL teacher"
        parts = [self.decoding if self.teacher == "toyworld" else f"{self.teacher}/{self.decoding}", self.training]
        if self.tags != "distinct":
            parts.append(f"tags={self.tags}")
        if self.error_rate is not None and self.error_rate != DEFAULT_ERROR_RATE:
            parts.append(f"error={self.error_rate:g}")
        return " ".join(parts)


@dataclass
class Job:
    """One finished job: its arm, seed and per-item columns (aligned with ``ids``; NaN where undefined)."""

    arm: Arm
    seed: int
    ids: list[str]
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    # Per item, for the evidence: question, gold answer, the teacher's and the student's rationale and answer, and
    # the checker's labels of both rationales.
    texts: dict[str, list[str]] = field(default_factory=dict)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _world(config: Any, cache: dict[str, World]) -> World:
    task = config.dataset.get("task") or {}
    values = OmegaConf.to_container(task.world, resolve=False) if task.get("world") else {}
    key = json.dumps(values, sort_keys=True)
    if key not in cache:
        cache[key] = generate_world(WorldConfig(**values))
    return cache[key]


def _arm(config: Any) -> Arm:
    teacher = str(config.teacher.name)
    decoding = str(config.decoding.name)
    trained = config.teacher.get("trained") or {}
    corpus = trained.get("corpus") or {}
    error_rate = None if decoding == "gold" or not trained else float(corpus.get("teacher_error_rate", DEFAULT_ERROR_RATE))
    return Arm(teacher, decoding, str(config.training.mode), str(config.training.tags), error_rate,
               str(config.student.get("name", "toyworld")))


def read_job(job_dir: Path, worlds: dict[str, World]) -> Job:
    """The per-item columns of one job directory."""
    config = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    world = _world(config, worlds)
    rationales = {r["id"]: r for r in _read_jsonl(job_dir / "rationales" / "test.jsonl")}
    predictions = _read_jsonl(job_dir / "predictions" / "test.jsonl")
    simulator_path = job_dir / "predictions" / "simulator.jsonl"
    simulator = {r["id"]: r for r in _read_jsonl(simulator_path)} if simulator_path.exists() else {}
    ids, rows = [], {name: [] for name in ("correct", "cue_opposes", "mc", "consistent", "cf_followed",
                                           "teacher_supports", "student", "sim_xe", "sim_x", "sim_e")}  # fmt: skip
    rows.update({f"teacher_{label}": [] for label in LABELS})
    rows.update({f"student_{label}": [] for label in LABELS})
    texts: dict[str, list[str]] = {name: [] for name in ("question", "gold", "teacher", "teacher_label", "student",
                                                         "student_label", "predicted")}  # fmt: skip
    for p in predictions:
        record = rationales.get(p["id"])
        if record is None:
            raise SweepError(f"{job_dir}: prediction {p['id']!r} has no line in rationales/test.jsonl")
        example = Example(record["id"], record["question"], tuple(record["choices"]), record["answer"], None,
                          record.get("meta") or {})  # fmt: skip
        cue_answer = example.meta.get("cue_answer")
        ids.append(p["id"])
        rows["correct"].append(float(p["predicted"] == record["answer"]))
        rows["cue_opposes"].append(math.nan if cue_answer is None else float(cue_answer != example.answer_text))
        rows["mc"].append(float(example.meta.get("kind") == "mc"))
        own = judge(world, example, p.get("rationale") or "")
        teacher = judge(world, example, record["rationale"])
        for label in LABELS:
            rows[f"teacher_{label}"].append(float(teacher.label == label))
            rows[f"student_{label}"].append(float(own.label == label))
        predicted = "(unparsable)" if p["predicted"] is None else example.choices[p["predicted"]]
        for name, value in (("question", f"{example.question} ({' | '.join(example.choices)})"),
                            ("gold", example.answer_text), ("teacher", record["rationale"]),
                            ("teacher_label", teacher.label), ("student", p.get("rationale") or ""),
                            ("student_label", own.label), ("predicted", predicted)):  # fmt: skip
            texts[name].append(value)
        rows["consistent"].append(float(p["predicted"] is not None and own.entailed == p["predicted"]))
        rows["cf_followed"].append(math.nan if "counterfactual_predicted" not in p
                                   else float(p["counterfactual_predicted"] == p["counterfactual_rationale_for"]))
        rows["teacher_supports"].append(float(teacher.supports(record["answer"])))
        sim = simulator.get(p["id"])
        # LAS needs a parsable student answer and the simulator's three views (-1: none).
        rows["student"].append(-1 if p["predicted"] is None or sim is None else p["predicted"])
        for view in ("xe", "x", "e"):
            rows[f"sim_{view}"].append(-1 if sim is None else sim[view])
    columns = {name: np.asarray(values, dtype=float) for name, values in rows.items()}
    columns["yes_no"] = 1.0 - columns["mc"]
    columns["cue_agrees"] = np.where(np.isnan(columns["cue_opposes"]), np.nan, 1.0 - columns["cue_opposes"])
    return Job(_arm(config), int(config.seed), ids, columns, texts)


def read_sweep(sweep_dir: Path) -> list[Job]:
    """Every finished job under ``sweep_dir`` (a directory with ``metrics.json`` and ``.hydra/config.yaml``)."""
    job_dirs = sorted(p.parent for p in sweep_dir.rglob("metrics.json") if (p.parent / ".hydra" / "config.yaml").exists())
    if not job_dirs:
        raise SweepError(f"{sweep_dir}: no finished job (a directory with metrics.json and .hydra/config.yaml)")
    worlds: dict[str, World] = {}
    jobs = [read_job(d, worlds) for d in job_dirs]
    seen: dict[tuple[Arm, int], Path] = {}
    for job, job_dir in zip(jobs, job_dirs):
        if (job.arm, job.seed) in seen:
            raise SweepError(f"{job_dir}: arm {job.arm.label()!r} seed {job.seed} also ran in {seen[(job.arm, job.seed)]}")
        seen[(job.arm, job.seed)] = job_dir
    return jobs


# A statistic maps a job's columns restricted to item indices to one number.
Statistic = Callable[[dict[str, np.ndarray], np.ndarray], float]


def mean_of(column: str, where: str | None = None) -> Statistic:
    """The mean of ``column`` over the items (those where ``where`` is 1, when given); NaN values are left out."""

    def statistic(columns: dict[str, np.ndarray], items: np.ndarray) -> float:
        values = columns[column][items]
        keep = ~np.isnan(values)
        if where is not None:
            keep &= columns[where][items] == 1
        return float(values[keep].mean()) if keep.any() else math.nan

    return statistic


def las(columns: dict[str, np.ndarray], items: np.ndarray) -> float:
    """Leakage-adjusted simulatability on the items (scd.evaluation.las), over items with a usable answer."""
    student = columns["student"][items]
    keep = student >= 0
    if not keep.any():
        return math.nan
    student, xe, x, e = student[keep], columns["sim_xe"][items][keep], columns["sim_x"][items][keep], columns["sim_e"][items][keep]
    leaked = e == student
    gain = (xe == student).astype(float) - (x == student)
    groups = [gain[group].mean() for group in (leaked, ~leaked) if group.any()]
    return float(np.mean(groups))


METRICS: dict[str, Statistic] = {
    "accuracy": mean_of("correct"),
    "accuracy_yes_no": mean_of("correct", where="yes_no"),
    "accuracy_mc": mean_of("correct", where="mc"),
    "accuracy_cue_agrees": mean_of("correct", where="cue_agrees"),
    "accuracy_cue_opposes": mean_of("correct", where="cue_opposes"),
    "consistency": mean_of("consistent"),
    "counterfactual_consistency": mean_of("cf_followed"),
    "teacher_supports": mean_of("teacher_supports"),
    "las": las,
}


@dataclass(frozen=True)
class Comparison:
    """One claim: ``metric(a) - metric(b)`` is positive (``kind="greater"``) or within ±margin (``"within"``)."""

    a: Arm
    b: Arm
    metric: str
    kind: str = "greater"
    margin: float = EQUIVALENCE_MARGIN


@dataclass
class Result:
    comparison: str
    metric: str
    claim: str
    difference: float
    ci_low: float
    ci_high: float
    seeds: list[int]
    n_items: int
    verdict: str


def paired_difference(a: Sequence[Job], b: Sequence[Job], statistic: Statistic, samples: int,
                      rng: np.random.Generator) -> tuple[float, float, float, list[int], int]:  # fmt: skip
    """Mean over shared seeds of statistic(a) - statistic(b) on the shared items, and its bootstrap 95% interval."""
    by_a, by_b = {j.seed: j for j in a}, {j.seed: j for j in b}
    seeds = sorted(set(by_a) & set(by_b))
    if not seeds:
        return math.nan, math.nan, math.nan, [], 0
    shared = sorted(set.intersection(*(set(j.ids) for s in seeds for j in (by_a[s], by_b[s]))))

    def rows(job: Job) -> np.ndarray:
        position = {item: k for k, item in enumerate(job.ids)}
        return np.array([position[item] for item in shared], dtype=int)

    pairs = [(by_a[s].columns, rows(by_a[s]), by_b[s].columns, rows(by_b[s])) for s in seeds]

    def difference(seed_draw: Sequence[int], item_draw: np.ndarray) -> float:
        values = [statistic(ca, ra[item_draw]) - statistic(cb, rb[item_draw])
                  for ca, ra, cb, rb in (pairs[k] for k in seed_draw)]  # fmt: skip
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    estimate = difference(range(len(seeds)), np.arange(len(shared)))
    replicates = [difference(rng.integers(0, len(seeds), len(seeds)), rng.integers(0, len(shared), len(shared)))
                  for _ in range(samples)]  # fmt: skip
    replicates = [r for r in replicates if not math.isnan(r)]
    if not replicates:
        return estimate, math.nan, math.nan, seeds, len(shared)
    low, high = np.percentile(replicates, [2.5, 97.5])
    return estimate, float(low), float(high), seeds, len(shared)


def verdict(kind: str, low: float, high: float, margin: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if kind == "greater":
        return "holds" if low > 0 else "does not hold" if high < 0 else "inconclusive"
    if kind == "within":
        if -margin <= low and high <= margin:
            return "holds"
        return "does not hold" if high < -margin or low > margin else "inconclusive"
    raise ValueError(f"unknown claim kind {kind!r}")


def overall(verdicts: Sequence[str]) -> str:
    if not verdicts:
        return "not run"
    if "does not hold" in verdicts:
        return "does not hold"
    return "holds" if all(v == "holds" for v in verdicts) else "inconclusive"


def arm_of(teacher: str = "toyworld", decoding: str = "contrast_wrong", training: str = "standard", tags: str = "distinct",
         error_rate: float | None = DEFAULT_ERROR_RATE) -> Arm:  # fmt: skip
    return Arm(teacher, decoding, training, tags, None if decoding == "gold" else error_rate)


def hypotheses() -> dict[str, tuple[str, list[Comparison]]]:
    """The pre-registered claims (PREREGISTRATION.md), each a list of comparisons."""
    std = {d: arm_of(decoding=d) for d in DECODINGS}
    cf = {d: arm_of(decoding=d, training="counterfactual") for d in DECODINGS}
    error_free = {t: arm_of(decoding="contrast_wrong", training=t, error_rate=0.0) for t in ("standard", "counterfactual")}
    h1 = [Comparison(std["contrast_wrong"], std["contrast_empty"], "teacher_supports"),
          Comparison(std["contrast_empty"], std["greedy"], "teacher_supports")]  # fmt: skip
    h2 = [c for d in DECODINGS for c in (Comparison(cf[d], std[d], "las"),
                                         Comparison(cf[d], std[d], "accuracy", kind="within"))]  # fmt: skip
    h3 = [Comparison(cf[d], std[d], m) for d in DECODINGS for m in ("consistency", "counterfactual_consistency")]
    h3 += [Comparison(error_free["counterfactual"], error_free["standard"], m)
           for m in ("consistency", "counterfactual_consistency")]  # fmt: skip
    h4 = [Comparison(cf[d], std[d], "accuracy_cue_opposes") for d in DECODINGS]
    h4 += [Comparison(error_free["counterfactual"], error_free["standard"], "accuracy_cue_opposes")]
    tagged = {t: arm_of(decoding="contrast_wrong", training="counterfactual", tags=t) for t in ("shared", "none")}
    h5 = [Comparison(tagged[t], cf["contrast_wrong"], m) for t in ("shared", "none")
          for m in ("consistency", "counterfactual_consistency", "accuracy_cue_opposes")]  # fmt: skip
    return {
        "H1": ("teacher supports-answer: contrast_wrong > contrast_empty > greedy", h1),
        "H2": ("counterfactual training raises LAS, accuracy within 2 points", h2),
        "H3": ("counterfactual training raises rationale-answer and counterfactual consistency", h3),
        "H4": ("counterfactual training raises accuracy where the cue opposes (less shortcut reliance)", h4),
        "H5": ("one shared tag or no tag raises H3's and H4's metrics over distinct tags (contrast_wrong)", h5),
    }


def analyze(jobs: Sequence[Job], samples: int = 2000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every hypothesis's comparisons (``Result``s) and its overall verdict; arms not in the sweep are skipped."""
    by_arm: dict[Arm, list[Job]] = {}
    for job in jobs:
        by_arm.setdefault(job.arm, []).append(job)
    rng = np.random.default_rng(seed)
    report = {}
    for name, (statement, comparisons) in hypotheses().items():
        results = []
        for c in comparisons:
            if c.a not in by_arm or c.b not in by_arm:
                continue
            estimate, low, high, seeds, n_items = paired_difference(by_arm[c.a], by_arm[c.b], METRICS[c.metric],
                                                                    samples, rng)  # fmt: skip
            claim = "> 0" if c.kind == "greater" else f"within ±{c.margin:g}"
            results.append(Result(f"{c.a.label()} - {c.b.label()}", c.metric, claim, estimate, low, high, seeds,
                                  n_items, verdict(c.kind, low, high, c.margin)))  # fmt: skip
        report[name] = {"statement": statement, "verdict": overall([r.verdict for r in results]),
                        "results": [asdict(r) for r in results]}  # fmt: skip
    return report


ARM_METRICS = ("accuracy", "accuracy_yes_no", "accuracy_mc", "accuracy_cue_agrees", "accuracy_cue_opposes",
               "consistency", "counterfactual_consistency", "las", "teacher_supports")  # fmt: skip
SHOWN_LABELS = ("supporting", "restatement", "partial", "irrelevant", "generic", "contradicting", "malformed")


def _by_arm(jobs: Sequence[Job]) -> dict[Arm, list[Job]]:
    by_arm: dict[Arm, list[Job]] = {}
    for job in jobs:
        by_arm.setdefault(job.arm, []).append(job)
    return dict(sorted(by_arm.items()))


def arm_table(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Per arm: each metric's mean and standard deviation over seeds, and the label shares (means over seeds)."""
    table = []
    for arm, arm_jobs in _by_arm(jobs).items():
        row: dict[str, Any] = {"arm": arm.label(), "seeds": sorted(j.seed for j in arm_jobs)}
        for name in ARM_METRICS:
            values = [METRICS[name](j.columns, np.arange(len(j.ids))) for j in arm_jobs]
            values = [v for v in values if not math.isnan(v)]
            row[name] = (float(np.mean(values)), float(np.std(values))) if values else (math.nan, math.nan)
        for who in ("teacher", "student"):
            row[f"{who}_labels"] = {label: float(np.mean([j.columns[f"{who}_{label}"].mean() for j in arm_jobs]))
                                    for label in SHOWN_LABELS}  # fmt: skip
        table.append(row)
    return table


def _shares(labels: dict[str, float]) -> str:
    return ", ".join(f"{label} {share:.2f}" for label, share in labels.items() if share > 0)


def arm_markdown(table: Sequence[dict[str, Any]]) -> str:
    lines = ["### Every arm (mean ± standard deviation over seeds; test questions)", "",
             "| arm | seeds | " + " | ".join(ARM_METRICS) + " |", "| --- | --- |" + " --- |" * len(ARM_METRICS)]  # fmt: skip
    for row in table:
        cells = [f"{row[m][0]:.3f} ± {row[m][1]:.3f}" if not math.isnan(row[m][0]) else "n/a" for m in ARM_METRICS]
        lines.append(f"| {row['arm']} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    lines += ["", "Checker labels of the test rationales (shares; the teacher's are the same for every seed):", "",
              "| arm | teacher's rationales | student's own rationales |", "| --- | --- | --- |"]  # fmt: skip
    lines += [f"| {row['arm']} | {_shares(row['teacher_labels'])} | {_shares(row['student_labels'])} |" for row in table]
    return "\n".join(lines + [""])


def evidence(jobs: Sequence[Job], report: dict[str, dict[str, Any]], examples: int = 3) -> str:
    """For each hypothesis that does not hold or is inconclusive, its first such comparison: the label shares of the
    two arms, and test items (seed of the first shared run) where the two arms' students differ, side by side."""
    by_label = {arm.label(): arm_jobs for arm, arm_jobs in _by_arm(jobs).items()}
    lines = ["### Evidence where a hypothesis does not hold or is inconclusive", ""]
    for name, entry in report.items():
        failing = [r for r in entry["results"] if r["verdict"] != "holds"]
        if not failing:
            continue
        first = failing[0]
        a_label, b_label = first["comparison"].split(" - ")
        a_jobs, b_jobs = by_label[a_label], by_label[b_label]
        lines += [f"**{name}** ({entry['verdict']}), {first['comparison']}, {first['metric']} "
                  f"{first['difference']:+.3f} [{first['ci_low']:+.3f}, {first['ci_high']:+.3f}]:", ""]  # fmt: skip
        for label, arm_jobs in ((a_label, a_jobs), (b_label, b_jobs)):
            teacher = {lab: float(np.mean([j.columns[f"teacher_{lab}"].mean() for j in arm_jobs])) for lab in SHOWN_LABELS}
            student = {lab: float(np.mean([j.columns[f"student_{lab}"].mean() for j in arm_jobs])) for lab in SHOWN_LABELS}
            lines.append(f"- {label}: teacher {_shares(teacher)}; student {_shares(student)}")
        a, b = a_jobs[0], next((j for j in b_jobs if j.seed == a_jobs[0].seed), b_jobs[0])
        b_position = {item: k for k, item in enumerate(b.ids)}
        differing = [(k, b_position[item]) for k, item in enumerate(a.ids)
                     if item in b_position and a.texts["predicted"][k] != b.texts["predicted"][b_position[item]]]
        lines += ["", f"| question | gold | {a_label}: teacher | {a_label}: student | {b_label}: teacher | "
                  f"{b_label}: student |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for ka, kb in (differing or [(0, b_position.get(a.ids[0], 0))])[:examples]:
            def cell(job: Job, k: int, who: str) -> str:
                answer = f" → **{job.texts['predicted'][k]}**" if who == "student" else ""
                return f"{job.texts[who][k]} _({job.texts[who + '_label'][k]})_{answer}"

            cells = [a.texts["question"][ka], a.texts["gold"][ka], cell(a, ka, "teacher"), cell(a, ka, "student"),
                     cell(b, kb, "teacher"), cell(b, kb, "student")]
            # A "|" inside a cell (the choices) would end it.
            lines.append("| " + " | ".join(text.replace("|", "\\|") for text in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def markdown(report: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, entry in report.items():
        lines += [f"### {name}: {entry['statement']} — **{entry['verdict']}**", "",
                  "| comparison | metric | claim | difference | 95% interval | seeds | items | verdict |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in entry["results"]:
            lines.append(f"| {r['comparison']} | {r['metric']} | {r['claim']} | {r['difference']:+.3f} | "
                         f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | {len(r['seeds'])} | {r['n_items']} | "
                         f"{r['verdict']} |")  # fmt: skip
        if not entry["results"]:
            lines.append("| (no arm of this hypothesis in the sweep) | | | | | | | |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="where hypotheses.md/json go (default: the sweep dir)")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    try:
        jobs = read_sweep(args.sweep_dir)
        report = analyze(jobs, samples=args.samples)
    except (SweepError, OSError, KeyError) as err:
        print(f"analyze: {err}")
        return 1
    out = args.out or args.sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    table = arm_table(jobs)
    (out / "hypotheses.json").write_text(json.dumps({"hypotheses": report, "arms": table}, indent=2) + "\n")
    text = "\n".join([markdown(report), arm_markdown(table), evidence(jobs, report)])
    (out / "hypotheses.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
