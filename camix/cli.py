"""The ``camix`` command line: a thin dispatcher over the command modules in ``camix.commands``.

Each command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. User errors
(:class:`~camix.errors.CamixError`) print one line and exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from camix.commands import (
    data_cmd,
    demo_cmd,
    evaluate_cmd,
    export_cmd,
    predict_cmd,
    report_cmd,
    study_cmd,
    train_cmd,
)
from camix.errors import CamixError
from camix.io import tolerant_console

# command name -> module; the command modules import the library inside run(), so `camix --help` stays fast
COMMANDS: dict[str, ModuleType] = {
    "demo": demo_cmd,
    "train": train_cmd,
    "evaluate": evaluate_cmd,
    "data": data_cmd,
    "predict": predict_cmd,
    "report": report_cmd,
    "export": export_cmd,
    "study": study_cmd,
}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and exit with code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``camix CMD: error: MESSAGE (see camix CMD --help)`` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all commands)."""
    parser = OneLineParser(prog="camix", description="Context-Aware Mixup for domain-adaptive segmentation.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 success, 1 failure, 2 bad input)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a one-line argument error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    tolerant_console()  # run paths that are not valid UTF-8 are printed, not a crash
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        return int(args._run(args) or 0)
    except CamixError as exc:
        if args.debug:
            raise
        command = " ".join(c for c in (args.command, getattr(args, "data_command", None)) if c)
        print(f"camix {command}: error: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print(f"camix {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (``camix study ... --dry-run | head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


if __name__ == "__main__":
    sys.exit(main())
