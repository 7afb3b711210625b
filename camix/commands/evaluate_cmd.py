"""``camix evaluate``: per-class IoU and mIoU19/16/13 of a checkpoint on ``data.val``, printed and saved."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camix.evaluate import Evaluation
    from camix.tables import TableLayout

from camix.commands.common import add_progress_argument, add_set_argument, size_argument

HELP = "evaluate a checkpoint on data.val: per-class IoU, mIoU19/16/13 (markdown, CSV, JSON)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ckpt``, ``-c``, ``--set``, ``--teacher``, ``--flip``, ``--sliding``, ``--overlap``, ``--native-labels``."""
    parser.add_argument(
        "--ckpt", required=True, metavar="PATH", help="a checkpoint (last.pt, best.pt, iter_*.pt) or a run directory"
    )
    parser.add_argument("-c", "--config", metavar="FILE", help="config to use (default: the checkpoint's own)")
    add_set_argument(parser, "override a config value")
    parser.add_argument(
        "--teacher", action="store_true", help="evaluate the EMA teacher (default: eval.model of the config)"
    )
    parser.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    parser.add_argument(
        "--sliding", type=size_argument, metavar="WxH", help="sliding-window inference with windows of WxH pixels"
    )
    parser.add_argument(
        "--overlap", type=float, default=None, help="overlap of sliding windows (default: eval.overlap, 1/3)"
    )
    parser.add_argument(
        "--native-labels", action="store_true", help="score against full-resolution labels (batch size 1)"
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default: <run_dir>/eval/<ckpt stem>[...])")
    add_progress_argument(parser, "no progress bar")


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table in the layout of the paper's Table 1 (Table 3 for SYNTHIA), save it."""
    from camix.checkpoint import load_for_inference
    from camix.commands.common import output_dir
    from camix.errors import ConfigError
    from camix.evaluate import default_eval_dir, evaluate_model, with_protocol
    from camix.tables import layout_for, save_evaluation

    if args.overlap is not None and not 0.0 <= args.overlap < 1.0:
        raise ConfigError(f"--overlap {args.overlap}: choose a fraction in [0, 1), e.g. 0.33")
    if args.out:
        output_dir(args.out, "--out")
    cfg, model, info = load_for_inference(args.ckpt, args.config, args.overrides, teacher=args.teacher or None)
    cfg = with_protocol(
        cfg, teacher=info.network == "teacher", flip=args.flip, window=args.sliding, native_labels=args.native_labels
    )
    evaluation = evaluate_model(cfg, model, info, overlap=args.overlap, progress=not args.no_progress)
    layout = layout_for(cfg.data.source.name, evaluation.result.names)
    out = Path(args.out) if args.out else default_eval_dir(info, cfg)
    paths = save_evaluation(evaluation, out, layout)
    print(f"checkpoint: {info}")
    print(f"protocol:   {describe_protocol(evaluation.protocol)}")
    print(evaluation_table(evaluation, layout))
    print(f"saved: {', '.join(str(p) for p in paths)}")
    return 0


def evaluation_table(evaluation: Evaluation, layout: TableLayout) -> str:
    """The one-row IoU table of an evaluation."""
    from camix.tables import iou_table

    return iou_table([(evaluation.checkpoint.short, evaluation.result.as_dict())], layout, first="checkpoint")


def describe_protocol(protocol: dict[str, Any]) -> str:
    """``cityscapes val (500 images) at 1024x512, labels image-size, flip, sliding 512x512 (overlap 0.33)``."""
    size = "x".join(map(str, protocol["size"])) if protocol["size"] else f"native x{protocol['scale']:g}"
    parts = [f"{protocol['dataset']} {protocol['split']} ({protocol['images']} images) at {size}"]
    parts.append(f"labels {'full resolution' if protocol['label_size'] == 'native' else 'at image size'}")
    if protocol["flip"]:
        parts.append("flip")
    if protocol["sliding_window"]:
        window = "x".join(map(str, protocol["sliding_window"]))
        parts.append(f"sliding {window} (overlap {protocol['overlap']:.2f})")
    return ", ".join(parts)
