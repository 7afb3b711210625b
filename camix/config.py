"""Configuration: frozen dataclasses loaded from YAML, with ``--set a.b=value`` overrides.

A YAML file may name one ``base:`` file (a path relative to itself) whose values it overrides key by key.
Unknown keys and values of the wrong type are :class:`~camix.errors.ConfigError` s that name the key and
the file. Sizes are always written ``[width, height]``, like ``1280x720``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from camix.errors import ConfigError

PACKAGED_CONFIGS = Path(__file__).parent / "configs"

Size = tuple[int, int]


@dataclass(frozen=True)
class ModelConfig:
    """The segmentation network (see ``camix.models``)."""

    name: str = "deeplabv2_tiny"  # a name from camix.models.MODELS; deeplabv2_r101 for the paper
    num_classes: int = 19
    aspp_branches: Literal[2, 4] = 2  # 2: the released code's sum of the dilation-6 and -12 branches
    pretrained: str | None = None  # local path to an MS-COCO/ImageNet init; never downloaded


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset split on disk (layouts in DESIGN section 4)."""

    name: Literal["gta5", "synthia", "cityscapes"] = "gta5"
    root: str = ""  # the dataset folder, e.g. data/gta or data/cityscapes
    split: str = "train"  # cityscapes: train | val; ignored by gta5/synthia
    size: Size | None = None  # [width, height] to resize to before cropping; None keeps the native size
    scale: float = 1.0  # multiplies the native size when `size` is None (Cityscapes target_train_scale)
    label_size: Literal["image", "native"] = "image"  # evaluation labels: resized with the image, or full res
    list_file: str | None = None  # optional text file of image names (relative to the image folder)
    limit: int | None = None  # use only the first N images (quick runs)


@dataclass(frozen=True)
class DataConfig:
    """What the loop trains and evaluates on."""

    source: DatasetConfig = field(default_factory=DatasetConfig)
    target: DatasetConfig | None = None  # unlabelled target train split; None for source-only and oracle
    val: DatasetConfig = field(default_factory=lambda: DatasetConfig(name="cityscapes", split="val"))
    crop: Size = (512, 512)  # [width, height] of the random training crops (source and target)
    batch_size: int = 2  # images per domain per iteration (per process under torchrun)
    workers: int = 2  # DataLoader worker processes
    prior: str | None = None  # spatial-prior file; None builds and caches it next to the run data


@dataclass(frozen=True)
class AugmentConfig:
    """Strong augmentation of the mixed image (DACS): labels and masks are never jittered."""

    jitter_p: float = 0.8
    jitter_strength: float = 0.25
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.15, 1.15)
    flip: bool = False


@dataclass(frozen=True)
class MethodConfig:
    """The training method and its ablation switches (DESIGN sections 2 and 3)."""

    name: Literal["source_only", "mean_teacher"] = "source_only"
    mix: Literal["none", "cutmix", "cowmix", "classmix", "inverse_classmix", "camix"] = "none"
    consistency: Literal["src", "ce", "mse"] = "ce"  # Table 5
    lambda_con: float = 1.0
    confidence_weight: Literal["uniform", "pixel", "none"] = "uniform"  # DACS's weight of pseudo-labels
    pseudo_threshold: float = 0.968
    ema_alpha: float = 0.99
    teacher_train_mode: bool = True  # the released code runs the teacher with batch statistics
    warmup_iterations: int = 0  # ClassMix (DACS) before CAMix: 110k for GTA5, 40k for SYNTHIA in the released code
    spatial_prior: bool = True  # Table 4 "SP"
    # Table 4 "CR": default | none | extended (the authors' disabled groups too), or a mapping {class: [related]}
    relations: Literal["default", "none", "extended"] | dict[int, tuple[int, ...]] = "default"
    significance_mask: bool = True  # Table 6 "SigMask" level (used by the SRC loss; mix none = no In-Out levels)
    noise_passes: int = 8  # N stochastic teacher passes
    noise_std: float = 0.1  # Gaussian noise, in units of the [0, 1] intensity range
    noise_clip: float = 0.2  # noise clipped to +-noise_clip of the intensity range
    official_noise: bool = False  # reproduce the released code: every pass adds the same -0.2
    threshold_beta: float = 0.75
    threshold_gamma: float = -5.0
    threshold_ramp: int = 130000
    k_sup: float | None = None  # None: ln(num_classes)
    threshold_form: Literal["code", "paper"] = "code"  # Eq. 7 as the released code computes it, or as printed
    official_src: bool = False  # reproduce the released code: scalar mean CE * U_M / sum(U_M)
    classmix_count_ignore: bool = False  # reproduce the released code: ClassMix counts the ignore label
    cowmix_sigma: float = 16.0
    cowmix_p: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    augment_source: bool = False  # the strong augmentation on the labelled batch too (source-only + aug diagnostic)


@dataclass(frozen=True)
class OptimConfig:
    """SGD with poly decay; the classifier learns ``classifier_lr_mult`` times faster than the backbone."""

    lr: float = 2.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    power: float = 0.9
    classifier_lr_mult: float = 10.0


@dataclass(frozen=True)
class TrainConfig:
    """The loop's schedule and engine settings."""

    iterations: int = 250000
    eval_every: int = 5000  # 0 disables periodic evaluation
    checkpoint_every: int = 5000
    log_every: int = 50
    keep_checkpoints: int = 3  # numbered checkpoints kept besides last.pt and best.pt
    debug_every: int = 0  # PNG debug panels every N iterations; 0 disables them
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = True
    threads: int | None = None  # torch CPU threads; None leaves torch's default
    sync_bn: bool = False  # SyncBatchNorm under torchrun


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol."""

    model: Literal["student", "teacher"] = "student"
    flip: bool = False
    sliding_window: Size | None = None  # [width, height] window; None evaluates whole images
    batch_size: int = 1


@dataclass(frozen=True)
class Config:
    """A whole run."""

    seed: int = 0
    out_dir: str = "runs/default"  # the run directory: config.yaml, metrics.jsonl, checkpoints/
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


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
    raise ConfigError(f"config file {path} not found (packaged configs live in {PACKAGED_CONFIGS})")


def load_yaml_tree(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config and its optional ``base:`` chain into one nested dict (later files win)."""
    file = resolve_config_path(path).resolve()
    if file in _seen:
        raise ConfigError(f"{file}: circular 'base:' chain")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of keys, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = Path(base) if Path(base).is_absolute() else file.parent / base
    return merge_trees(load_yaml_tree(base_path, (*_seen, file)), data)


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
            value = yaml.safe_load(raw) if raw.strip() else None
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
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else str(unknown[0])
        raise ConfigError(f"unknown config key '{key}' (valid keys here: {', '.join(sorted(names))})")
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
            raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        return _convert_tuple(args, value, key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return {_convert(args[0], k, key): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    return _convert_scalar(tp, value, key)


def _first_that_fits(options: list[Any], value: Any, key: str) -> Any:
    for option in options:
        try:
            return _convert(option, value, key)
        except ConfigError:
            continue
    raise ConfigError(f"config key '{key}': {value!r} has the wrong type")


def _convert_tuple(args: tuple[Any, ...], value: Any, key: str) -> tuple[Any, ...]:
    if isinstance(value, str) and "x" in value:  # "1280x720"
        value = value.split("x")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, key) for v in value)
    if len(value) != len(args):
        raise ConfigError(f"config key '{key}': expected {len(args)} values, got {len(value)}")
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
    raise ConfigError(f"config key '{key}': expected {getattr(tp, '__name__', tp)}, got {value!r}")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a :class:`Config` from a YAML file (or the defaults) and ``--set`` overrides."""
    tree = load_yaml_tree(path) if path is not None else {}
    tree = apply_overrides(tree, overrides)
    source = f" (in {path})" if path is not None else ""
    try:
        return from_dict(Config, tree)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{source}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict (tuples as lists) of a config, for YAML/JSON output."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return typing.cast(dict[str, Any], plain(cfg))


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text (loadable again with :func:`load_config`)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


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
