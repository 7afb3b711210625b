"""Seconds and peak memory of the teacher's N + 1 passes (Eq. 5) in each arrangement ``train.teacher_passes`` offers.

The teacher runs as in training: train mode (batch statistics), no gradient, the clean target batch plus N noisy
copies, through camix's own ``camix.teacher.teacher_logits`` with the grouping under test (on the CPU with
:func:`camix.runtime.keep_freed_memory`, as ``camix train`` sets it):

* ``separate``: N + 1 forwards of B images;
* ``3`` (any number k): forwards of k passes (k·B images), each pass normalised with its own statistics;
* ``batched``: one forward of (N + 1)·B images with per-pass statistics;
* ``joint`` (reference only, not a camix option): one forward of (N + 1)·B images with plain BatchNorm, i.e.
  statistics over every pass together: what a batched forward costs without per-pass statistics (its results
  differ).

Each arrangement runs in its own process, so that its peak resident memory (``ru_maxrss``) is its own. Medians of
``--iters`` calls after ``--warmup``. Appends a dated table to ``benchmarks/RESULTS.md`` unless ``--no-record``.

    python benchmarks/teacher_passes.py --model deeplabv2_r101 --crop 256x256 --threads 2
    python benchmarks/teacher_passes.py --device cuda --model deeplabv2_r101 --crop 512x512 --amp bf16
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from camix import functional as Fn
from camix.config import MethodConfig
from camix.methods import build_context
from camix.models import build_model, set_teacher_mode_
from camix.runtime import keep_freed_memory
from camix.teacher import passes_per_forward, teacher_logits
from camix.train_setup import autocast_factory

try:
    from benchmarks.train_step import device_name, omp_wait_policy
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from train_step import device_name, omp_wait_policy  # type: ignore[no-redef]

RESULTS = Path(__file__).with_name("RESULTS.md")
DEFAULT = ("separate", "3", "batched", "joint")


def run_one(args: argparse.Namespace) -> dict[str, object]:
    """Time one arrangement in this process; its peak resident memory in MiB."""
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as `camix train` sets it: freed activations stay in the heap
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    teacher = set_teacher_mode_(build_model(args.model, 19).to(device).requires_grad_(False), True)
    width, height = args.crop
    image = torch.randn(args.batch, 3, height, width, device=device) * 60
    generator = torch.Generator(device=device).manual_seed(0)
    passes = [image, *Fn.noisy_copies(image, args.noise_passes, generator).unbind(0)]
    setting = args.only if not args.only.isdigit() else int(args.only)
    autocast = autocast_factory(device, args.amp)
    cfg = MethodConfig(name="mean_teacher", mix="camix", noise_passes=args.noise_passes)
    group = None if setting == "joint" else passes_per_forward(setting, device)
    ctx = build_context(
        cfg,
        student=teacher,
        teacher=teacher,
        num_classes=19,
        generator=generator,
        total_iterations=1,
        augment=lambda x: x,
        autocast=autocast,
        teacher_group=group,
    )

    def call() -> None:
        if setting == "joint":
            with torch.no_grad(), autocast():
                teacher(torch.cat(passes)).float().softmax(1)
        else:
            teacher_logits(ctx, passes)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        call()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    return {"arrangement": args.only, "seconds": times, "peak_mib": peak}


def size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--model", default="deeplabv2_r101")
    p.add_argument("--crop", type=size, default=(256, 256), help="WxH of the target crops")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--noise-passes", type=int, default=8)
    p.add_argument("--amp", choices=["none", "bf16"], default="none")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--arrangements", nargs="+", default=list(DEFAULT))
    p.add_argument("--only", help=argparse.SUPPRESS)
    p.add_argument("--no-record", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.only:
        print(json.dumps(run_one(args)))
        return
    argv = sys.argv[1:] if argv is None else argv
    rows = []
    for arrangement in args.arrangements:
        child = [sys.executable, __file__, *argv, "--only", arrangement]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
        print(f"{arrangement}: {statistics.median(rows[-1]['seconds']):.2f} s, peak {rows[-1]['peak_mib']:.0f} MiB")
    memory = "peak allocated (MiB)" if args.device == "cuda" else "peak resident memory of the process (MiB)"
    now = f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    lines = [
        f"## {now} — teacher_passes on {device_name(torch.device(args.device))}",
        "",
        f"- command: `python benchmarks/teacher_passes.py {shlex.join(argv)}`",
        f"- environment: torch {torch.__version__}, Python {platform.python_version()}, {args.threads or 'default'} "
        f"threads, {omp_wait_policy()}; model {args.model}, {args.batch} images of {args.crop[0]}x{args.crop[1]}, "
        f"N = {args.noise_passes}, amp {args.amp}; median of {args.iters} after {args.warmup} warm-up",
        "",
        f"| arrangement | s per teacher view | {memory} |",
        "|---|---|---|",
        *(f"| {r['arrangement']} | {statistics.median(r['seconds']):.2f} | {r['peak_mib']:.0f} |" for r in rows),
        "",
    ]
    print("\n".join(lines))
    if not args.no_record:
        with RESULTS.open("a", encoding="utf-8") as handle:
            handle.write("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
