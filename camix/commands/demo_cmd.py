"""``camix demo``: SynthCity end to end — the command line of :func:`camix.demo.run_demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from camix.commands.common import add_set_argument
from camix.demo import DEMO_CONFIG

HELP = "the whole method in minutes on a CPU: SynthCity -> source pretraining -> CAMix -> evaluation -> report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--out``, ``--config``, ``--set``, ``--no-progress``."""
    parser.add_argument("--data", default="data/synthcity", metavar="DIR", help="SynthCity folder (made if missing)")
    parser.add_argument("--out", default="runs/demo", metavar="DIR", help="folder of the demo's runs and report")
    parser.add_argument("--config", default=DEMO_CONFIG, metavar="FILE", help="adaptation config (default: CAMix)")
    add_set_argument(parser, "override a value of the adaptation config (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Generate, pretrain, adapt, report; 130 when interrupted."""
    from camix.commands.common import output_dir
    from camix.demo import run_demo

    output_dir(args.data, "--data")
    output_dir(args.out, "--out")
    result = run_demo(Path(args.data), Path(args.out), args.config, args.overrides, progress=not args.no_progress)
    if result is None:
        return 130
    before, after = (s["final"]["miou19"] for s in result.summaries)
    print(
        f"\ndone in {sum(result.timings.values()) / 60:.1f} min: mIoU19 on the SynthCity target val split "
        f"{before:.1f} (source only) -> {after:.1f} ({result.adapt.method.mix})"
    )
    print(
        f"report:      {result.report}\ncheckpoint:  {result.summaries[1]['checkpoint']}\n"
        f"metrics:     {result.adapt.out_dir}/metrics.jsonl"
    )
    return 0
