"""``camix train``: train one run from a config."""

from __future__ import annotations

import argparse
import json

from camix.commands.common import add_config_arguments, config_from_args

HELP = "train a model (source-only, oracle, mean teacher + CutMix/CowMix/DACS/iDACS/CAMix)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``-c``, ``--set``, ``--resume``, ``--no-progress``."""
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue from a checkpoint: 'auto' takes the newest good one in the run directory",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run(args: argparse.Namespace) -> int:
    """Train; exit 0 when finished, 130/143 when stopped by SIGINT/SIGTERM (after saving a checkpoint)."""
    from camix.preflight import check_resume, preflight
    from camix.runtime import shutdown_distributed
    from camix.train import train

    cfg = config_from_args(args, checks=[preflight])  # values, their relations and the files they name
    check_resume(args.resume, cfg)
    try:
        summary = train(cfg, resume=args.resume, progress=not args.no_progress)
    finally:
        shutdown_distributed()
    if "interrupted" in summary:
        print(
            f"stopped at iteration {summary['iteration']}; resume with: "
            f"camix train -c {summary['run_dir']}/config.yaml --resume auto"
        )
        return 130 if summary["interrupted"] == "SIGINT" else 143
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
