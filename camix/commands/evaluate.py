"""``camix evaluate``: per-class IoU and mIoU of a checkpoint on the validation split."""

from __future__ import annotations

import argparse

from camix.commands.common import add_config_arguments, config_from_args

HELP = "evaluate a checkpoint: per-class IoU and mIoU19/16/13 on data.val"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``-c``, ``--set``, ``--ckpt``, ``--teacher``."""
    add_config_arguments(parser)
    parser.add_argument("--ckpt", required=True, metavar="PATH", help="a camix checkpoint (last.pt, best.pt, ...)")
    parser.add_argument("--teacher", action="store_true", help="evaluate the EMA teacher instead of the student")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the table."""
    from camix.predict import evaluate_checkpoint, format_table

    cfg = config_from_args(args)
    result, info = evaluate_checkpoint(cfg, args.ckpt, teacher=args.teacher, progress=not args.no_progress)
    print(f"checkpoint: {info}")
    print(format_table(result))
    return 0
