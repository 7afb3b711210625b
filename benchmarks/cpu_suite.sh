#!/usr/bin/env bash
# Every CPU figure of benchmarks/RESULTS.md in one go (about 15 minutes on a 2-core machine; run it on a quiet
# machine). Prints each benchmark's output; train_step.py also appends its own dated section to RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
py="${PYTHON:-python}"
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), torch $($py -c 'import torch; print(torch.__version__)')"
echo "== model_speed: DeepLab-v2 variants, r101 at 2x3x512x512"
$py benchmarks/model_speed.py --repeats 3 --warmup 1 --threads 2
echo "== functional_masks: contextual_mask + classmix_mask on 2x19x512x512"
$py benchmarks/functional_masks.py --runs 9
echo "== data_loading: 1914x1052 GTA5 pair -> 1280x720 -> 512x512 crop"
$py benchmarks/data_loading.py --copies 16 --repeats 3 --workers 0 2
echo "== eval_speed: deeplabv2_r101 at 1024x512"
$py benchmarks/eval_speed.py --images 3 --warmup 1 --threads 2
echo "== train_step: tiny model, 128x128 crops, fast path vs the released code's loop"
$py benchmarks/train_step.py --device cpu --threads 2 --baseline --iters 20 --warmup 3
