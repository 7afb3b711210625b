"""Where the pixels of a class go: confusion rows of study rows, summed over their seeds and study folders.

Evaluates the last checkpoint of ``<row>_seed<s>`` under every study folder on its own ``data.val`` (the same
protocol as training's evaluations), sums the confusion matrices per row, and prints for each class asked for its
recall and the classes its pixels are predicted as (percent of the class's ground-truth pixels).

    python benchmarks/synthcity/confusion.py runs/study runs/calibrate_v2_seed1 \
        --rows mean_teacher cutmix dacs --classes fence person rider
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from camix.checkpoint import load_for_inference
from camix.errors import CamixError
from camix.evaluate import evaluate_model
from camix.labels import CLASS_NAMES


def summed_confusion(roots: Sequence[Path], row: str, seeds: Sequence[int]) -> tuple[torch.Tensor, int]:
    """The confusion matrix (rows = ground truth) summed over the runs that exist, and how many there were."""
    total, runs = torch.zeros(len(CLASS_NAMES), len(CLASS_NAMES), dtype=torch.float64), 0
    for root in roots:
        for seed in seeds:
            run = root / f"{row}_seed{seed}"
            if run.is_dir():
                cfg, model, info = load_for_inference(str(run), None, [], teacher=None)
                total += evaluate_model(cfg, model, info, progress=False).result.confusion.double().cpu()
                runs += 1
    return total, runs


def describe(confusion: torch.Tensor, cls: int, top: int = 4) -> str:
    """``recall R | -> other a, other b ...``: where the ground-truth pixels of ``cls`` are predicted, in percent."""
    row = 100 * confusion[cls] / confusion[cls].sum().clamp(min=1)
    others = [int(i) for i in torch.argsort(row, descending=True) if int(i) != cls][:top]
    return f"recall {row[cls]:.1f} | -> " + ", ".join(f"{CLASS_NAMES[i]} {row[i]:.1f}" for i in others)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="study run folders (out_dir of a study)")
    parser.add_argument("--rows", nargs="+", required=True, help="study rows, e.g. mean_teacher cutmix dacs")
    parser.add_argument("--classes", nargs="+", required=True, help=f"class names, from: {', '.join(CLASS_NAMES)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default 0 1 2)")
    args = parser.parse_args(argv)
    unknown = [c for c in args.classes if c not in CLASS_NAMES]
    if unknown:
        print(f"error: unknown class {unknown[0]!r}; choose from {', '.join(CLASS_NAMES)}", file=sys.stderr)
        return 2
    try:
        matrices = {row: summed_confusion(args.roots, row, args.seeds) for row in args.rows}
    except CamixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in args.classes:
        print(f"ground truth {name}:")
        for row, (confusion, runs) in matrices.items():
            text = describe(confusion, CLASS_NAMES.index(name)) if runs else "no runs"
            print(f"  {row:14s} ({runs} runs) {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
