#!/usr/bin/env bash
# Study S of ToyWorld v4 (PREREGISTRATION-v4-S.md): the primary arms, 15 seeds, then the secondary arms, then
# scd.compare. Rerunning the same command resumes: completed jobs are kept, an interrupted one resumes.
# Usage: experiments/toyworld/run_study_S.sh [study dir, default multirun/v4S] [results dir, default
#        experiments/results/toyworld_v4S]
set -euo pipefail
cd "$(dirname "$0")/../.."
./setup.sh
study=${1:-multirun/v4S}
results=${2:-experiments/results/toyworld_v4S}
sweep() {  # sweep <sub dir> <overrides...>
    local dir="$study/$1"; shift
    # Seeds vary slowest, so an interrupted study has whole seeds; one thread per job, two jobs at a time.
    .venv/bin/python run.py -m experiment=toyworld_comparison threads=1 hydra/launcher=joblib \
        hydra.launcher.n_jobs=2 hydra.sweep.dir="$dir" dataset.task.world.rationale_format=rule_first "$@"
}
sweep main seed=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14 decoding=greedy,contrast_empty,contrast_wrong,gold \
    training=standard,counterfactual
sweep tags seed=0,1,2 decoding=contrast_wrong training=counterfactual training.tags=shared,none
mkdir -p "$results"
.venv/bin/python -m scd.compare "$study" experiments/toyworld/study-S.yaml --out "$results" --target-half-width 0.025
