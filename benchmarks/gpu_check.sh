#!/usr/bin/env bash
# One-shot GPU check (CAMix iteration speed, memory, the teacher's pass arrangements, evaluation throughput), for a
# session that has a GPU: run it once.
#
#   bash benchmarks/gpu_check.sh            # CUDA: DeepLab-v2 R101, 512x512, 2+2 images, N=8 (paper settings)
#   bash benchmarks/gpu_check.sh --smoke    # CPU, tiny model and crop: checks that the script itself works
#
# Step 1 times the fast path (bf16 + channels_last, eager) of source-only, DACS and CAMix, the released code's
# iteration for CAMix in the same process (speed-up = ratio of the medians), peak allocated memory, and the
# fp32-vs-fast loss comparison over 10 iterations.
# Step 2 times each arrangement of the teacher's N + 1 passes (train.teacher_passes: separate, 3 per forward,
# batched, and the joint-statistics reference) alone, and the CAMix iteration with the teacher's passes separate
# and 3 per forward (step 1 ran them as `auto` says for the GPU), so that the run tells which default the GPU wants.
# Step 3 times CAMix against the released code's iteration in fp32 (eager, contiguous): the same arithmetic on both
# sides, so the ratio is the arrangement's alone.
# Step 3b (CUDA only): one profiled CAMix iteration of the fast path, the top ops by GPU time.
# Step 4: evaluation throughput of deeplabv2_r101 at 1024x512, without and with flip.
# Step 5: one CAMix iteration on DAFormer's network and recipe (configs/gta2cs/daformer_camix.yaml) and in HRDA
# (configs/gta2cs/hrda_camix.yaml, 1024x1024 crops), the latter with the teacher's passes batched and separate.
# Step 6 (CUDA only) adds the torch.compile variant of the CAMix fast path (GPU_CHECK_COMPILE_TIMEOUT s, 240).
# On CUDA each step has a time limit; a failing step is reported and the next one runs. train_step.py and
# teacher_passes.py append their tables to benchmarks/RESULTS.md (eval_speed.py and profile_step.py only print).
# With GPU_CHECK_OUT=DIR, RESULTS.md is copied there after every step; GPU_CHECK_SKIP='4a|6' skips the steps so
# numbered (for a rerun of the others). The first run (NVIDIA H200, 2026-12-04) took about 6 minutes without step 6.
# Targets: CAMix fast <= 0.09 s/iter, >= 4x the baseline, peak <= 8 GiB; 500 images at 1024x512 in <= 10 s.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT_DIR=${GPU_CHECK_OUT:-}

if [[ "${1:-}" == "--smoke" ]]; then
    shift
    common=(--device cpu --model deeplabv2_tiny --crop 32x32 --target-size 64x64 --iters 2 --warmup 1
            --noise-passes 8 --no-record)
    numerics=(--numerics-iters 2 --numerics-pretrain 2)
    teacher=(--device cpu --model deeplabv2_tiny --crop 32x32 --iters 1 --warmup 1 --no-record)
    evaluation=(--device cpu --model deeplabv2_tiny --size 128x64 --images 2 --warmup 1)
    configs=(--device cpu --model deeplabv2_tiny --iters 1 --warmup 1 --no-record)
    daformer_size=(--crop 64x64 --target-size 128x64)
    hrda_size=(--crop 512x512 --target-size 1024x512)
    limit=0
else
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.version.cuda)" \
        || exit 1
    common=(--device cuda --iters 20 --warmup 3)
    numerics=()
    teacher=(--device cuda --model deeplabv2_r101 --crop 512x512 --amp bf16 --iters 20 --warmup 3)
    evaluation=(--device cuda --model deeplabv2_r101 --size 1024x512 --images 500 --warmup 20)
    configs=(--device cuda --iters 5 --warmup 2)
    daformer_size=(--target-size 1024x512)
    hrda_size=(--target-size 2048x1024)
    limit=1
fi

failed=()
step() {  # step NAME SECONDS COMMAND...: run (on CUDA within SECONDS), time, go on after a failure, copy results out
    local name=$1 seconds=$2 start=$SECONDS
    shift 2
    if [[ -n "${GPU_CHECK_SKIP:-}" && "${name%%:*}" =~ ^(${GPU_CHECK_SKIP})$ ]]; then
        echo "== $name: skipped (GPU_CHECK_SKIP)"
        return 0
    fi
    echo "== $name"
    (( limit )) && set -- timeout "$seconds" "$@"
    "$@" || { echo "!! $name failed (exit $?; 124: over its ${seconds} s)"; failed+=("$name"); }
    echo "-- $name: $((SECONDS - start)) s"
    [[ -n "$OUT_DIR" ]] && cp benchmarks/RESULTS.md "$OUT_DIR/RESULTS.md"
    return 0
}

step "1: fast path x3 methods, released loop for CAMix, numerics" 240 \
    "$PYTHON" benchmarks/train_step.py "${common[@]}" --baseline --baseline-methods camix --check-numerics \
    "${numerics[@]}" "$@"
step "2a: the teacher's passes, each arrangement alone" 120 "$PYTHON" benchmarks/teacher_passes.py "${teacher[@]}"
step "2b: CAMix iteration with separate passes" 60 \
    "$PYTHON" benchmarks/train_step.py "${common[@]}" --methods camix --teacher-passes separate "$@"
step "2c: CAMix iteration with 3 passes per forward" 60 \
    "$PYTHON" benchmarks/train_step.py "${common[@]}" --methods camix --teacher-passes 3 "$@"
step "3: CAMix against the released loop in fp32" 90 \
    "$PYTHON" benchmarks/train_step.py "${common[@]}" --methods camix --amp none --no-channels-last --baseline "$@"
(( limit )) && step "3b: where the CAMix fast path's time goes (one profiled iteration)" 90 \
    "$PYTHON" benchmarks/profile_step.py --device cuda --crop 512x512 --target-size 2048x1024 --amp bf16 \
    --channels-last --threads 0 --warmup 3 --top 25
step "4a: evaluation throughput" 60 "$PYTHON" benchmarks/eval_speed.py "${evaluation[@]}"
step "4b: evaluation throughput with flip" 60 "$PYTHON" benchmarks/eval_speed.py "${evaluation[@]}" --flip
step "5a: CAMix on DAFormer" 90 "$PYTHON" benchmarks/train_step.py "${configs[@]}" \
    --config configs/gta2cs/daformer_camix.yaml "${daformer_size[@]}"
for number_passes in 5b:batched 5c:separate; do
    step "${number_passes%%:*}: CAMix in HRDA (teacher passes ${number_passes#*:})" 120 \
        "$PYTHON" benchmarks/train_step.py "${configs[@]}" --config configs/gta2cs/hrda_camix.yaml \
        "${hrda_size[@]}" --teacher-passes "${number_passes#*:}"
done
if (( limit )); then  # last: compiling can take minutes, and the compiled variant is optional
    step "6: CAMix with torch.compile" "${GPU_CHECK_COMPILE_TIMEOUT:-240}" \
        "$PYTHON" benchmarks/train_step.py "${common[@]}" --methods camix --compile --warmup 5 "$@"
fi
if (( ${#failed[@]} )); then
    printf '== failed: %s\n' "${failed[@]}"
    exit 1
fi
echo "== done"
