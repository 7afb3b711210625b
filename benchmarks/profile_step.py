"""Where one training iteration's time goes: ``torch.profiler`` over camix's step, ops grouped by kind.

Builds the fast path exactly as ``benchmarks/train_step.py`` does (the packaged GTA5 -> Cityscapes config of the
method, the library's builders, random street-scene batches), runs ``--warmup`` iterations, profiles the next one
on the CPU and prints the share of each kind of op (convolutions forward and backward, BatchNorm, element-wise,
the rest), the top ops, and the page faults of the profiled iteration (``getrusage``).

    python benchmarks/profile_step.py --model deeplabv2_r101 --crop 256x256 --threads 2
    python benchmarks/profile_step.py --model deeplabv2_r101 --crop 256x256 --threads 2 --released

``--released`` profiles the released code's iteration (``benchmarks/baseline_step.py``) on the same batches instead,
so that the two tables compare op by op. ``--device cuda`` profiles the GPU too (with ``--amp bf16 --channels-last``,
the fast path) and prints the GPU's busy time against the wall time and the top ops by GPU time.

    python benchmarks/profile_step.py --device cuda --crop 512x512 --target-size 2048x1024 --amp bf16 --channels-last
"""

from __future__ import annotations

import argparse
import functools
import resource
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

try:
    from benchmarks import train_step as ts
    from benchmarks.scenes import make_pool
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import train_step as ts  # type: ignore[no-redef]
    from scenes import make_pool  # type: ignore[no-redef]

from camix.runtime import keep_freed_memory

KINDS = {
    "convolution (forward)": ("aten::mkldnn_convolution", "aten::_convolution", "aten::thnn_conv2d"),
    "convolution (backward)": ("aten::convolution_backward",),
    "BatchNorm": ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::var_mean", "aten::addcmul"),
    "element-wise (add, ReLU, copies)": (
        "aten::add",
        "aten::add_",
        "aten::clamp_min_",
        "aten::threshold_backward",
        "aten::copy_",
        "aten::mul",
        "aten::mul_",
    ),
}


def kind_of(name: str) -> str:
    return next((kind for kind, names in KINDS.items() if name in names), "everything else")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deeplabv2_r101")
    p.add_argument("--method", choices=ts.METHODS, default="camix")
    p.add_argument("--crop", type=ts.size, default=(256, 256))
    p.add_argument("--target-size", type=ts.size, default=(512, 256))
    p.add_argument("--teacher-passes", default="auto")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--amp", choices=["none", "bf16"], default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--default-allocator", action="store_true", help="leave the C allocator as the process starts")
    p.add_argument("--released", action="store_true", help="profile the released code's iteration instead")
    p.add_argument("--noise-passes", type=int, default=8, help="N, the teacher's noisy passes")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if not args.default_allocator and device.type == "cpu":
        keep_freed_memory()
    torch.backends.cudnn.benchmark = True
    pool = make_pool(2, args.crop, args.target_size, device)
    if args.released:
        run = ts.baseline_runner(args.method, args, pool, device)
    else:
        opts = ts.PathOptions(args.amp, args.channels_last, teacher_passes=args.teacher_passes)
        setup = ts.build_fast(args.method, opts, args.model, pool, device, noise_passes=args.noise_passes)
        run = functools.partial(ts.fast_iteration, setup, pool)
    for i in range(args.warmup):
        run(i)
    ts.sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with profile(activities=activities) as prof:
        run(args.warmup)
        ts.sync(device)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    events = prof.key_averages()
    if device.type == "cuda":
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        gpu = sum(e.self_device_time_total for e in kernels) / 1e6
        print(
            f"{args.method} on {args.model}, crop {args.crop[0]}x{args.crop[1]}, {torch.cuda.get_device_name()}, amp "
            f"{args.amp}: {wall:.4f} s wall (profiled), GPU busy {gpu:.4f} s ({100 * gpu / wall:.0f} %)"
        )
        print(events.table(sort_by="self_device_time_total", row_limit=args.top))
        return
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    kinds: dict[str, float] = defaultdict(float)
    for event in events:
        kinds[kind_of(event.key)] += event.self_cpu_time_total / 1e6
    path = "the released loop" if args.released else "camix"
    print(
        f"{args.method} ({path}) on {args.model}, crop {args.crop[0]}x{args.crop[1]}, {args.threads} threads: "
        f"{wall:.2f} s wall"
    )
    print(
        f"page faults: {after.ru_minflt - before.ru_minflt} minor; system time {after.ru_stime - before.ru_stime:.2f} s"
    )
    print("\n| kind of op | self CPU s | share |\n|---|---|---|")
    for kind, seconds in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {seconds:.2f} | {100 * seconds / total:.1f} % |")
    print(f"| all | {total:.2f} | 100 % |\n")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
