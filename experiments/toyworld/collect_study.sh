#!/usr/bin/env bash
# Copies the record of every completed job of a study's sweeps into a results directory, for committing: status.json
# (outcome, provenance, times), metrics.json, run_config.json (what a rerun compares to keep the job), the per-item
# files and Hydra's config of the job. Rerunning copies only what changed. Copied back into a sweep directory, the
# records let a rerun of the study keep those jobs on a machine without the original sweep (nothing recomputed).
# Usage: experiments/toyworld/collect_study.sh <study dir, e.g. multirun/v4S> <results dir>/jobs
set -euo pipefail
if [ $# -ne 2 ] || [ ! -d "$1" ]; then
    echo "collect_study.sh: error: usage: collect_study.sh <study dir holding sweep dirs> <results dir>/jobs" \
         "(got: $*)" >&2
    exit 2
fi
study=$1 dest=$2
copied=0
for job in "$study"/*/[0-9]*; do
    [ -f "$job/status.json" ] && grep -q '"status": "completed"' "$job/status.json" || continue
    out=$dest/${job#"$study"/}
    cmp -s "$job/status.json" "$out/status.json" 2>/dev/null && continue
    mkdir -p "$out/.hydra"
    for file in status.json metrics.json run_config.json predictions/items.jsonl.gz rationales/items.jsonl.gz; do
        if [ -f "$job/$file" ]; then mkdir -p "$(dirname "$out/$file")" && cp "$job/$file" "$out/$file"; fi
    done
    cp "$job"/.hydra/{config,hydra,overrides}.yaml "$out/.hydra/"
    copied=$((copied + 1))
done
for sweep in "$study"/*/; do
    name=$(basename "$sweep")
    if [ -f "$sweep/multirun.yaml" ]; then mkdir -p "$dest/$name" && cp "$sweep/multirun.yaml" "$dest/$name/"; fi
done
echo "$copied job records copied from $study to $dest"
