"""camix's training iteration against the released loop's, timed pair by pair in one process.

``benchmarks/train_step.py --baseline`` times all of the released loop's iterations, then all of camix's. On a
shared machine whose speed drifts by 10-20 % over minutes, a drift between the two blocks moves the ratio by as
much as the arrangement does. Here each pair runs one iteration of each path, the first of the pair alternating,
and the figure is the median of the pairs' ratios (camix / released) with their spread. Both paths run with
camix's allocator setting (:func:`camix.runtime.keep_freed_memory`): the ratio counts the arrangement of the step
alone, not the heap (``train_step.py`` gives the released loop the allocator as the process starts).

    python benchmarks/step_pairs.py --model deeplabv2_r101 --crop 256x256 --method camix --pairs 7 --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import functools
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from camix.runtime import keep_freed_memory

try:
    from benchmarks import train_step as ts
    from benchmarks.scenes import make_pool
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import train_step as ts  # type: ignore[no-redef]
    from scenes import make_pool  # type: ignore[no-redef]


def timed(run: Callable[[int], Any], i: int) -> float:
    """Wall seconds of ``run(i)``."""
    start = time.perf_counter()
    run(i)
    return time.perf_counter() - start


def pairs(
    camix: Callable[[int], Any], released: Callable[[int], Any], count: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Seconds of ``count`` pairs of iterations after ``warmup`` pairs; camix first in the even pairs."""
    for i in range(warmup):
        camix(i), released(i)
    ours, theirs = [], []
    for i in range(warmup, warmup + count):
        if (i - warmup) % 2 == 0:
            ours.append(timed(camix, i))
            theirs.append(timed(released, i))
        else:
            theirs.append(timed(released, i))
            ours.append(timed(camix, i))
    return ours, theirs


def report(args: argparse.Namespace, argv: list[str], ours: list[float], theirs: list[float]) -> str:
    """The dated section: command, environment, per-pair seconds and the median ratio."""
    rows = list(zip(ours, theirs, strict=True))
    ratios = sorted(a / b for a, b in rows)
    middle = statistics.median(ratios)
    now = f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    device = torch.device("cpu")
    return "\n".join(
        [
            f"## {now} — step_pairs on {ts.device_name(device)}",
            "",
            f"- command: `python benchmarks/step_pairs.py {shlex.join(argv)}`",
            f"- environment: {ts.environment(device)}",
            f"- settings: {args.method}, model {args.model}, crop {args.crop[1]}x{args.crop[0]}, 2+2 images, "
            f"N={args.noise_passes}, fp32, channels_last {args.channels_last}, teacher passes {args.teacher_passes}; "
            f"{args.pairs} pairs after {args.warmup} warm-up pair(s); both paths keep freed memory in the heap"
            + ("; the released loop flushes subnormal gradients at its logits too" if args.released_flush else ""),
            "",
            "| pair | camix s | released loop s | camix / released |",
            "|---|---|---|---|",
            *(f"| {i + 1} | {a:.2f} | {b:.2f} | {a / b:.3f} |" for i, (a, b) in enumerate(rows)),
            "",
            f"Median of the pairs' ratios: **{middle:.3f}** (range {ratios[0]:.3f}-{ratios[-1]:.3f});"
            f" medians {statistics.median(ours):.2f} s / {statistics.median(theirs):.2f} s.",
        ]
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deeplabv2_r101")
    p.add_argument("--method", choices=ts.METHODS, default="camix")
    p.add_argument("--crop", type=ts.size, default=(256, 256), help="WxH (default 256x256)")
    p.add_argument("--target-size", type=ts.size, default=(256, 512), help="WxH of the target images (512x256)")
    p.add_argument("--noise-passes", type=int, default=8)
    p.add_argument("--channels-last", action="store_true", help="camix's train.channels_last (default off)")
    p.add_argument("--teacher-passes", default="auto")
    p.add_argument("--pairs", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--released-flush",
        action="store_true",
        help="give the released loop camix's flush of subnormal gradient values at the logits (camix.step_context)",
    )
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    p.add_argument("--results", type=Path, default=ts.RESULTS, help=argparse.SUPPRESS)
    return p.parse_args(argv)  # sizes as (height, width), as train_step keeps them


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    device = torch.device("cpu")
    pool = make_pool(2, args.crop, args.target_size, device)
    opts = ts.PathOptions("none", args.channels_last, False, args.teacher_passes)
    setup = ts.build_fast(args.method, opts, args.model, pool, device, noise_passes=args.noise_passes)
    released = ts.baseline_runner(args.method, ts.parse_args(ts_argv(args)), pool, device, flush=args.released_flush)
    ours, theirs = pairs(functools.partial(ts.fast_iteration, setup, pool), released, args.pairs, args.warmup)
    text = report(args, argv, ours, theirs)
    print(text)
    if not args.no_record:
        ts.record(text, args.results)
        print(f"\nappended to {args.results}")


def ts_argv(args: argparse.Namespace) -> list[str]:
    """The ``train_step.py`` arguments the released loop's builder reads (model and N)."""
    return ["--device", "cpu", "--model", args.model, "--noise-passes", str(args.noise_passes)]


if __name__ == "__main__":
    main()
