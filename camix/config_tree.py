"""Config trees: YAML files (sizes written ``WxH`` stay text), ``base:`` chains, ``--set`` overrides, and the typed
conversion of a nested dict into frozen dataclasses and back. The schema itself is :mod:`camix.config`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from camix.errors import ConfigError
from camix.validation import ConfigKeyError

PACKAGED_CONFIGS = Path(__file__).parent / "configs"

Size = tuple[int, int]
# "1280x720", "0x0", "-1x5": a size written WIDTHxHEIGHT (YAML reads it as text, not as a hex number); the one
# pattern of the command line (parse_size) and of config files (_convert_tuple), whose ranges are checked later
SIZE_TEXT = re.compile(r"^\s*(-?\d+)\s*[xX×]\s*(-?\d+)\s*$")


def split_size(text: str) -> Size | None:
    """``"1024x512"`` -> (1024, 512), any whole numbers; None when ``text`` is not of that form."""
    match = SIZE_TEXT.fullmatch(text)
    return (int(match[1]), int(match[2])) if match is not None else None


def parse_size(text: str, minimum: Size = (1, 1)) -> Size:
    """``"1024x512"`` -> (1024, 512): every size on the command line is WIDTHxHEIGHT.

    Raises:
        ValueError: not two whole numbers joined by ``x``, or smaller than ``minimum`` = (width, height).
    """
    size = split_size(text)
    if size is None or size[0] < minimum[0] or size[1] < minimum[1]:
        least = "" if minimum == (1, 1) else f" of at least {minimum[0]}x{minimum[1]}"
        raise ValueError(f"expected WIDTHxHEIGHT like 1024x512{least}, got {text!r}")
    return size


class _Loader(yaml.SafeLoader):
    """YAML's safe loader reading ``0x0`` and ``1280x720`` as text (sizes), not as hexadecimal numbers."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in "-0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:str", SIZE_TEXT))


def parse_yaml(text: str) -> Any:
    """Parse YAML text like ``yaml.safe_load``, but sizes written ``WxH`` stay text."""
    return yaml.load(text, Loader=_Loader)


T = TypeVar("T")


def resolve_config_path(path: str | Path) -> Path:
    """Find a config file: as given, else inside the packaged ``camix/configs`` (``configs/x.yaml`` works anywhere)."""
    given = Path(path)
    if given.is_file():
        return given
    parts = given.parts[1:] if given.parts[:1] == ("configs",) else given.parts
    packaged = PACKAGED_CONFIGS.joinpath(*parts) if parts else PACKAGED_CONFIGS
    if not given.is_absolute() and packaged.is_file():
        return packaged
    if given.is_dir():
        raise ConfigError(f"config file {path} is a folder; give a YAML file such as {path}/config.yaml")
    raise ConfigError(f"config file {path} not found (packaged configs live in {PACKAGED_CONFIGS})")


def load_yaml_tree(path: str | Path) -> dict[str, Any]:
    """Read a YAML config and its optional ``base:`` chain into one nested dict (later files win)."""
    tree: dict[str, Any] = {}
    for _, data in yaml_chain(path):
        tree = merge_trees(tree, data)
    return tree


def yaml_chain(path: str | Path, _seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """The files of a ``base:`` chain and their keys (without ``base``), the farthest base first."""
    file = resolve_config_path(path).resolve()
    if file in _seen:
        raise ConfigError(f"{file}: circular 'base:' chain")
    try:
        data = parse_yaml(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"config file {file} cannot be read ({reason}); check the path and its permissions") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of keys, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return [(file, data)]
    base_path = Path(base) if Path(base).is_absolute() else file.parent / base
    return [*yaml_chain(base_path, (*_seen, file)), (file, data)]


def merge_trees(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, everything else in ``over`` replaces ``base``."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_trees(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_overrides(tree: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a nested dict; returns a new dict."""
    result = dict(tree)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.iterations=1000")
        try:
            value = parse_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        result = merge_trees(result, _nest(key.strip().split("."), value))
    return result


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    return {keys[0]: value} if len(keys) == 1 else {keys[0]: _nest(keys[1:], value)}


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking every key and type.

    Args:
        cls: a (frozen) dataclass type.
        data: the mapping; ``None`` gives the defaults.
        where: the dotted key prefix and source used in error messages.
    """
    data = data or {}
    if not isinstance(data, Mapping):
        raise ConfigKeyError(f"{where or 'config'}: expected a mapping, got {data!r}", where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else str(unknown[0])
        raise ConfigKeyError(f"unknown config key '{key}' (valid keys here: {', '.join(sorted(names))})", key)
    kwargs = {name: _convert(hints[name], data[name], f"{where}.{name}" if where else name) for name in data}
    return cls(**kwargs)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, key) if len(options) == 1 else _first_that_fits(options, value, key)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)  # type: ignore[arg-type]
    if origin is Literal:
        if value not in args:
            raise ConfigKeyError(f"config key '{key}': {value!r} is not one of {', '.join(map(repr, args))}", key)
        return value
    if origin is tuple:
        return _convert_tuple(args, value, key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigKeyError(f"config key '{key}': expected a mapping, got {value!r}", key)
        return {_convert(args[0], k, key): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    return _convert_scalar(tp, value, key)


def _first_that_fits(options: list[Any], value: Any, key: str) -> Any:
    for option in options:
        try:
            return _convert(option, value, key)
        except ConfigError:
            continue
    raise ConfigKeyError(f"config key '{key}': {value!r} has the wrong type", key)


def _convert_tuple(args: tuple[Any, ...], value: Any, key: str) -> tuple[Any, ...]:
    if isinstance(value, str) and (size := split_size(value)) is not None:  # "1280x720"
        value = list(size)
    if not isinstance(value, (list, tuple)):
        raise ConfigKeyError(f"config key '{key}': expected a list, got {value!r}", key)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, key) for v in value)
    if len(value) != len(args):
        raise ConfigKeyError(f"config key '{key}': expected {len(args)} values, got {len(value)}", key)
    return tuple(_convert(a, v, key) for a, v in zip(args, value, strict=True))


def _convert_scalar(tp: Any, value: Any, key: str) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigKeyError(f"config key '{key}': expected {getattr(tp, '__name__', tp)}, got {value!r}", key)


def merge_all(trees: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`merge_trees` of several trees, later ones winning."""
    merged: dict[str, Any] = {}
    for tree in trees:
        merged = merge_trees(merged, tree)
    return merged


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict (tuples as lists) of a config, for YAML/JSON output."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return typing.cast(dict[str, Any], plain(cfg))


def replace(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` with dotted keys: ``replace(cfg, **{"train.iterations": 10})``."""
    nested: dict[str, Any] = {}
    for dotted, value in changes.items():
        nested = merge_trees(nested, _nest(dotted.split("."), value))
    return _replace_nested(cfg, nested)


def _replace_nested(obj: Any, changes: Mapping[str, Any]) -> Any:
    updates = {}
    for name, value in changes.items():
        current = getattr(obj, name)
        is_nested = isinstance(value, Mapping) and dataclasses.is_dataclass(current)
        updates[name] = _replace_nested(current, value) if is_nested else value
    return dataclasses.replace(obj, **updates)


def dump_config(cfg: Any) -> str:
    """A resolved config (a config dataclass) as YAML text, loadable again with ``camix.config.load_config``."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
