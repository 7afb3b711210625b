"""How much faster the released optimiser moves the backbone (``optim.duplicate_backbone_params``; docs/fidelity.md).

Two copies of the same DeepLab-v2 (ResNet-style bottlenecks) train for ``--steps`` SGD steps on the same random
batches with the released hyperparameters (lr 2.5e-4, classifier x10, momentum 0.9, weight decay 5e-4, constant
lr): one with camix's deduplicated parameter groups, one with the released code's duplicated list (PyTorch's loop
SGD). Prints, per kind of tensor, the median over tensors of ``|w_T - w_0|`` (duplicated) / ``|w_T - w_0|``
(deduplicated).

    python benchmarks/optim_duplicates.py [--arch deeplabv2_small] [--steps 200] [--size 64]
"""

from __future__ import annotations

import argparse
import copy
import re
import statistics

import torch
import torch.nn.functional as F

from camix.config import OptimConfig
from camix.models import build_model
from camix.optim import build_optimizer


def kind(name: str) -> str:
    """The tensor's kind: stem conv, block conv, downsample conv or classifier."""
    if name.startswith("layer5."):
        return "classifier"
    if "downsample" in name:
        return "downsample conv (4 copies)"
    if re.fullmatch(r"layer\d\.\d+\.conv\d\.weight", name):
        return "block conv (3 copies)"
    return "stem conv (1 copy)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="deeplabv2_small")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2.5e-4)
    args = parser.parse_args()
    torch.manual_seed(0)
    start = build_model(args.arch, 19).train()
    models = {"dedup": copy.deepcopy(start), "dup": copy.deepcopy(start)}
    optimizers = {
        name: build_optimizer(model, OptimConfig(lr=args.lr, duplicate_backbone_params=name == "dup"))
        for name, model in models.items()
    }
    g = torch.Generator().manual_seed(1)
    for _ in range(args.steps):
        image = torch.randn(2, 3, args.size, args.size, generator=g) * 50
        label = torch.randint(0, 19, (2, args.size, args.size), generator=g)
        for name, model in models.items():
            logits = F.interpolate(model(image), size=image.shape[-2:], mode="bilinear", align_corners=True)
            optimizers[name].zero_grad()
            F.cross_entropy(logits, label).backward()
            optimizers[name].step()
    initial = dict(start.named_parameters())
    ratios: dict[str, list[float]] = {}
    for (name, dedup), dup in zip(models["dedup"].named_parameters(), models["dup"].parameters(), strict=True):
        if not dedup.requires_grad:
            continue
        moved = (dedup - initial[name]).norm().item()
        if moved > 0:
            ratios.setdefault(kind(name), []).append((dup - initial[name]).norm().item() / moved)
    print(f"{args.arch}, {args.steps} steps, lr {args.lr}, momentum 0.9, weight decay 5e-4, batch 2 x {args.size}^2")
    print("displacement ratio |w_T - w_0| duplicated / deduplicated (median over tensors [min, max]):")
    for name, values in sorted(ratios.items()):
        print(f"  {name:28s} {statistics.median(values):5.2f}  [{min(values):.2f}, {max(values):.2f}]  n={len(values)}")


if __name__ == "__main__":
    main()
