"""Wall time of the per-iteration mask functions on a 2x19x512x512 batch (the CAMix training shape).

Prints the median over a few runs of contextual_mask (spatial prior + default relations) + classmix_mask,
each component separately, and the CowMix/CutMix masks for reference. CPU by default; ``--device cuda``
times on a GPU (with synchronisation around each run).

    python benchmarks/functional_masks.py [--device cpu|cuda] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import camix.functional as F


def _median_ms(fn: Callable[[], object], runs: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    device = torch.device(args.device)
    setup = torch.Generator(device=device).manual_seed(0)
    b, c, h, w = 2, 19, 512, 512
    teacher_prob = torch.randn(b, c, h // 8, w // 8, generator=setup, device=device)
    teacher_prob = torch.nn.functional.interpolate(teacher_prob * 4, size=(h, w), mode="bilinear").softmax(dim=1)
    blocks = torch.randint(0, 20, (b, h // 32, w // 32), generator=setup, device=device)
    labels = torch.nn.functional.interpolate(blocks[:, None].float(), size=(h, w)).long()[:, 0]
    labels[labels == 19] = 255
    prior = F.spatial_prior([labels], c, (h, w), smoothing=1.0)
    gen = torch.Generator(device=device).manual_seed(1)

    def both() -> None:
        F.contextual_mask(teacher_prob, prior, F.DEFAULT_RELATIONS, gen)
        F.classmix_mask(labels, gen)

    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} batch={b}x{c}x{h}x{w}")
    rows = {
        "contextual_mask + classmix_mask": both,
        "contextual_mask": lambda: F.contextual_mask(teacher_prob, prior, F.DEFAULT_RELATIONS, gen),
        "classmix_mask": lambda: F.classmix_mask(labels, gen),
        "cutmix_mask": lambda: F.cutmix_mask((b, h, w), gen),
        "cowmix_mask sigma=16": lambda: F.cowmix_mask((b, h, w), gen, sigma=16.0, p=0.5),
        "cowmix_mask sigma=32": lambda: F.cowmix_mask((b, h, w), gen, sigma=32.0, p=0.5),
    }
    for name, fn in rows.items():
        print(f"{name:34s} {_median_ms(fn, args.runs, device):8.1f} ms (median of {args.runs})")


if __name__ == "__main__":
    main()
