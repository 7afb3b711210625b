"""``camix report``: compare runs (mean ± std over seeds), per-class IoU, adaptation curves, qualitative grid."""

from __future__ import annotations

import argparse

from camix.commands.common import output_dir, positive_int

HELP = "compare training runs: tables (mean ± std over seeds), adaptation curves and a qualitative grid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Run directories, ``--out``, ``--table``, ``--title``, ``--baseline``, labels, metric, checkpoint, figures."""
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by camix train")
    parser.add_argument("--out", default="report", metavar="DIR", help="output folder (default: ./report)")
    parser.add_argument("--table", default="table", metavar="NAME", help="file stem of the table's CSV/JSON")
    parser.add_argument("--title", default="camix report", help="title of report.md and the curve plot")
    parser.add_argument("--baseline", metavar="NAME", help="row the gain is measured against (default: the first)")
    parser.add_argument(
        "--label-by",
        choices=("dir", "method"),
        default="dir",
        help="row names: the run folder's name without a _seedN suffix (= the config stem for the packaged "
        "configs), or the paper's method names (Mean Teacher, + DACS, + CAMix, ...)",
    )
    parser.add_argument(
        "--label",
        dest="labels",
        action="append",
        default=[],
        metavar="NAME",
        help="name of each row in order (repeat once per group; overrides --label-by)",
    )
    parser.add_argument(
        "--metric", choices=("auto", "miou19", "miou16", "miou13"), default="auto", help="auto: miou13 for SYNTHIA"
    )
    parser.add_argument(
        "--checkpoint", choices=("last", "best"), default="last", help="score each run's last or best-on-val checkpoint"
    )
    parser.add_argument("--images", type=positive_int, default=3, metavar="N", help="rows of the qualitative grid")
    parser.add_argument("--no-figures", action="store_true", help="tables only (no curves, no qualitative grid)")


def run(args: argparse.Namespace) -> int:
    """Load, group, write; print the comparison table."""
    from camix.report import (
        LABELERS,
        Group,
        ReportError,
        comparison_table,
        default_metric,
        group_runs,
        load_run,
        write_report,
    )

    output_dir(args.out, "--out")
    groups = group_runs([load_run(path, labeler=LABELERS[args.label_by]) for path in args.runs])
    if args.labels:
        if len(args.labels) != len(groups):
            found = "; ".join(f"{g.label} ({g.n} runs)" for g in groups)
            raise ReportError(
                f"{len(args.labels)} --label given for {len(groups)} groups ({found}); give one per group"
            )
        groups = [Group(label, g.runs) for label, g in zip(args.labels, groups, strict=True)]
    metric = None if args.metric == "auto" else args.metric
    paths = write_report(
        groups,
        args.out,
        baseline=args.baseline,
        metric=metric,
        which=args.checkpoint,
        title=args.title,
        table=args.table,
        n_images=args.images,
        figures=not args.no_figures,
    )
    print(comparison_table(groups, args.baseline, metric or default_metric(groups), args.checkpoint))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0
