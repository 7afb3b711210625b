"""Configuration: frozen dataclasses loaded from YAML, with ``--set a.b=value`` overrides.

A YAML file may name one ``base:`` file (a path relative to itself) whose values it overrides key by key.
Unknown keys, values of the wrong type and values outside the range a field declares (``PositiveInt``,
``Annotated[float, Range(0, 1)]``, see :mod:`camix.validation`) are :class:`~camix.errors.ConfigError` s
that name the key, the value, what is allowed and where the value came from (a file, ``--set`` or the
default). Sizes are always written ``[width, height]``, like ``1280x720``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from camix.errors import ConfigError
from camix.validation import (
    ClassIds,
    ConfigKeyError,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PositiveSize,
    Probability,
    Range,
    describe_origins,
    validate_config,
)

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


@dataclass(frozen=True)
class ModelConfig:
    """The segmentation network (see ``camix.models``)."""

    name: str = "deeplabv2_tiny"  # a name from camix.models.MODELS; deeplabv2_r101 for the paper
    num_classes: Annotated[int, Range(19, 254)] = 19  # the datasets' 19 trainIds must fit; 255 is the ignore label
    aspp_branches: Literal[2, 4] = 2  # 2: the released code's sum of the dilation-6 and -12 branches
    pretrained: str | None = None  # local path to an MS-COCO/ImageNet init; never downloaded


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset split on disk (layouts in docs/datasets.md)."""

    name: Literal["gta5", "synthia", "cityscapes"] = "gta5"
    root: str = ""  # the dataset folder, e.g. data/gta or data/cityscapes
    split: str = "train"  # cityscapes: train | val; ignored by gta5/synthia
    size: PositiveSize | None = None  # [width, height] to resize to before cropping; None keeps the native size
    scale: PositiveFloat = 1.0  # multiplies the native size when `size` is None (Cityscapes target_train_scale)
    label_size: Literal["image", "native"] = "image"  # evaluation labels: resized with the image, or full res
    list_file: str | None = None  # optional text file of image names (relative to the image folder)
    limit: PositiveInt | None = None  # use only the first N images (quick runs)


@dataclass(frozen=True)
class RareClassConfig:
    """DAFormer's Rare Class Sampling of source images (DAFormer Sec. 3.3; ``data.rcs``)."""

    temperature: PositiveFloat = 0.01  # T of the softmax over (1 - class frequency): smaller = rarer classes favoured
    min_pixels: NonNegativeInt = (
        3000  # an image is drawn for class c only if it holds at least this many c pixels (native res)
    )
    min_crop_ratio: Annotated[float, Range(0, 1)] = (
        0.5  # crops are redrawn (up to 10 times) until they hold min_pixels * ratio c pixels
    )


@dataclass(frozen=True)
class DataConfig:
    """What the loop trains and evaluates on."""

    source: DatasetConfig = field(default_factory=DatasetConfig)
    target: DatasetConfig | None = None  # unlabelled target train split; None for source-only and oracle
    val: DatasetConfig = field(default_factory=lambda: DatasetConfig(name="cityscapes", split="val"))
    crop: PositiveSize = (512, 512)  # [width, height] of the random training crops (source and target)
    batch_size: PositiveInt = 2  # images per domain per iteration (per process under torchrun)
    workers: NonNegativeInt = 2  # DataLoader worker processes
    prior: str | None = None  # spatial-prior file; None builds and caches it next to the run data
    # additive (Laplace) smoothing of the computed prior's counts: with 0, a class never seen at a pixel in the
    # source gets Q = 0 there and is vetoed whatever the teacher says (docs/fidelity.md)
    prior_smoothing: NonNegativeFloat = 1.0
    rcs: RareClassConfig | None = None  # Rare Class Sampling of the source images (DAFormer); None: uniform


@dataclass(frozen=True)
class AugmentConfig:
    """Strong augmentation of the mixed image (DACS): labels and masks are never jittered."""

    jitter_p: Probability = 0.8
    jitter_strength: Annotated[float, Range(0, 1)] = 0.25  # factors in [1 - s, 1 + s]
    blur_p: Probability = 0.5
    blur_sigma: tuple[PositiveFloat, PositiveFloat] = (0.15, 1.15)  # [low, high]
    flip: bool = False
    per_batch: bool = False  # the released code: one "jitter or not" and one "blur or not" draw per batch
    random_order: bool = False  # kornia's ColorJitter (released code): the four jitter ops in a random order per image


@dataclass(frozen=True)
class FeatureDistanceConfig:
    """DAFormer's Thing-Class ImageNet Feature Distance on the source images (DAFormer Sec. 3.3)."""

    weight: NonNegativeFloat = 0.0  # lambda_FD (DAFormer: 0.005); 0 disables it (and the frozen ImageNet copy)
    classes: Annotated[tuple[int, ...], ClassIds()] = (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)  # thing classes (trainIds)
    min_ratio: Annotated[float, Range(0, 1)] = (
        0.75  # a feature cell's downscaled label needs this majority share, else it is ignored
    )


@dataclass(frozen=True)
class MethodConfig:
    """The training method and its ablation switches (the fidelity switches: docs/fidelity.md)."""

    name: Literal["source_only", "mean_teacher"] = "source_only"
    mix: Literal["none", "cutmix", "cowmix", "classmix", "inverse_classmix", "camix"] = "none"
    consistency: Literal["src", "ce", "mse"] = "ce"  # Table 5
    lambda_con: NonNegativeFloat = 1.0
    confidence_weight: Literal["uniform", "pixel", "none"] = "uniform"  # DACS's weight of pseudo-labels
    confidence_per_image: bool = True  # "uniform": the confident fraction per image; false: over the batch (released)
    pseudo_threshold: Probability = 0.968
    ignore_top: NonNegativeInt = 0  # pseudo-label weight 0 on the top rows of target crops (DAFormer: 15)
    ignore_bottom: NonNegativeInt = 0  # ... and on the bottom rows, the ego vehicle (DAFormer: 120)
    ema_alpha: Probability = 0.99  # the EMA decay's ceiling
    teacher_train_mode: bool = True  # the released code runs the teacher with batch statistics
    # ClassMix (DACS) before the method's own mask, for every mix mode as in the released code (110k for GTA5, 40k
    # for SYNTHIA there); not in the paper
    warmup_iterations: NonNegativeInt = 0
    spatial_prior: bool = True  # Table 4 "SP"
    # Table 4 "CR": default | none | extended (the authors' disabled groups too), or a mapping {class: [related]}
    relations: Literal["default", "none", "extended"] | Annotated[dict[int, tuple[int, ...]], ClassIds()] = "default"
    significance_mask: bool = True  # Table 6 "SigMask" level (used by the SRC loss; mix none = no In-Out levels)
    noise_passes: PositiveInt = 8  # N stochastic teacher passes
    noise_std: NonNegativeFloat = 0.1  # Gaussian noise, in units of the [0, 1] intensity range
    noise_clip: NonNegativeFloat = 0.2  # noise clipped to +-noise_clip of the intensity range
    official_noise: bool = False  # reproduce the released code: every pass adds the same -0.2
    threshold_beta: Probability = 0.75
    threshold_gamma: Annotated[float, Range(high=0)] = -5.0
    # Eq. 7's t_max; None: the run's train.iterations (the released code: 130k/10k); 0: no ramp
    threshold_ramp: NonNegativeInt | None = None
    k_sup: PositiveFloat | None = None  # None: ln(num_classes)
    threshold_form: Literal["code", "paper"] = "code"  # Eq. 7 as the released code computes it, or as printed
    official_src: bool = False  # reproduce the released code: scalar mean CE * U_M / sum(U_M)
    # the released code: entropy and threshold at the logits' resolution, the 0/1 mask upsampled bilinearly (soft U_T;
    # a probability that underflows to 0 gives NaN entropy, hence U = 0); "input": probabilities upsampled first
    significance_resolution: Literal["input", "logits"] = "input"
    # the released Table 5 MSE: student softmax on the mixed image vs the teacher's soft prediction of the unmixed
    # target, mean over B*C*H*W, times the batch's confident fraction; false: vs the one-hot mixed label
    official_mse: bool = False
    classmix_count_ignore: bool = False  # reproduce the released code: ClassMix counts the ignore label
    cowmix_sigma: PositiveFloat = 16.0
    cowmix_p: Probability = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    feature_distance: FeatureDistanceConfig = field(default_factory=FeatureDistanceConfig)
    augment_source: bool = False  # the strong augmentation on the labelled batch too (source-only + aug diagnostic)


@dataclass(frozen=True)
class OptimConfig:
    """SGD (or AdamW) with poly decay after an optional linear warm-up; the head learns ``classifier_lr_mult`` x."""

    lr: PositiveFloat = 2.5e-4
    momentum: Annotated[float, Range(0, 1, high_open=True)] = 0.9
    weight_decay: NonNegativeFloat = 5e-4
    power: NonNegativeFloat = 0.9
    classifier_lr_mult: PositiveFloat = 10.0
    # the released code's optimiser: every backbone weight listed once per module containing it (3x for block convs,
    # 4x for downsample convs) under PyTorch's loop SGD, so the backbone moves ~3x faster (docs/fidelity.md)
    duplicate_backbone_params: bool = False
    optimizer: Literal["sgd", "adamw"] = "sgd"  # adamw: DAFormer's recipe
    betas: tuple[Annotated[float, Range(0, 1, high_open=True)], Annotated[float, Range(0, 1, high_open=True)]] = (
        0.9,
        0.999,
    )  # AdamW's betas
    warmup_iterations: NonNegativeInt = 0  # linear learning-rate warm-up before the poly decay (DAFormer: 1500)
    warmup_ratio: Annotated[float, Range(0, 1)] = 1e-6  # the warm-up starts at this fraction of the scheduled rate
    norm_weight_decay: NonNegativeFloat | None = None  # weight decay of the backbone's norm layers; None: weight_decay


@dataclass(frozen=True)
class TrainConfig:
    """The loop's schedule and engine settings."""

    iterations: PositiveInt = 250000
    eval_every: NonNegativeInt = 5000  # 0 disables periodic evaluation (the last iteration is always evaluated)
    # besides best.pt (by mIoU19): best_<metric>.pt per metric listed (the released SYNTHIA code keeps mIoU16 and
    # mIoU13 separately)
    best_metrics: tuple[Literal["miou19", "miou16", "miou13"], ...] = ()
    checkpoint_every: NonNegativeInt = 5000  # 0: checkpoints only at the end and when stopped
    log_every: PositiveInt = 50
    keep_checkpoints: NonNegativeInt = 3  # numbered checkpoints kept besides last.pt and best.pt
    debug_every: NonNegativeInt = 0  # PNG debug panels every N iterations; 0 disables them
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = True
    threads: PositiveInt | None = None  # torch CPU threads; None leaves torch's default
    sync_bn: bool = False  # SyncBatchNorm under torchrun
    tensorboard: bool = False  # also write losses, evaluations and debug panels to <out_dir>/tensorboard (rank 0)
    dist_timeout: PositiveFloat = 300.0  # seconds a rank waits for the others in a collective before naming it


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol."""

    model: Literal["student", "teacher"] = "student"
    flip: bool = False
    sliding_window: PositiveSize | None = None  # [width, height] window; None evaluates whole images
    batch_size: PositiveInt = 1


@dataclass(frozen=True)
class Config:
    """A whole run."""

    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
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


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    checks: Sequence[Callable[[Config], None]] = (),
) -> Config:
    """Load a :class:`Config` from a YAML file (or the defaults) and ``--set`` overrides, and validate it.

    Args:
        path: the YAML file (its ``base:`` chain is followed); None: the defaults.
        overrides: ``KEY=VALUE`` strings.
        checks: more checks of the loaded config (e.g. files it names); their :class:`ConfigKeyError` s get the
            same note of where each value came from.

    Raises:
        ConfigError: one line naming the key, the value, what is allowed and where the value came from.
    """
    chain = yaml_chain(path) if path is not None else []
    sources = [(f"set in {file}", data) for file, data in chain]
    return config_from_tree(merge_all([data for _, data in chain]), overrides, sources, checks)


def merge_all(trees: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`merge_trees` of several trees, later ones winning."""
    merged: dict[str, Any] = {}
    for tree in trees:
        merged = merge_trees(merged, tree)
    return merged


def config_from_tree(
    tree: Mapping[str, Any],
    overrides: Sequence[str] = (),
    sources: Sequence[tuple[str, Mapping[str, Any]]] = (),
    checks: Sequence[Callable[[Config], None]] = (),
) -> Config:
    """Build, range-check and rule-check a :class:`Config` from a tree plus overrides.

    Args:
        tree: the nested keys (from YAML files or a checkpoint).
        overrides: ``--set`` overrides applied on top.
        sources: (label, keys) pairs saying where values came from (``set in FILE``), the later winning;
            used in error messages only.
        checks: further checks (see :func:`load_config`).
    """
    merged = apply_overrides(dict(tree), overrides)
    try:
        cfg = from_dict(Config, merged)
        validate_config(cfg)
        for check in checks:
            check(cfg)
    except ConfigKeyError as exc:
        raise ConfigError(f"{exc} ({describe_origins(exc.keys, sources, overrides)})") from None
    return cfg


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
