"""Arguments shared by several commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from camix.config import Config, load_config, parse_size


def add_config_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``-c/--config FILE`` and repeatable ``--set KEY=VALUE``."""
    parser.add_argument(
        "-c",
        "--config",
        required=required,
        metavar="FILE",
        help="YAML config (configs/... resolves to the packaged configs too)",
    )
    add_set_argument(parser, "override a config value, e.g. --set train.iterations=1000 (repeatable)")


def add_set_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """Repeatable ``--set KEY=VALUE`` collected into ``args.overrides``."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def size_argument(text: str) -> tuple[int, int]:
    """argparse type for a ``WxH`` size: (width, height)."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_progress_argument(parser: argparse.ArgumentParser, help_text: str = "no progress bars") -> None:
    """``--no-progress``."""
    parser.add_argument("--no-progress", action="store_true", help=help_text)


def config_from_args(args: argparse.Namespace, checks: Sequence[Callable[[Config], None]] = ()) -> Config:
    """The resolved and validated config of ``-c`` and ``--set`` (``checks``: more checks, see ``load_config``)."""
    return load_config(args.config, args.overrides, checks=checks)
