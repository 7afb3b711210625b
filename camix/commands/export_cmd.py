"""``camix export``: the segmentation network to ONNX (dynamic batch/height/width), checked in onnxruntime."""

from __future__ import annotations

import argparse

from camix.commands.common import int_at_least, non_negative_float, output_file, size_argument

HELP = "export a checkpoint's network to ONNX (dynamic image size) and check it against PyTorch in onnxruntime"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ckpt``, ``--onnx``, ``-c``, ``--set``, ``--teacher``, ``--opset``, ``--check-size``, ``--size``,
    ``--atol``."""
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
        "--size",
        type=size_argument,
        default=None,
        metavar="WxH",
        help="the fixed input size of an HRDA network's graph (default: data.val.size); other networks are dynamic",
    )
    parser.add_argument(
        "--atol", type=non_negative_float, default=1e-4, help="largest allowed |onnxruntime - PyTorch| (1e-4)"
    )


def run(args: argparse.Namespace) -> int:
    """Export, then compare with PyTorch when onnxruntime is installed (exit 1 when they disagree)."""
    from camix.checkpoint import load_for_inference
    from camix.errors import ConfigError
    from camix.export import INSTALL_HINT, export_onnx, max_abs_difference, onnxruntime_available, random_image
    from camix.models import HRDA

    output_file(args.onnx, "--onnx")
    cfg, model, info = load_for_inference(args.ckpt, args.config, args.overrides, teacher=args.teacher or None)
    fixed = args.size or cfg.data.val.size if isinstance(model, HRDA) else None
    if isinstance(model, HRDA) and fixed is None:
        raise ConfigError(
            "an HRDA network exports its fused inference at one fixed image size; give --size WxH or set data.val.size"
        )
    sample = (fixed[1], fixed[0]) if fixed is not None else (64, 96)
    export_onnx(model, args.onnx, opset=args.opset, sample_size=sample, fixed_size=fixed is not None)
    shape = f"image[1,3,{fixed[1]},{fixed[0]}] (HRDA: one fixed size)" if fixed is not None else "image[N,3,H,W]"
    print(f"exported {info} to {args.onnx} (opset {args.opset}; inputs {shape} -> logits[N,C,H/s,W/s])")
    if not onnxruntime_available():
        print(f"onnxruntime is not installed: skipped the numerical check ({INSTALL_HINT})")
        return 0
    width, height = fixed if fixed is not None else args.check_size
    batch = 1 if fixed is not None else 2
    difference = max_abs_difference(model, args.onnx, random_image(batch, (height, width)))
    verdict = "OK" if difference <= args.atol else f"MISMATCH: above --atol {args.atol:g}"
    shown = f"{batch}x3x{height}x{width}"
    print(f"onnxruntime vs PyTorch, random {shown} input: max abs difference {difference:.3g} ({verdict})")
    return 0 if difference <= args.atol else 1
