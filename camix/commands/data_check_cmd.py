"""``camix data check``: report every missing label, size mismatch, undecodable file and unknown label id."""

from __future__ import annotations

import argparse

from camix.commands.common import positive_int
from camix.config import DatasetConfig

HELP = "check a dataset (any layout): labels present, files decode, sizes match, label values known"
DATASETS = ("gta5", "synthia", "cityscapes", "acdc", "dark_zurich", "bdd100k", "folder")


def add_dataset_arguments(parser: argparse.ArgumentParser, split_help: str | None = None) -> None:
    """``--dataset``, ``--root``, ``--split``, ``--list-file`` and ``--limit`` (shared with ``camix data prior``).

    Args:
        parser: the command's parser.
        split_help: help of ``--split`` defaulting to ``train``; None: ``--split`` defaults to every split.
    """
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="dataset layout (see docs/datasets.md)")
    parser.add_argument("--root", required=True, metavar="DIR", help="dataset folder, e.g. data/gta")
    if split_help is None:
        parser.add_argument(
            "--split", action="append", metavar="SPLIT", help="only this split (repeatable; default: all)"
        )
    else:
        parser.add_argument("--split", default="train", help=split_help)
    parser.add_argument(
        "--list-file", metavar="FILE", help="only the image names listed (relative to the image folder)"
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="only the first N images")
    parser.add_argument(
        "--condition",
        action="append",
        default=[],
        metavar="NAME",
        help="acdc: fog/night/rain/snow (default all); dark_zurich: day/twilight/night (default night); repeatable",
    )
    folder = DatasetConfig()
    parser.add_argument("--image-dir", default=folder.image_dir, help="folder: image folder under the root")
    parser.add_argument("--label-dir", default=folder.label_dir, help="folder: label folder under the root")
    parser.add_argument("--image-suffix", default=folder.image_suffix, help="folder: NAME<suffix> of the images")
    parser.add_argument("--label-suffix", default=folder.label_suffix, help="folder: NAME<suffix> of the labels")
    parser.add_argument("--classes", metavar="FILE", help="folder: the classes file (docs/datasets.md)")


def dataset_config(args: argparse.Namespace) -> DatasetConfig:
    """The DatasetConfig described by the shared arguments."""
    split = args.split if isinstance(args.split, str) else "train"
    return DatasetConfig(
        name=args.dataset,
        root=args.root,
        split=split,
        list_file=args.list_file,
        limit=args.limit,
        conditions=tuple(args.condition),
        image_dir=args.image_dir,
        label_dir=args.label_dir,
        image_suffix=args.image_suffix,
        label_suffix=args.label_suffix,
        classes=args.classes,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the arguments of ``camix data check``."""
    add_dataset_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.epilog = (
        "checks every split (cityscapes, acdc, dark_zurich, bdd100k, folder: train and val; gta5 and synthia have "
        "one). Exit code 0: no problems; "
        "1: problems found (all listed, an empty or missing split included); 2: root missing, or no split found"
    )


def run(args: argparse.Namespace) -> int:
    """Walk the dataset's splits, print the summary and every problem; 1 when there are problems."""
    from camix.data.check import check_dataset, format_report

    report = check_dataset(dataset_config(args), splits=args.split, progress=not args.no_progress)
    print(format_report(report))
    return 1 if report.problems else 0
