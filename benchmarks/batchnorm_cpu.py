"""Training-mode BatchNorm on the CPU: torch's kernel against camix's (``camix.models.batchnorm.CpuBatchNorm``).

Times one forward of each on activations of ResNet-101's shapes at 256x256 crops (2 images; and the teacher's 9
passes folded into the channels), float32, after the allocator setting ``camix train`` uses, and the largest
difference of each from a float64 reference on an activation with one channel whose mean is large against its
spread. Medians of ``--iters`` calls; appends a dated table to ``benchmarks/RESULTS.md`` unless ``--no-record``.

    python benchmarks/batchnorm_cpu.py --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from camix.models.batchnorm import CpuBatchNorm
from camix.runtime import keep_freed_memory

try:
    from benchmarks.train_step import omp_wait_policy, record
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from train_step import omp_wait_policy, record  # type: ignore[no-redef]

RESULTS = Path(__file__).with_name("RESULTS.md")
SHAPES = ((2, 256, 65, 65), (2, 1024, 33, 33), (2, 9 * 256, 65, 65), (2, 9 * 1024, 33, 33))


def median_ms(call: Callable[[], object], iters: int) -> float:
    """Median wall time of ``call`` in milliseconds, after two warm-up calls."""
    call(), call()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def row(shape: tuple[int, int, int, int], iters: int) -> str:
    """One table row: both kernels' times and their largest errors against float64."""
    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + 1
    x[:, 0] = x[:, 0] * 0.05 + 20  # mean 20, spread 0.05
    weight, bias = torch.rand(shape[1]) + 0.5, torch.rand(shape[1])
    with torch.no_grad():
        native = median_ms(lambda: F.batch_norm(x, None, None, weight, bias, True, 0.0, 1e-5), iters)
        camix = median_ms(lambda: CpuBatchNorm.apply(x, weight, bias, 1e-5, 1), iters)
        exact = F.batch_norm(x.double(), None, None, weight.double(), bias.double(), True, 0.0, 1e-5)
        native_err = (F.batch_norm(x, None, None, weight, bias, True, 0.0, 1e-5).double() - exact).abs().max()
        camix_err = (CpuBatchNorm.apply(x, weight, bias, 1e-5, 1)[0].double() - exact).abs().max()
    size = "x".join(map(str, shape))
    return f"| {size} | {native:.2f} | {camix:.2f} | {native / camix:.2f} | {native_err:.1e} | {camix_err:.1e} |"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=15)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    rows = [row(shape, args.iters) for shape in SHAPES]
    now = f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    argv = sys.argv[1:] if argv is None else argv
    lines = [
        f"## {now} — training-mode BatchNorm on the CPU ({args.threads} torch threads)",
        "",
        f"- command: `python benchmarks/batchnorm_cpu.py {shlex.join(argv)}`",
        f"- environment: torch {torch.__version__}, {omp_wait_policy()}; float32, no grad; "
        f"median of {args.iters} calls",
        "",
        "| activation | torch (ms) | camix (ms) | speed-up | torch's largest error | camix's largest error |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    print("\n".join(lines))
    if not args.no_record:
        record("\n".join(lines), RESULTS)


if __name__ == "__main__":
    main()
