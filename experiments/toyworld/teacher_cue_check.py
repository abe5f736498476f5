"""Does the wording cue reach the teacher's rationales for the gold answer? (issue 27, item 4; exploratory)

The ICL teacher (answering by itself, answer first) follows the yes/no wording cue on some cue-opposed questions. The
students never see those answers: they learn from the rationales the teacher writes *for the gold answer*. This
script measures whether those rationales depend on the cue, on yes/no questions, by the checker:

- ``rationales <run dir>...``: the training rationales a student learned from (``rationales/train.jsonl`` of each
  run), labelled by the checker, split by whether the question's cue agrees with its gold answer;
- ``items <per-item file>...``: the same split on the test rationales of committed per-item files
  (``rationales/items.jsonl.gz``), pooled over the files given.

Each line: the share of supporting and contradicting rationales where the cue agrees and where it opposes, their
difference, and a 95% percentile interval from 2,000 bootstrap resamples of rules (the cluster of a question).

    python experiments/toyworld/teacher_cue_check.py rationales multirun/v4S/main/{0,2,4}
    python experiments/toyworld/teacher_cue_check.py items experiments/results/toyworld_v4T/jobs/main/*/rationales/items.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from scd.data.records import read_split
from scd.toyworld.checker import judge
from scd.toyworld.world import WorldConfig, load_toyworld

LABELS = ("supporting", "contradicting")


def training_rows(run_dir: Path) -> list[dict]:
    """The checker's label of each yes/no training rationale of a run, with its cue and rule."""
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    world, _ = load_toyworld(WorldConfig(**config["dataset"]["task"]["world"]))
    rows = []
    for record in read_split(run_dir / "rationales", "train"):
        meta = record.meta
        if meta["kind"] != "yesno":
            continue
        rows.append({"label": judge(world, record.to_example(), record.rationale).label,
                     "cue_opposes": int(not meta["cue_aligned"]), "cluster": f"{meta['category']}/{meta['property']}"})
    return rows


def item_rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    return [{"label": r["teacher_label"], "cue_opposes": r["cue_opposes"], "cluster": r["cluster"]}
            for r in rows if not r["mc"]]  # fmt: skip


def cue_split(rows: Sequence[dict], label: str, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Share of ``label`` where the cue agrees and opposes, the difference, and its rule-cluster bootstrap interval."""
    clusters = sorted({r["cluster"] for r in rows})
    index = {c: k for k, c in enumerate(clusters)}
    sums = np.zeros((len(clusters), 2, 2))  # cluster × cue opposes × (count of label, count)
    for r in rows:
        sums[index[r["cluster"]], r["cue_opposes"]] += (r["label"] == label, 1)
    weights = np.random.default_rng(seed).multinomial(len(clusters), np.full(len(clusters), 1 / len(clusters)),
                                                      size=resamples)  # fmt: skip
    totals = np.einsum("rc,cok->rok", weights, sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = totals[..., 0] / totals[..., 1]
    low, high = np.nanpercentile(shares[:, 1] - shares[:, 0], [2.5, 97.5])
    agree, oppose = sums.sum(axis=0)[:, 0] / sums.sum(axis=0)[:, 1]
    return {"agrees": agree, "opposes": oppose, "difference": oppose - agree, "low": low, "high": high,
            "n_agrees": int(sums.sum(axis=0)[0, 1]), "n_opposes": int(sums.sum(axis=0)[1, 1])}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=("rationales", "items"))
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    groups: dict[str, list[dict]] = {}
    for path in args.paths:
        if args.source == "rationales":
            decoding = read_split(path / "rationales", "train")[0].decoding
            groups.setdefault(decoding, []).extend(training_rows(path))
        else:
            overrides = yaml.safe_load((path.parents[1] / ".hydra" / "overrides.yaml").read_text())
            cell = " ".join(o for o in overrides if o.startswith(("decoding", "dataset.task.world.rationale_format")))
            groups.setdefault(cell, []).extend(item_rows(path))
    print("| rationales | label | cue agrees | cue opposes | opposes − agrees [95% rule bootstrap] | n agrees / opposes |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rows in sorted(groups.items()):
        for label in LABELS:
            s = cue_split(rows, label)
            print(f"| {name} | {label} | {s['agrees']:.3f} | {s['opposes']:.3f} | {s['difference']:+.3f} "
                  f"[{s['low']:+.3f}, {s['high']:+.3f}] | {s['n_agrees']} / {s['n_opposes']} |")


if __name__ == "__main__":
    main()
