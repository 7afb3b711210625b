"""``camix data prior``: the spatial prior Q of a source dataset's labels (paper Sec. 3.1)."""

from __future__ import annotations

import argparse

from camix.commands.common import non_negative_float, non_negative_int, output_file, size_argument
from camix.commands.data_check_cmd import add_dataset_arguments, dataset_config
from camix.errors import ConfigError

HELP = "compute the spatial prior Q of a dataset's labels (or import the authors' .mat prior) and save it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the arguments of ``camix data prior``."""
    add_dataset_arguments(parser, "split: train | val (default: train; ignored by gta5/synthia)")
    for action in parser._actions:  # not needed with --from-mat; run() asks for them otherwise
        if action.dest in ("dataset", "root"):
            action.required = False
    parser.add_argument(
        "--from-mat",
        metavar="FILE",
        help="import the authors' MATLAB prior instead of computing one: prior_array.mat (GTA5, C x H x W) or the "
        "folder of probarray_cls0..18.mat (SYNTHIA); needs scipy (pip install 'camix[scipy]')",
    )
    parser.add_argument(
        "--size",
        type=size_argument,
        metavar="WxH",
        help="prior size as WIDTHxHEIGHT: the size the target training images are resized to, "
        "e.g. 2048x1024 for Cityscapes at scale 1.0, 1024x512 at scale 0.5; required unless "
        "--from-mat, which keeps the file's size unless given (bilinear, as the released SYNTHIA loader)",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="output file (.pt); statistics go to FILE.json")
    parser.add_argument(
        "--smoothing",
        type=non_negative_float,
        default=1.0,
        help="additive smoothing of the counts (default 1, as data.prior_smoothing; 0 lets Q = 0 veto a class)",
    )
    parser.add_argument(
        "--workers", type=non_negative_int, default=0, help="label-decoding worker processes (default 0)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Compute (or import), save and summarise the prior."""
    from camix.data.prior import compute_prior, save_prior, stats_path

    if args.from_mat:
        return import_mat(args)
    if not (args.dataset and args.root and args.size):
        raise ConfigError("camix data prior needs --dataset, --root and --size (or --from-mat FILE to import one)")
    width, height = args.size
    output_file(args.out, "--out")
    print(f"prior size: {width}x{height} (WxH)")
    cfg = dataset_config(args)
    prior, stats = compute_prior(
        cfg, (width, height), progress=not args.no_progress, workers=args.workers, smoothing=args.smoothing
    )
    save_prior(args.out, prior, stats)
    print(f"wrote {args.out} (prior {tuple(prior.shape)} over {stats['num_images']} images) and {stats_path(args.out)}")
    return 0


def import_mat(args: argparse.Namespace) -> int:
    """``--from-mat``: convert the authors' MATLAB prior to camix's prior file."""
    from camix.data.prior import save_prior
    from camix.data.prior_mat import read_mat_prior, resize_prior

    prior = read_mat_prior(args.from_mat)
    if args.size:
        width, height = args.size
        prior = resize_prior(prior, (height, width))
    height, width = prior.shape[-2:]
    save_prior(args.out, prior, {"dataset": "mat", "root": str(args.from_mat), "size": (width, height)})
    print(f"wrote {args.out} (prior {tuple(prior.shape)}, height {height}, width {width}) from {args.from_mat}")
    return 0
