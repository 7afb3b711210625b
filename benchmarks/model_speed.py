"""Parameter counts and forward / forward+backward time of the DeepLab-v2 variants.

Usage::

    python benchmarks/model_speed.py                      # CPU: r101 at 2x3x512x512, tiny/small at 4x3x128x128
    python benchmarks/model_speed.py --device cuda --amp  # GPU, bfloat16/float16 autocast
    python benchmarks/model_speed.py --models deeplabv2_tiny --repeats 20 --threads 2

Times are medians over ``--repeats`` runs after ``--warmup`` runs, in training mode (batch statistics,
as in training); forward+backward backpropagates the sum of the logits.

On a CPU shared with other jobs, OpenMP threads that spin-wait make multi-threaded timings erratic
(up to 10x slower); run with ``OMP_WAIT_POLICY=PASSIVE`` or ``--threads 1`` for repeatable figures.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch

from camix.models import MODELS, build_model, count_parameters

DEFAULT_SHAPES = {
    "deeplabv2_r101": (2, 3, 512, 512),
    "deeplabv2_r50": (2, 3, 512, 512),
    "deeplabv2_r18": (2, 3, 512, 512),
    "deeplabv2_small": (4, 3, 128, 128),
    "deeplabv2_tiny": (4, 3, 128, 128),
}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["deeplabv2_r101", "deeplabv2_small", "deeplabv2_tiny"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--shape", type=int, nargs=4, metavar=("B", "C", "H", "W"), help="override the input shape")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--amp", action="store_true", help="autocast (bfloat16 on CPU, float16 on CUDA)")
    parser.add_argument("--channels-last", action="store_true", help="use the channels_last memory format")
    return parser.parse_args()


def sync(device: torch.device) -> None:
    """Wait for queued kernels so that wall time measures them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``fn`` in seconds."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """Mixed precision when asked for, nothing otherwise."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    with torch.autocast(device.type, dtype=dtype, enabled=enabled):
        yield


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> str:
    """One result line for one variant."""
    shape = tuple(args.shape) if args.shape else DEFAULT_SHAPES[name]
    model = build_model(name).to(device).train()
    x = torch.randn(*shape, device=device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.no_grad(), autocast(device, args.amp):
            model(x)

    def forward_backward() -> None:
        with autocast(device, args.amp):
            out = model(x)
        out.float().sum().backward()

    fwd = median_time(forward, device, args.warmup, args.repeats)
    fwd_bwd = median_time(forward_backward, device, args.warmup, args.repeats)
    with torch.no_grad():
        out_shape = tuple(model(x).shape)
    size = "x".join(map(str, shape))
    return (
        f"{name:16s} {count_parameters(model) / 1e6:7.3f} M params  input {size:13s} -> {out_shape}  "
        f"forward {fwd * 1e3:8.1f} ms  forward+backward {fwd_bwd * 1e3:8.1f} ms"
    )


def main() -> None:
    """Print a header and one line per variant."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {name}; median of {args.repeats} after {args.warmup} warm-up runs")
    counts = ", ".join(f"{n} {count_parameters(build_model(n)) / 1e6:.2f} M" for n in MODELS)
    print(f"parameters (19 classes): {counts}")
    for model_name in args.models:
        print(bench_model(model_name, args, device), flush=True)


if __name__ == "__main__":
    main()
