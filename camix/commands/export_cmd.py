"""``camix export``: the segmentation network to ONNX (dynamic batch/height/width), checked in onnxruntime."""

from __future__ import annotations

import argparse

from camix.commands.common import int_at_least, non_negative_float, output_file, size_argument

HELP = "export a checkpoint's network to ONNX (dynamic image size) and check it against PyTorch in onnxruntime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ckpt``, ``--onnx``, ``-c``, ``--set``, ``--teacher``, ``--opset``, ``--check-size``, ``--atol``."""
    parser.add_argument("--ckpt", required=True, metavar="CKPT", help="a checkpoint file or a run directory (last.pt)")
    parser.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")
    parser.add_argument("-c", "--config", metavar="FILE", help="config to use (default: the checkpoint's own)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value"
    )
    parser.add_argument("--teacher", action="store_true", help="export the EMA teacher instead of the student")
    parser.add_argument(
        "--opset", type=int_at_least(7, 20), default=17, metavar="N", help="ONNX opset version, 7-20 (default 17)"
    )
    parser.add_argument(
        "--check-size",
        type=size_argument,
        default=(160, 96),
        metavar="WxH",
        help="size of the random check image (default 160x96; differs from the tracing size on purpose)",
    )
    parser.add_argument(
        "--atol", type=non_negative_float, default=1e-4, help="largest allowed |onnxruntime - PyTorch| (1e-4)"
    )


def run(args: argparse.Namespace) -> int:
    """Export, then compare with PyTorch when onnxruntime is installed (exit 1 when they disagree)."""
    from camix.checkpoint import load_for_inference
    from camix.export import INSTALL_HINT, export_onnx, max_abs_difference, onnxruntime_available, random_image

    output_file(args.onnx, "--onnx")
    _, model, info = load_for_inference(args.ckpt, args.config, args.overrides, teacher=args.teacher or None)
    export_onnx(model, args.onnx, opset=args.opset)
    print(f"exported {info} to {args.onnx} (opset {args.opset}; inputs image[N,3,H,W] -> logits[N,C,H/8,W/8])")
    if not onnxruntime_available():
        print(f"onnxruntime is not installed: skipped the numerical check ({INSTALL_HINT})")
        return 0
    width, height = args.check_size
    difference = max_abs_difference(model, args.onnx, random_image(2, (height, width)))
    verdict = "OK" if difference <= args.atol else f"MISMATCH: above --atol {args.atol:g}"
    print(f"onnxruntime vs PyTorch, random 2x3x{height}x{width} input: max abs difference {difference:.3g} ({verdict})")
    return 0 if difference <= args.atol else 1
