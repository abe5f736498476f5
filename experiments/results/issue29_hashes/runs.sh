#!/usr/bin/env bash
# usage: runs.sh <label> <checkout> [output root, default /tmp/h29]: the acceptance runs of issue 29 with one code
# version, each on a fresh cache, one at a time on one thread: the smoke run (contrast_wrong), the smoke run with
# arm=icl_teacher, and a short ToyWorld run (a 50-step teacher trained in code, 100 student steps, 40 examples per split).
label=$1 src=$2 root=${3:-/tmp/h29}
out=$root/$label
rm -rf $out; mkdir -p $out
cd $src
export PYTHONPATH=$src OMP_NUM_THREADS=1
py=/work/main/.venv/bin/python
$py run.py experiment=smoke threads=1 paths.cache_dir=$out/cache-smoke hydra.run.dir=$out/smoke > $out/smoke.log 2>&1 || echo "FAIL smoke"
$py run.py experiment=smoke arm=icl_teacher threads=1 paths.cache_dir=$out/cache-icl hydra.run.dir=$out/smoke-icl > $out/smoke-icl.log 2>&1 || echo "FAIL smoke-icl"
$py run.py threads=1 logger=csv teacher.trained.training.max_steps=50 teacher.trained.training.probe_threshold=0 \
  trainer.max_steps=100 dataset.limit=40 paths.cache_dir=$out/cache-toyworld hydra.run.dir=$out/toyworld > $out/toyworld.log 2>&1 || echo "FAIL toyworld"
echo done $label
