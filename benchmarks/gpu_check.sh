#!/usr/bin/env bash
# One-shot GPU check (CAMix iteration speed, memory, evaluation throughput), for a session that has a GPU: run it once.
#
#   bash benchmarks/gpu_check.sh            # CUDA: DeepLab-v2 R101, 512x512, 2+2 images, N=8 (paper settings)
#   bash benchmarks/gpu_check.sh --smoke    # CPU, tiny model and crop: checks that the script itself works
#
# Step 1 times the fast path (bf16 + channels_last, eager) of source-only, DACS and CAMix, the released code's
# iteration for CAMix in the same process (speed-up = ratio of the medians), peak allocated memory, and the
# fp32-vs-fast loss comparison over 10 iterations; it appends its tables to benchmarks/RESULTS.md.
# Step 2 times each arrangement of the teacher's N + 1 passes (train.teacher_passes: separate, 3 per forward,
# batched, and the joint-statistics reference) alone, and the CAMix iteration with the teacher's passes separate
# (step 1 ran them batched, the GPU default), so that the first GPU run tells which default each device wants.
# Step 3 (CUDA only, bounded by a timeout) adds the torch.compile variant of the CAMix fast path.
# Expected total on an H100: about 2-4 minutes for step 1, at most 4 more for step 2.
# Targets: CAMix fast <= 0.09 s/iter, >= 4x the baseline, peak <= 8 GiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

if [[ "${1:-}" == "--smoke" ]]; then
    shift
    common=(--device cpu --model deeplabv2_tiny --crop 32x32 --target-size 64x64 --iters 2 --warmup 1
            --noise-passes 8 --numerics-iters 2 --numerics-pretrain 2 --no-record)
    teacher=(--device cpu --model deeplabv2_tiny --crop 32x32 --iters 1 --warmup 1 --no-record)
    compile_timeout=0
else
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.version.cuda)"
    common=(--device cuda --iters 20 --warmup 3)
    teacher=(--device cuda --model deeplabv2_r101 --crop 512x512 --amp bf16 --iters 20 --warmup 3)
    compile_timeout=240
fi

echo "== step 1: fast path x3 methods, baseline for CAMix, numerics"
"$PYTHON" benchmarks/train_step.py "${common[@]}" --baseline --baseline-methods camix --check-numerics "$@"

echo "== step 2: the teacher's passes: each arrangement alone, then the CAMix iteration with separate passes"
"$PYTHON" benchmarks/teacher_passes.py "${teacher[@]}"
"$PYTHON" benchmarks/train_step.py "${common[@]}" --methods camix --teacher-passes separate "$@"

if (( compile_timeout > 0 )); then
    echo "== step 3: CAMix with torch.compile (bounded to ${compile_timeout}s)"
    timeout "$compile_timeout" "$PYTHON" benchmarks/train_step.py "${common[@]}" --methods camix --compile --warmup 5 "$@" \
        || echo "step 3 did not finish (exit $?): the compiled variant is optional, step 1 holds the acceptance figures"
fi
echo "== done"
