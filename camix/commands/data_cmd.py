"""``camix data``: dataset tools (``synthcity``, ``check``, ``prior``)."""

from __future__ import annotations

import argparse
from types import ModuleType

from camix.commands import data_check_cmd, data_prior_cmd, data_synthcity_cmd

HELP = "dataset tools: generate SynthCity, check a dataset, compute the spatial prior"

# subcommand -> module with HELP, add_arguments(parser), run(args)
SUBCOMMANDS: dict[str, ModuleType] = {"synthcity": data_synthcity_cmd, "check": data_check_cmd, "prior": data_prior_cmd}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the data subcommands."""
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for name, module in SUBCOMMANDS.items():
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_data_run=module.run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen subcommand."""
    return int(args._data_run(args) or 0)
