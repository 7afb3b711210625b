"""``camix data check``: report every missing label, size mismatch, undecodable file and unknown label id."""

from __future__ import annotations

import argparse

from camix.config import DatasetConfig

HELP = "check a GTA5/SYNTHIA/Cityscapes folder: labels present, files decode, sizes match, label ids known"
DATASETS = ("gta5", "synthia", "cityscapes")


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--root``, ``--split``, ``--list-file`` and ``--limit`` (shared with ``camix data prior``)."""
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="dataset layout (see docs/datasets.md)")
    parser.add_argument("--root", required=True, metavar="DIR", help="dataset folder, e.g. data/gta")
    parser.add_argument("--split", default="train", help="Cityscapes split: train | val (default: train)")
    parser.add_argument(
        "--list-file", metavar="FILE", help="only the image names listed (relative to the image folder)"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N images")


def dataset_config(args: argparse.Namespace) -> DatasetConfig:
    """The DatasetConfig described by the shared arguments."""
    return DatasetConfig(
        name=args.dataset, root=args.root, split=args.split, list_file=args.list_file, limit=args.limit
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the arguments of ``camix data check``."""
    add_dataset_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.epilog = "exit code 0: no problems; 1: problems found (all listed); 2: dataset folders missing or misnamed"


def run(args: argparse.Namespace) -> int:
    """Walk the dataset, print the summary and every problem; 1 when there are problems."""
    from camix.data.check import check_dataset, format_report

    report = check_dataset(dataset_config(args), progress=not args.no_progress)
    print(format_report(report))
    return 1 if report.problems else 0
