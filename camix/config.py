"""Configuration: frozen dataclasses loaded from YAML, with ``--set a.b=value`` overrides.

A YAML file may name one ``base:`` file (a path relative to itself) whose values it overrides key by key.
Unknown keys, values of the wrong type and values outside the range a field declares (``PositiveInt``,
``Annotated[float, Range(0, 1)]``, see :mod:`camix.validation`) are :class:`~camix.errors.ConfigError` s
that name the key, the value, what is allowed and where the value came from (a file, ``--set`` or the
default). Sizes are always written ``[width, height]``, like ``1280x720``.

This module holds the schema and :func:`load_config`; reading YAML, ``base:`` chains, overrides and the typed
conversion are :mod:`camix.config_tree`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from camix.config_tree import (  # re-exported: the config API is camix.config
    apply_overrides,
    from_dict,
    merge_all,
    yaml_chain,
)
from camix.config_tree import dump_config as dump_config  # re-exported
from camix.config_tree import to_dict as to_dict  # re-exported
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
    check_ranges,
    describe_origins,
    show_value,
)


@dataclass(frozen=True)
class HrdaConfig:
    """HRDA's multi-resolution training and inference (Hoyer et al., ECCV 2022; ``model.hrda``, null = off).

    Training: the context is the whole training crop (``data.crop``) downscaled by ``context_scale``; the detail is
    a random ``detail_crop`` window of it at full resolution; their logits are fused with a learned scale attention
    (HRDA Sec. 3.2-3.3). Inference: the context of the whole input and the detail from overlapping ``detail_crop``
    windows every ``detail_stride`` pixels. Sizes are [width, height]; the rules between the keys are checked at load
    (``camix.config.check_rules``) and against the network's output stride before a run
    (``camix.models.registry.check_hrda_config``).
    """

    context_scale: PositiveFloat = 0.5  # HRDA's context scale; only 0.5 is supported (the fusion upsamples by 2)
    detail_crop: PositiveSize = (512, 512)  # HRDA's 512x512 detail crop of the 1024x1024 training crop
    detail_loss_weight: Probability = 0.1  # lambda_d of the detail crop's own loss (HRDA: 0.1)
    attention: Literal["classwise", "single"] = "classwise"  # one attention channel per class (HRDA) or one in all
    attention_channels: PositiveInt = 256  # the scale-attention head's width (HRDA: 256 for DAFormer's decoder)
    # inference windows' step; None: half the detail crop (HRDA's 256 for 512 windows)
    detail_stride: PositiveSize | None = None


@dataclass(frozen=True)
class ModelConfig:
    """The segmentation network (see ``camix.models``)."""

    name: str = "deeplabv2_tiny"  # a name from camix.models.MODELS; deeplabv2_r101 for the paper
    # the datasets' 19 trainIds must fit (a folder dataset: its classes file's count); 255 is the ignore label
    num_classes: Annotated[int, Range(2, 254)] = 19
    aspp_branches: Literal[2, 4] = 2  # 2: the released code's sum of the dilation-6 and -12 branches
    pretrained: str | None = None  # local path to an MS-COCO/ImageNet init; never downloaded
    hrda: HrdaConfig | None = None  # HRDA's multi-resolution training and inference around the network; None: off


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset split on disk (layouts in docs/datasets.md)."""

    name: Literal["gta5", "synthia", "cityscapes", "acdc", "dark_zurich", "bdd100k", "folder"] = "gta5"
    root: str = ""  # the dataset folder, e.g. data/gta or data/cityscapes
    split: str = "train"  # cityscapes, acdc, dark_zurich, bdd100k, folder: train | val (| test); gta5/synthia: ignored
    # acdc: fog, night, rain, snow; dark_zurich: day, twilight, night; empty: the layout's default (acdc: all four,
    # dark_zurich: night, the target of Cityscapes -> Dark Zurich)
    conditions: tuple[str, ...] = ()
    # folder datasets (docs/datasets.md): image and label folders under root ({split} is replaced by the split), an
    # image NAME<image_suffix> pairs with the label NAME<label_suffix>, and the classes file (names and id/colour map)
    image_dir: str = "images/{split}"
    label_dir: str = "labels/{split}"
    image_suffix: str = ".png"
    label_suffix: str = ".png"
    classes: str | None = None
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
    # crops are redrawn (up to 10 times) until they hold min_pixels * ratio c pixels (HRDA's 1024x1024 crops of the
    # 2560x1440 GTA5 images: 2.0, the reference's value)
    min_crop_ratio: NonNegativeFloat = 0.5


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
    # thing classes (trainIds); checked against model.num_classes only when the weight is on (check_rules)
    classes: tuple[NonNegativeInt, ...] = (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)
    min_ratio: Annotated[float, Range(0, 1)] = (
        0.75  # a feature cell's downscaled label needs this majority share, else it is ignored
    )


@dataclass(frozen=True)
class MicConfig:
    """Masked Image Consistency (Hoyer et al., CVPR 2023) on top of a mean-teacher method (``method.mic``)."""

    weight: NonNegativeFloat = 0.0  # lambda of the masked consistency loss (MIC: 1); 0 = off
    ratio: Annotated[float, Range(0, 1, high_open=True)] = 0.7  # the share of blocks hidden, in expectation
    block: PositiveInt = 64  # the side of a block, in pixels of the input (the full-resolution crop)
    # MIC's colour augmentation of the target before masking: the reference jitters when U(0,1) > 0.2 (i.e. with
    # probability 0.8) with strength 0.2, and blurs when U(0,1) > 0.5, with draws of its own (not the mixed image's)
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(jitter_p=0.8, jitter_strength=0.2))


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
    # Table 4 "CR": default | none | extended (the authors' disabled groups too, both on the Cityscapes classes), or a
    # mapping {class: [related]} of class ids or of class names ({rider: [bicycle, motorcycle]})
    relations: (
        Literal["default", "none", "extended"]
        | Annotated[dict[int, tuple[int, ...]], ClassIds()]
        | Annotated[dict[str, tuple[str, ...]], ClassIds()]  # names: resolved against the classes (methods)
    ) = "default"
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
    mic: MicConfig = field(default_factory=MicConfig)  # Masked Image Consistency; mic.weight 0 = off


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
    # the teacher's N + 1 passes (clean + noisy, Eq. 5): "separate" forwards, one "batched" forward (per-pass
    # BatchNorm statistics), or that many passes per forward; "auto": separate on the CPU (as fast, a third of the
    # memory; on DAFormer faster), batched on a GPU (the fewest kernels). The results are the same
    # (tests/test_teacher_passes.py); only the speed and the memory differ (benchmarks/RESULTS.md)
    teacher_passes: Literal["auto", "separate", "batched"] | PositiveInt = "auto"
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
    overlap: Annotated[float, Range(0, 1, high_open=True)] = 1 / 3  # of neighbouring sliding windows (HRDA: 0.5)
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


# ----- the rules that relate several fields --------------------------------------------------------------------
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def validate_config(cfg: Config) -> None:
    """Every range and every cross-field rule of a run's config."""
    check_ranges(cfg, num_classes=cfg.model.num_classes)
    check_rules(cfg)


def check_rules(cfg: Config) -> None:
    """The rules that relate several fields of a run's config (each one raises a :class:`ConfigKeyError`).

    What a method needs of the rest of the config (a target dataset, a teacher) is checked with the method
    registry, above this layer: :func:`camix.methods.check_method_config`, called by :mod:`camix.preflight`.
    The value ranges are declared on the fields (:func:`camix.validation.check_ranges`).
    """
    method, train = cfg.method, cfg.train
    if not cfg.out_dir.strip():
        raise ConfigKeyError("config key 'out_dir' is empty; name the run directory (--set out_dir=runs/x)", "out_dir")
    optim = cfg.optim
    if optim.duplicate_backbone_params and (optim.optimizer != "sgd" or optim.norm_weight_decay is not None):
        raise ConfigKeyError(
            "config key 'optim.duplicate_backbone_params': true reproduces the released SGD; it needs "
            f"optim.optimizer=sgd (got {optim.optimizer}) and optim.norm_weight_decay=null (got "
            f"{optim.norm_weight_decay})",
            "optim.duplicate_backbone_params",
            "optim.optimizer",
        )
    if optim.duplicate_backbone_params and train.amp == "fp16":
        raise ConfigKeyError(
            "config key 'optim.duplicate_backbone_params': true cannot train with train.amp=fp16 (the gradient "
            "scaler would unscale a duplicated weight's gradient once per copy); use train.amp=bf16 or none",
            "optim.duplicate_backbone_params",
            "train.amp",
        )
    low, high = method.augment.blur_sigma
    if low > high:
        raise ConfigKeyError(
            f"config key 'method.augment.blur_sigma': [{low:g}, {high:g}] must be [low, high] with low <= high",
            "method.augment.blur_sigma",
        )
    if not DEVICE_PATTERN.fullmatch(train.device):
        raise ConfigKeyError(
            f"config key 'train.device': {train.device!r} is not a device; use auto, cpu, cuda or cuda:N",
            "train.device",
        )
    _check_crop(cfg)
    _check_hrda(cfg)
    _check_class_count(cfg)
    fd = method.feature_distance
    outside = [c for c in fd.classes if c >= cfg.model.num_classes]
    if fd.weight > 0 and outside:
        raise ConfigKeyError(
            f"config key 'method.feature_distance.classes': class id {outside[0]} in {show_value(fd.classes)} is out "
            f"of range; class ids must be in [0, {cfg.model.num_classes}) (model.num_classes={cfg.model.num_classes})",
            "method.feature_distance.classes",
            "model.num_classes",
        )


def _check_hrda(cfg: Config) -> None:
    """``model.hrda``: the supported context scale, a detail crop inside the training crop, windows that cover it."""
    hrda = cfg.model.hrda
    if hrda is None:
        return
    if hrda.context_scale != 0.5:
        raise ConfigKeyError(
            f"config key 'model.hrda.context_scale': {hrda.context_scale:g} is not supported; use 0.5 (the fusion "
            "upsamples the context by 2, as HRDA)",
            "model.hrda.context_scale",
        )
    crop, detail = cfg.data.crop, hrda.detail_crop
    if detail[0] > crop[0] or detail[1] > crop[1]:
        raise ConfigKeyError(
            f"config key 'model.hrda.detail_crop': {show_value(detail)} does not fit the training crop "
            f"(data.crop={show_value(crop)}); it must be at most {crop[0]}x{crop[1]}",
            "model.hrda.detail_crop",
            "data.crop",
        )
    stride = hrda.detail_stride
    if stride is not None and (stride[0] > detail[0] or stride[1] > detail[1]):
        raise ConfigKeyError(
            f"config key 'model.hrda.detail_stride': {show_value(stride)} is larger than the detail windows "
            f"(model.hrda.detail_crop={show_value(detail)}) and would leave gaps; it must be at most "
            f"{detail[0]}x{detail[1]}",
            "model.hrda.detail_stride",
            "model.hrda.detail_crop",
        )
    if cfg.optim.duplicate_backbone_params:
        raise ConfigKeyError(
            "config key 'optim.duplicate_backbone_params': true reproduces the released DeepLab-v2 optimiser, which "
            "knows no HRDA attention head; use optim.duplicate_backbone_params=false or model.hrda=null",
            "optim.duplicate_backbone_params",
            "model.hrda",
        )


def _check_class_count(cfg: Config) -> None:
    """Without a folder dataset the labels are the 19 Cityscapes trainIds, so the network needs at least 19 classes
    (a folder dataset's classes file sets its own count, checked against it in :mod:`camix.preflight`)."""
    own_classes = "folder" in (cfg.data.source.name, cfg.data.val.name)  # the labels' classes: a classes file
    paper_metrics = [m for m in cfg.train.best_metrics if m != "miou19"]
    if own_classes and paper_metrics:
        raise ConfigKeyError(
            f"config key 'train.best_metrics': {paper_metrics[0]} is a mean over Cityscapes classes; a folder dataset "
            "has its own classes (only miou19, the mean over every class, applies)",
            "train.best_metrics",
        )
    if cfg.model.num_classes < 19 and not own_classes:
        raise ConfigKeyError(
            f"config key 'model.num_classes': {cfg.model.num_classes} is out of range; must be an integer in "
            "[19, 254] for the Cityscapes classes (a folder dataset's classes file sets fewer)",
            "model.num_classes",
        )


def _check_crop(cfg: Config) -> None:
    """Training crops fit inside the resized training images (when their size is fixed by ``size``)."""
    crop = cfg.data.crop
    for name in ("source", "target"):
        dataset = getattr(cfg.data, name)
        if dataset is None:
            continue
        if dataset.label_size == "native":
            raise ConfigKeyError(
                f"config key 'data.{name}.label_size': 'native' cannot be combined with training crops; use 'image'",
                f"data.{name}.label_size",
            )
        if dataset.size is not None and (crop[0] > dataset.size[0] or crop[1] > dataset.size[1]):
            raise ConfigKeyError(
                f"config key 'data.crop': {show_value(crop)} is larger than the resized {name} images "
                f"(data.{name}.size={show_value(dataset.size)}); it must be at most "
                f"{dataset.size[0]}x{dataset.size[1]}",
                "data.crop",
                f"data.{name}.size",
            )
