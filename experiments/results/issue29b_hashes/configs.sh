#!/usr/bin/env bash
# usage: configs.sh <label> <checkout>: `run.py --cfg job --resolve` for the compared compositions
label=$1 src=$2
mkdir -p /tmp/h29b/cfg
while IFS='|' read -r name overrides; do
  PYTHONPATH=$src OMP_NUM_THREADS=1 /work/main/.venv/bin/python $src/run.py $overrides --cfg job --resolve > /tmp/h29b/cfg/$label-$name.yaml 2>&1 || echo "FAIL $name"
done <<'LIST'
default|
comparison|experiment=toyworld_comparison
smoke|experiment=smoke
creak-explicit|dataset=creak teacher=gpt_neox_20b student=t5_large simulator=t5_base
creak|dataset=creak
paper_smoke|experiment=[smoke,paper_table] arm=human
LIST
