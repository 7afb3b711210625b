"""``camix data synthcity``: generate SynthCity, the built-in procedural benchmark (README: SynthCity)."""

from __future__ import annotations

import argparse
from pathlib import Path

from camix.commands.common import non_negative_int, size_at_least

HELP = "generate SynthCity: a rendered source (GTA5 layout) and a photographed target (Cityscapes layout)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Output folder, seed, size, image counts, gap strength, --force."""
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output folder (gets gta/ and cityscapes/)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical files (default 0)")
    parser.add_argument(
        "--size",
        type=size_at_least((32, 16)),
        default=(256, 128),
        metavar="WxH",
        help="image size, width x height, at least 32x16 (default 256x128)",
    )
    parser.add_argument(
        "--num-source", type=non_negative_int, default=500, metavar="N", help="source images (default 500)"
    )
    parser.add_argument(
        "--num-target-train", type=non_negative_int, default=500, metavar="N", help="target train images (500)"
    )
    parser.add_argument(
        "--num-target-val", type=non_negative_int, default=100, metavar="N", help="target val images (default 100)"
    )
    parser.add_argument(
        "--gap",
        type=float,
        default=1.0,
        metavar="STRENGTH",
        help="domain-gap strength: 0 = target looks like the source, 1 = default, larger = harder",
    )
    parser.add_argument(
        "--generator-version",
        default=None,
        metavar="V",
        help="generator version: 2.0 (the default), 1.1 or 2.1 (docs/synthcity.md); every version stays reproducible",
    )
    parser.add_argument("--force", action="store_true", help="write into a non-empty folder that is not SynthCity")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate the datasets and print where they are and how to use them in a config."""
    from camix.data.synthcity import GENERATOR_VERSION, generate

    size = args.size
    out = Path(args.out)
    meta = generate(
        out,
        seed=args.seed,
        size=size,
        num_source=args.num_source,
        num_target_train=args.num_target_train,
        num_target_val=args.num_target_val,
        gap=args.gap,
        progress=not args.no_progress,
        force=args.force,
        version=args.generator_version or GENERATOR_VERSION,
    )
    print(_summary(out, meta))
    return 0


def _summary(out: Path, meta: dict[str, object]) -> str:
    params = meta["params"]
    assert isinstance(params, dict)
    return (
        f"SynthCity {meta['version']} written to {out} in {meta['seconds']} s "
        f"(seed {params['seed']}, {params['size'][0]}x{params['size'][1]}, gap {params['gap']})\n"
        f"  source (GTA5 layout, {params['num_source']} images):        {out / 'gta'}\n"
        f"  target (Cityscapes layout, {params['num_target_train']} train + {params['num_target_val']} val): "
        f"{out / 'cityscapes'}\n"
        f"  metadata: {out / 'synthcity.json'}\n"
        "config snippet:\n"
        "data:\n"
        f"  source: {{name: gta5, root: {out / 'gta'}}}\n"
        f"  target: {{name: cityscapes, root: {out / 'cityscapes'}, split: train}}\n"
        f"  val: {{name: cityscapes, root: {out / 'cityscapes'}, split: val}}"
    )
