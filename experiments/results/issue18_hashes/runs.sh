#!/usr/bin/env bash
# usage: runs.sh <label> <source dir>: the acceptance runs of issue 18 with one code version, each on a fresh cache
# (the ToyWorld one on a copy of the default run's cache: its trained teacher and contrast_wrong rationales).
label=$1 src=$2
out=/tmp/h18b/$label
rm -rf $out; mkdir -p $out
cd $src
export PYTHONPATH=$src OMP_NUM_THREADS=2
py=/work/main/.venv/bin/python
for d in greedy contrast_empty contrast_wrong; do
  $py run.py experiment=smoke decoding=$d paths.cache_dir=$out/cache-$d hydra.run.dir=$out/smoke-$d > $out/smoke-$d.log 2>&1 || echo "FAIL smoke-$d"
done
$py run.py experiment=smoke arm=icl_teacher paths.cache_dir=$out/cache-icl hydra.run.dir=$out/smoke-icl > $out/smoke-icl.log 2>&1 || echo "FAIL smoke-icl"
cp -r /tmp/fresh2/cache $out/cache-toyworld
$py run.py logger=none trainer.max_steps=60 paths.cache_dir=$out/cache-toyworld hydra.run.dir=$out/toyworld > $out/toyworld.log 2>&1 || echo "FAIL toyworld"
echo done $label
