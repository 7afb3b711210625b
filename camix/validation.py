"""Allowed values of a config: ranges declared next to the fields, and where a bad value came from.

A field declares its range in its type, ``iterations: PositiveInt`` or ``Annotated[float, Range(0, 1)]``;
:func:`check_ranges` walks any (nested) config dataclass and checks every annotated value, so a new field
only needs its annotation. The rules that relate several fields of a run's config live with its schema
(``camix.config.check_rules``). Both raise :class:`ConfigKeyError`, which names the keys involved so that the
loader can add where each value came from (the YAML file, a ``--set`` override or the default,
:func:`describe_origins`). Nothing here knows the schema, builds or reads data.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml

from camix.errors import ConfigError


class ConfigKeyError(ConfigError):
    """A bad value of one or more config keys (``keys``); the loader appends where each value came from."""

    def __init__(self, message: str, *keys: str) -> None:
        """Args: message: one line naming the key, the value and what is allowed; keys: the dotted keys."""
        super().__init__(message)
        self.keys = keys


@dataclass(frozen=True)
class Range:
    """A closed (or, with ``low_open``/``high_open``, open) interval of allowed numbers; None: unbounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        """Whether ``value`` is finite and inside the interval."""
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``<= 0``, ``in [0, 1]``, ``in [0, 1)`` ..."""
        low, high = _number(self.low), _number(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {high}"
        return "finite"


def _number(value: float | None) -> str:
    """``1``, ``0.5``, ``4294967295`` (integers in full, other numbers in ``%g``)."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class ClassIds:
    """Marks a value holding class ids (mapping keys, values, list items): each must lie in ``[0, num_classes)``."""


PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
PositiveFloat = Annotated[float, Range(0, low_open=True)]
NonNegativeFloat = Annotated[float, Range(0)]
Probability = Annotated[float, Range(0, 1)]
PositiveSize = tuple[PositiveInt, PositiveInt]  # [width, height]


# ----- ranges -------------------------------------------------------------------------------------------------
def check_ranges(obj: Any, prefix: str = "", num_classes: int | None = None) -> None:
    """Check every range-annotated value of the dataclass ``obj`` (recursively).

    Args:
        obj: a config dataclass instance.
        prefix: the dotted key of ``obj`` (``"method."``), for messages.
        num_classes: the class count that :class:`ClassIds` values must fit (None: not checked).

    Raises:
        ConfigKeyError: the first value out of its range, naming its key, the value and the range.
    """
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        _check_value(hints[f.name], value, f"{prefix}{f.name}", value, num_classes)


def _check_value(tp: Any, value: Any, key: str, shown: Any, num_classes: int | None) -> None:
    if value is None:
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        check_ranges(value, f"{key}.", num_classes)
        return
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        _check_value(args[0], value, key, shown, num_classes)
        for mark in args[1:]:
            if isinstance(mark, Range) and not mark.contains(value):
                each = "each value " if shown is not value else ""
                kind = "an integer" if isinstance(value, int) else "a number"
                raise ConfigKeyError(
                    f"config key '{key}': {show_value(shown)} is out of range; {each}must be {kind} {mark.describe()}",
                    key,
                )
            if isinstance(mark, ClassIds) and num_classes is not None:
                _check_class_ids(value, key, num_classes)
        return
    if origin in (Union, types.UnionType):
        option = next((a for a in args if _matches(a, value)), None)
        if option is not None:
            _check_value(option, value, key, shown, num_classes)
        return
    if origin is tuple and isinstance(value, tuple):
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        for item_tp, item in zip(items, value, strict=False):
            _check_value(item_tp, item, key, shown, num_classes)
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigKeyError(f"config key '{key}': {show_value(shown)} is not a finite number", key)


def _matches(tp: Any, value: Any) -> bool:
    """Whether ``value`` (already converted) is of the union member ``tp``."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _matches(args[0], value)
    if origin is Literal:
        return value in args
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    if origin is tuple:
        return isinstance(value, tuple)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(tp, type) and isinstance(value, tp)


def _class_ids(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield k
            yield from _class_ids(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _class_ids(v)
    else:
        yield value


def _check_class_ids(value: Any, key: str, num_classes: int) -> None:
    for class_id in _class_ids(value):
        if isinstance(class_id, str):  # a class name: resolved (and checked) against the dataset's class names
            continue
        if not 0 <= class_id < num_classes:
            raise ConfigKeyError(
                f"config key '{key}': class id {class_id} in {show_value(value)} is out of range; class ids must be in "
                f"[0, {num_classes}) (model.num_classes={num_classes})",
                key,
                "model.num_classes",
            )


def show_value(value: Any) -> str:
    """A value as the user would write it in YAML (tuples as lists)."""
    if isinstance(value, tuple):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{show_value(k)}: {show_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


# ----- where values came from ----------------------------------------------------------------------------------
def describe_origins(
    keys: Sequence[str], sources: Sequence[tuple[str, Mapping[str, Any]]], overrides: Sequence[str]
) -> str:
    """``set by --set train.iterations=-5`` / ``set in FILE`` / ``the default``; one clause per key when several."""
    named = [key for key in keys if key]
    origins = [value_origin(key, sources, overrides) for key in named]
    if len(origins) == 1:
        return origins[0]
    labels = [label for label, _ in sources]
    return "; ".join(f"{key} {origin}" for key, origin in zip(named, origins, strict=True)) or " / ".join(labels)


def value_origin(key: str, sources: Sequence[tuple[str, Mapping[str, Any]]], overrides: Sequence[str]) -> str:
    """Where the value of the dotted ``key`` came from: the last ``--set`` that touched it, else the last source."""
    parts = key.split(".")
    for item in reversed(overrides):
        name, _, raw = item.partition("=")
        name = name.strip()
        if name == key or name.startswith(f"{key}."):
            return f"set by --set {item}"
        if key.startswith(f"{name}."):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                continue
            if _holds(value, parts[len(name.split(".")) :]):
                return f"set by --set {item}"
    for label, tree in reversed(sources):
        if _holds(tree, parts):
            return label
    return "the default"


def _holds(tree: Any, parts: Sequence[str]) -> bool:
    node = tree
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
