"""How often the spatial prior Q vetoes a class the teacher is confident about (paper Sec. 3.1).

The modulated pseudo-label is ``argmax_c Q[c] * p[c]``: where a class was never seen at a pixel in the source
labels, an unsmoothed Q is 0 there and the class can never win, whatever the teacher says. This script counts,
over the labelled pixels of the target *train* split (their labels are read here only to measure; training never
reads them):

* ``Q = 0``: the share of pixels whose true class has zero prior at that pixel (smoothing 0);
* for a teacher that gives the true class probability ``p`` and spreads ``1 - p`` evenly over the other
  classes, the share of pixels whose modulated label is *not* the true class, for a few smoothings ``s``
  (Q = (n + s) / (N + C s)).

    python benchmarks/prior_veto.py [--source data/synthcity/gta] [--target data/synthcity/cityscapes]
"""

from __future__ import annotations

import argparse

import torch

from camix.config import DatasetConfig
from camix.data.datasets import find_samples
from camix.data.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from camix.data.prior import _PriorLabels
from camix.data.transforms import SizeWH


def class_counts(cfg: DatasetConfig, size: SizeWH) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per-pixel class counts ``[C, H, W]`` over the labels of ``cfg`` and the label maps themselves."""
    labels = _PriorLabels(find_samples(cfg), size)
    counts = torch.zeros(NUM_CLASSES + 1, size[1] * size[0], dtype=torch.float64)
    maps = []
    for index in range(len(labels)):
        label = labels[index]
        maps.append(label)
        bins = label.flatten().clamp(max=NUM_CLASSES).unsqueeze(0)
        counts.scatter_add_(0, bins, torch.ones_like(bins, dtype=torch.float64))
    return counts[:NUM_CLASSES].view(NUM_CLASSES, size[1], size[0]), maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="data/synthcity/gta")
    parser.add_argument("--target", default="data/synthcity/cityscapes")
    parser.add_argument("--smoothing", type=float, nargs="+", default=[0.0, 0.01, 0.1, 1.0])
    parser.add_argument("--confidence", type=float, nargs="+", default=[0.968, 0.99, 0.999])
    args = parser.parse_args()
    target_cfg = DatasetConfig(name="cityscapes", root=args.target, split="train")
    first = _PriorLabels(find_samples(target_cfg), (1, 1)).samples[0]
    from PIL import Image

    with Image.open(first.label) as im:
        size: SizeWH = im.size
    counts, _ = class_counts(DatasetConfig(name="gta5", root=args.source), size)
    _, target_maps = class_counts(target_cfg, size)
    gt = torch.stack(target_maps)  # [N, H, W]
    valid = gt != IGNORE_INDEX
    gt_safe = torch.where(valid, gt, torch.zeros_like(gt))
    total = valid.sum().item()
    print(f"source {args.source}, target {args.target} (train split), size {size[0]}x{size[1]}, {total} pixels")

    zero = counts == 0  # [C, H, W]
    vetoed = torch.gather(zero.unsqueeze(0).expand(gt.shape[0], -1, -1, -1), 1, gt_safe.unsqueeze(1)).squeeze(1)
    vetoed = vetoed & valid
    print(f"Q = 0 at the true class (smoothing 0): {100 * vetoed.sum().item() / total:.2f} % of labelled pixels")
    rows = []
    for c in range(NUM_CLASSES):
        n = (valid & (gt == c)).sum().item()
        if n:
            rows.append((CLASS_NAMES[c], 100 * (vetoed & (gt == c)).sum().item() / n, n))
    print("per class (% of the class's pixels with Q = 0 there):")
    print("  " + ", ".join(f"{name} {share:.1f}" for name, share, _ in rows))

    n_total = counts.sum(0, keepdim=True)
    print("modulated label != true class, for a teacher with p(true) = conf and the rest spread evenly (%):")
    print("  smoothing | " + " | ".join(f"conf {c}" for c in args.confidence))
    for s in args.smoothing:
        prior = (counts + s) / (n_total + NUM_CLASSES * s).clamp(min=1e-300)
        prior = torch.where(n_total + NUM_CLASSES * s > 0, prior, torch.full_like(prior, 1 / NUM_CLASSES))
        shares = []
        for conf in args.confidence:
            wrong = 0
            other = (1 - conf) / (NUM_CLASSES - 1)
            for i in range(gt.shape[0]):
                prob = torch.full((NUM_CLASSES, size[1], size[0]), other, dtype=torch.float64)
                prob.scatter_(0, gt_safe[i].unsqueeze(0), conf)
                pred = (prob * prior).argmax(0)
                wrong += ((pred != gt[i]) & valid[i]).sum().item()
            shares.append(100 * wrong / total)
        print(f"  {s:9g} | " + " | ".join(f"{v:10.2f}" for v in shares))


if __name__ == "__main__":
    main()
