"""Paired differences between two rows of SynthCity studies, overall and per class.

Every run of a study with training seed ``s`` starts from the same pretrained model (``pretrain_seed<s>``), so
``<a>_seed<s>`` and ``<b>_seed<s>`` form a pair. This script pools those pairs over one or more study folders (for
example the same generator version on two generator seeds) and prints, for mIoU19 and for each class, the mean of
the paired differences ``a - b`` of the final evaluation and its standard error (sample std / sqrt(pairs)).

    python benchmarks/synthcity/paired.py runs/study runs/calibrate_v2_seed1 --rows dacs cutmix
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from camix.errors import CamixError
from camix.runs import load_run


def pairs(roots: Sequence[Path], a: str, b: str, seeds: Sequence[int]) -> list[tuple[dict, dict]]:
    """The final scores of ``(a, b)`` for every root and seed where both runs exist."""
    found = []
    for root in roots:
        for seed in seeds:
            dirs = (root / f"{a}_seed{seed}", root / f"{b}_seed{seed}")
            if all(d.is_dir() for d in dirs):
                found.append((load_run(dirs[0]).scores(), load_run(dirs[1]).scores()))
    return found


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (nan for fewer than two values)."""
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, se


def table(found: Sequence[tuple[dict, dict]], a: str, b: str) -> str:
    """A markdown table: mIoU19 then every class, mean paired difference and its standard error."""
    lines = [f"| {a} - {b} ({len(found)} pairs) | mean | s.e. |", "|---|---|---|"]
    names = ["mIoU19", *found[0][0]["iou"]]
    for name in names:
        if name == "mIoU19":
            diffs = [x["miou19"] - y["miou19"] for x, y in found]
        else:
            diffs = [x["iou"][name] - y["iou"][name] for x, y in found]
        mean, se = mean_se(diffs)
        lines.append(f"| {name} | {mean:+.1f} | {se:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="study run folders (out_dir of a study)")
    parser.add_argument("--rows", nargs=2, metavar=("A", "B"), required=True, help="the two rows compared: A - B")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default 0 1 2)")
    args = parser.parse_args(argv)
    try:
        found = pairs(args.roots, *args.rows, args.seeds)
    except CamixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not found:
        print(f"error: no pair {args.rows[0]}_seedN / {args.rows[1]}_seedN under {args.roots}", file=sys.stderr)
        return 2
    print(table(found, *args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
