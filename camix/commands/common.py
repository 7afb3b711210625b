"""What the commands share: ``-c``/``--set``/``--no-progress``, argparse types (whole numbers, numbers, the one
``WxH`` size type) and output paths checked before any work.

A wrong argument is one line naming the option and the value (exit code 2), before anything is computed or written.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from camix.config import Config, load_config
from camix.config_tree import Size, parse_size
from camix.errors import CamixError


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


def size_argument(text: str) -> Size:
    """argparse type for a ``WxH`` size: (width, height)."""
    return size_at_least((1, 1))(text)


def size_at_least(minimum: Size) -> Callable[[str], Size]:
    """argparse type for a ``WxH`` size of at least ``minimum`` = (width, height)."""

    def parse(text: str) -> Size:
        try:
            return parse_size(text, minimum)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_progress_argument(parser: argparse.ArgumentParser, help_text: str = "no progress bars") -> None:
    """``--no-progress``."""
    parser.add_argument("--no-progress", action="store_true", help=help_text)


def config_from_args(args: argparse.Namespace, checks: Sequence[Callable[[Config], None]] = ()) -> Config:
    """The resolved and validated config of ``-c`` and ``--set`` (``checks``: more checks, see ``load_config``).

    ``model.num_classes`` follows a folder dataset's classes file when neither the config files nor ``--set`` give
    it (when they do, it must match: :func:`camix.data.layouts.check_class_count`)."""
    overrides = list(args.overrides)
    count = folder_class_count(load_config(args.config, overrides))
    if count is not None and not sets_num_classes(args.config, overrides):
        overrides.append(f"model.num_classes={count}")
    return load_config(args.config, overrides, checks=checks)


def folder_class_count(cfg: Config) -> int | None:
    """The number of classes a folder dataset's classes file names (its source, else its val set), or None."""
    from camix.data.layouts import classes_of_config

    classes = classes_of_config(cfg.data)
    return None if classes is None else len(classes[0])


def sets_num_classes(path: str | None, overrides: Sequence[str]) -> bool:
    """Whether the config files of ``path`` (its ``base:`` chain) or the overrides give ``model.num_classes``."""
    from camix.config_tree import yaml_chain

    if any(o.replace(" ", "").startswith(("model.num_classes=", "model=")) for o in overrides):
        return True
    chain = yaml_chain(path) if path is not None else []
    return any(isinstance(data.get("model"), dict) and "num_classes" in data["model"] for _, data in chain)


class ArgumentError(CamixError):
    """A command-line argument that cannot be used (exit code 2)."""


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in ``[low, high]``."""
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected a whole number {allowed}, got {text!r}")
        return value

    return parse


def float_at_least(low: float) -> Callable[[str], float]:
    """An argparse type: a finite number ``>= low``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number >= {low:g}, got {text!r}") from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"expected a number >= {low:g}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
non_negative_float = float_at_least(0.0)


def output_dir(path: str | Path, option: str) -> Path:
    """Check that ``path`` can be (or already is) a writable folder; returns it.

    Raises:
        ArgumentError: it is a file, lies under a file, or its nearest existing folder is not writable.
    """
    given = Path(path)
    if given.exists() and not given.is_dir():
        raise ArgumentError(f"{option} {path}: a file exists there; give a folder")
    _writable_parent(given, option, path)
    return given


def output_file(path: str | Path, option: str) -> Path:
    """Check that ``path`` can be written as a file (not a folder, its folder creatable and writable); returns it.

    Raises:
        ArgumentError: it is a folder, lies under a file, or its nearest existing folder is not writable.
    """
    given = Path(path)
    if given.is_dir():
        raise ArgumentError(f"{option} {path}: a folder; give a file path")
    _writable_parent(given.parent, option, path)
    return given


def _writable_parent(folder: Path, option: str, path: str | Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ArgumentError(f"{option} {path}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ArgumentError(f"{option} {path}: {existing} is not writable; choose another path")
