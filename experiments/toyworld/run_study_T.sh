#!/usr/bin/env bash
# Study T of ToyWorld v4 (PREREGISTRATION-v4-T.md): the teacher's rationales in both chain orders, three teachers each,
# four decodings; no student. Rerunning the same command resumes (kept and resumed jobs, scd.compare again).
# Usage: experiments/toyworld/run_study_T.sh [study dir, default multirun/v4T] [results dir, default
#        experiments/results/toyworld_v4T]
set -euo pipefail
cd "$(dirname "$0")/../.."
./setup.sh
study=${1:-multirun/v4T}
results=${2:-experiments/results/toyworld_v4T}
sweep() {  # sweep <sub dir> <overrides...>
    local dir="$study/$1"; shift
    # Decoding varies slowest, so the two jobs running at once build different teachers.
    .venv/bin/python run.py -m experiment=toyworld_comparison 'stages=[teacher]' threads=1 \
        hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweep.dir="$dir" \
        '+teacher.trained.corpus.seed=${seed}' '+teacher.trained.training.seed=${seed}' "$@"
}
sweep main decoding=greedy,contrast_empty,contrast_wrong seed=0,1,2 \
    dataset.task.world.rationale_format=entity_first,rule_first
sweep plausibility decoding=contrast_wrong decoding.plausibility=0.1 seed=0,1,2 \
    dataset.task.world.rationale_format=entity_first,rule_first
mkdir -p "$results"
.venv/bin/python -m scd.compare "$study" experiments/toyworld/study-T.yaml --out "$results" --target-half-width 0.05
.venv/bin/python -m scd.report "$study/main"
