"""``camix study``: train every run of a study (configs x seeds, resumable), then write its results."""

from __future__ import annotations

import argparse
import json

from camix.commands.common import add_set_argument

HELP = "run a study (e.g. the paper's Tables 2, 4, 5, 6 on SynthCity) and write its results file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``STUDY_FILE``, ``--set``, ``--report-only``, ``--dry-run``."""
    parser.add_argument("study", metavar="STUDY_FILE", help="e.g. configs/synthcity/study.yaml")
    add_set_argument(parser, "override applied to every run, e.g. --set train.iterations=300 (repeatable)")
    parser.add_argument("--report-only", action="store_true", help="only (re)write the results of finished runs")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and one resolved config, train nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the study."""
    from camix.study import describe, load_study, run_study

    study = load_study(args.study, args.overrides)
    if args.dry_run:
        print(json.dumps(describe(study), indent=2))
        return 0
    command = " ".join(["camix study", str(args.study), *(f"--set {o}" for o in args.overrides)])
    results = run_study(study, progress=not args.no_progress, only_report=args.report_only, command=command)
    print(f"results: {results}")
    return 0
