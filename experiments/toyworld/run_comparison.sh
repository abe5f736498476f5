#!/usr/bin/env bash
# The pre-registered ToyWorld comparison (experiments/toyworld/PREREGISTRATION-v3.1.md; v3: PREREGISTRATION.md at
# c815a7d), then its analysis.
# Every arm runs through run.py with the registered v3.1 world (dataset=toyworld_v3_1) and defaults in conf/; two
# jobs at a time, one torch thread each (the joblib launcher; `threads` defaults to the cores divided by its n_jobs).
# Seeds vary slowest, so an interrupted comparison has whole seeds.
# Usage: experiments/toyworld/run_comparison.sh [sweep dir, default multirun/prereg] [results dir, default
#        experiments/results/toyworld_v3.1]
set -euo pipefail
cd "$(dirname "$0")/../.."
./setup.sh
sweep=${1:-multirun/prereg}
results=${2:-experiments/results/toyworld_v3.1}
run() {  # run <sub dir> <overrides...>
    local dir="$sweep/$1"; shift
    .venv/bin/python run.py -m experiment=toyworld_comparison dataset=toyworld_v3_1 hydra/launcher=joblib \
        hydra.launcher.n_jobs=2 hydra.sweep.dir="$dir" "$@"
}
run main seed=0,1,2 decoding=greedy,contrast_empty,contrast_wrong,gold training=standard,counterfactual
run tags seed=0,1,2 decoding=contrast_wrong training=counterfactual training.tags=shared,none
run error0 seed=0,1,2 decoding=contrast_wrong training=standard,counterfactual teacher.trained.corpus.teacher_error_rate=0.0
run icl seed=0,1,2 arm=icl_teacher
.venv/bin/python -m scd.compare "$sweep" experiments/toyworld/comparison-v3.1.yaml --out "$results"
.venv/bin/python -m scd.report "$sweep" --html
