"""``camix data prior``: the spatial prior Q of a source dataset's labels (paper Sec. 3.1)."""

from __future__ import annotations

import argparse
import re

from camix.commands.data_check import add_dataset_arguments, dataset_config
from camix.errors import ConfigError

HELP = "compute the spatial prior Q of a dataset's labels and save it (plus per-class statistics in JSON)"


def parse_hw(text: str) -> tuple[int, int]:
    """``"HxW"`` -> (height, width). Note the order: height first, as in the issue's ``--size HxW``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise ConfigError(f"--size {text!r}: expected HEIGHTxWIDTH with positive integers, e.g. 720x1280")
    return int(match[1]), int(match[2])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the arguments of ``camix data prior``."""
    add_dataset_arguments(parser)
    parser.add_argument(
        "--size",
        required=True,
        metavar="HxW",
        help="prior size as HEIGHTxWIDTH (height first!): the size the target training images are resized to, "
        "e.g. 1024x2048 for Cityscapes at scale 1.0 (WxH 2048x1024), 512x1024 at scale 0.5",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="output file (.pt); statistics go to FILE.json")
    parser.add_argument(
        "--smoothing",
        type=float,
        default=1.0,
        help="additive smoothing of the counts (default 1, as data.prior_smoothing; 0 lets Q = 0 veto a class)",
    )
    parser.add_argument("--workers", type=int, default=0, help="label-decoding worker processes (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Compute, save and summarise the prior."""
    from camix.data.prior import compute_prior, save_prior, stats_path

    height, width = parse_hw(args.size)
    print(f"prior size: height {height}, width {width} (WxH {width}x{height})")
    cfg = dataset_config(args)
    prior, stats = compute_prior(
        cfg, (width, height), progress=not args.no_progress, workers=args.workers, smoothing=args.smoothing
    )
    save_prior(args.out, prior, stats)
    print(f"wrote {args.out} (prior {tuple(prior.shape)} over {stats['num_images']} images) and {stats_path(args.out)}")
    return 0
