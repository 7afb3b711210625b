"""``camix train``: train one run from a config."""

from __future__ import annotations

import argparse
import json
import os

from camix.commands.common import add_config_arguments, config_from_args

HELP = "train a model (source-only, oracle, mean teacher + CutMix/CowMix/DACS/iDACS/CAMix)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``-c``, ``--set``, ``--resume`` or ``--restart``, ``--no-progress``."""
    add_config_arguments(parser)
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue from a checkpoint: 'auto' takes the newest good one in the run directory",
    )
    start.add_argument(
        "--restart",
        action="store_true",
        help="start over in a run directory that holds a run (the old one is moved to <out_dir>.old-<time>)",
    )
    start.add_argument(
        "--smoke",
        action="store_true",
        help="check the setup at full size: 2 iterations (+1 after the warm-up) and an evaluation of 2 validation "
        "images in a temporary run directory; prints s/iteration, peak memory and the estimated wall time",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run(args: argparse.Namespace) -> int:
    """Train; exit 0 when finished, 130/143 when stopped by SIGINT/SIGTERM (after saving a checkpoint).

    Under torchrun only rank 0 prints.
    """
    from camix.checkpoint import check_resume
    from camix.preflight import preflight
    from camix.runtime import shutdown_distributed
    from camix.train import train

    cfg = config_from_args(args, checks=[preflight])  # values, their relations and the files they name
    if args.smoke:
        from camix.smoke import format_smoke, smoke

        try:
            print(format_smoke(smoke(cfg, progress=not args.no_progress)))
        finally:
            shutdown_distributed()
        return 0
    check_resume(args.resume, cfg.model)
    try:
        summary = train(cfg, resume=args.resume, restart=args.restart, progress=not args.no_progress)
    finally:
        shutdown_distributed()
    main = int(os.environ.get("RANK", "0")) == 0
    if "interrupted" in summary:
        if main:
            print(f"stopped at iteration {summary['iteration']}; resume with: {summary['resume']}")
        return 130 if summary["interrupted"] == "SIGINT" else 143
    if not main:
        return 0
    final = summary.get("final") or {}
    print(
        json.dumps(
            {
                "run_dir": summary["run_dir"],
                "iteration": summary["iteration"],
                "miou19": final.get("miou19"),
                "best": summary["best"],
            }
        )
    )
    return 0
