#!/usr/bin/env bash
# SCOTT's comparison on ToyWorld: decoding {greedy, contrast_empty, contrast_wrong} x training {standard,
# counterfactual} x 3 seeds, then the report table (table.md, table.csv, plots) in the sweep directory.
# The world, teacher and student settings are the defaults in conf/ (fixed before this was run).
# Usage: experiments/toyworld_comparison.sh [sweep dir] [extra overrides...]
set -euo pipefail
cd "$(dirname "$0")/.."
./setup.sh
sweep=${1:-multirun/toyworld_comparison}
shift || true
.venv/bin/python run.py -m experiment=toyworld_comparison \
    decoding=greedy,contrast_empty,contrast_wrong training=standard,counterfactual seed=0,1,2 \
    hydra.sweep.dir="$sweep" "$@"
.venv/bin/python -m scd.report "$sweep"
