#!/bin/bash
# Usage: bash benchmarks/peak_memory_cpu.sh [SCRATCH_DIR [--set KEY=VALUE ...]]   (writes only under SCRATCH_DIR)
# Peak RSS of 3 iterations of the official CAMix config at the paper's settings (R101, 512x512 crops, fp32, CPU),
# with the teacher's N = 8 noisy passes and with N = 1 (the difference is what the extra passes hold).
# Further --set overrides reach both runs (e.g. --set train.teacher_passes=separate).
# Data: a small SynthCity at Cityscapes' 2048x1024 in GTA5/Cityscapes layouts. Prints GNU time's figures.
set -eu
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
OUT=${1:-/tmp/camix_peak_memory}
shift $(( $# > 0 ? 1 : 0 ))
D=$OUT/synthcity_2048x1024
[ -d $D/gta ] || camix data synthcity --out $D --size 2048x1024 --num-source 6 --num-target-train 6 --num-target-val 1 --no-progress
for N in 8 1; do
  rm -rf $OUT/run_$N
  /usr/bin/time -v camix train -c configs/gta2cs/camix_official.yaml --no-progress \
    --set out_dir=$OUT/run_$N --set model.pretrained=null \
    --set data.source.root=$D/gta --set data.target.root=$D/cityscapes --set data.val.root=$D/cityscapes \
    --set data.workers=2 --set train.iterations=3 --set train.eval_every=1000 --set train.checkpoint_every=1000 \
    --set train.log_every=1 --set method.warmup_iterations=0 --set method.noise_passes=$N --set train.threads=2 "$@" \
    > $OUT/train_$N.log 2>&1
  grep -E "Maximum resident|Elapsed" $OUT/train_$N.log
done
