"""``camix predict``: segment images with a checkpoint; colour-coded maps, overlays and Cityscapes labelId PNGs."""

from __future__ import annotations

import argparse

from camix.commands.common import size_argument

HELP = "segment images or folders: colour maps, overlays and ids PNGs, or a benchmark server's files (--format)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ckpt``, inputs, ``--out``, ``-c``, ``--set``, ``--teacher``, ``--size``."""
    parser.add_argument("--ckpt", required=True, metavar="CKPT", help="a checkpoint file or a run directory (last.pt)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (input sub-folders are mirrored)")
    parser.add_argument("-c", "--config", metavar="FILE", help="config to use (default: the checkpoint's own)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value"
    )
    parser.add_argument("--teacher", action="store_true", help="use the EMA teacher instead of the student")
    parser.add_argument(
        "--size", type=size_argument, metavar="WxH", help="network input size (default: data.val.size of the config)"
    )
    parser.add_argument(
        "--format",
        default="default",
        choices=("default", "cityscapes", "acdc", "dark_zurich"),
        help="default: <stem>_labelIds/_color/_overlay.png; cityscapes: labelIds PNGs named like the images (test "
        "server); acdc, dark_zurich: trainIds PNGs named like the images (docs/datasets.md)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Find the inputs, load the network, write three PNGs per image."""
    from camix.checkpoint import load_for_inference
    from camix.commands.common import output_dir
    from camix.data.layouts import classes_of_config
    from camix.predict import find_inputs, predict_files

    output_dir(args.out, "--out")
    inputs = find_inputs(args.inputs)
    cfg, model, info = load_for_inference(args.ckpt, args.config, args.overrides, teacher=args.teacher or None)
    print(f"checkpoint: {info}")
    classes = classes_of_config(cfg.data)
    done = predict_files(
        model,
        cfg,
        inputs,
        args.out,
        size=args.size,
        progress=not args.no_progress,
        output_format=args.format,
        classes=classes,
    )
    per_image = 3 if args.format == "default" else 1
    print(f"wrote {per_image * done} files for {done} images to {args.out} (format {args.format})")
    return 0
