"""Registry of networks: ``MODELS[name](**kwargs) -> nn.Module`` and ``build_model``.

DeepLab-v2 variants (``deeplabv2_*``) and DAFormer networks (``daformer_mitb0`` ... ``daformer_mitb5``: a
SegFormer MiT encoder with DAFormer's decoder; ``daformer_mittiny``: a CPU-sized one for SynthCity).

``deeplabv2_r101`` is the exact community network (43.9 M parameters with 19 classes). ``r50`` and
``r18`` keep its design at smaller depth (their torchvision ImageNet weights load too). ``tiny`` and
``small`` are reduced-width, reduced-depth networks of the same design and output stride, meant to be
trained from scratch on CPU (SynthCity, tests); their sizes and timings are in ``benchmarks/model_speed.py``.

Every variant freezes the BatchNorm affine parameters by default, tiny and small included (the faithful
choice; on a toy 19-class scene task trained from scratch for 400 SGD steps, ``trainable_bn=True`` made no
difference to deeplabv2_tiny: mIoU 0.452 frozen vs 0.450 trainable). Pass ``trainable_bn=True`` to unfreeze.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from camix.errors import ConfigError
from camix.models.daformer import DAFormer
from camix.models.deeplabv2 import BasicBlock, Bottleneck, DeepLabV2
from camix.models.mit import mit
from camix.validation import ConfigKeyError

if TYPE_CHECKING:
    from camix.config import Config

Builder = Callable[..., nn.Module]

MODELS: dict[str, Builder] = {}

ASPP_CHOICES = (2, 4)


def register(fn: Builder) -> Builder:
    """Add a builder to ``MODELS`` under its function name."""
    MODELS[fn.__name__] = fn
    return fn


@register
def deeplabv2_r101(**kwargs: Any) -> DeepLabV2:
    """The community DeepLab-v2 ResNet-101 (the paper's network; loads the MS-COCO/ImageNet inits)."""
    return DeepLabV2(Bottleneck, (3, 4, 23, 3), **kwargs)


@register
def deeplabv2_r50(**kwargs: Any) -> DeepLabV2:
    """DeepLab-v2 on a Caffe-style ResNet-50."""
    return DeepLabV2(Bottleneck, (3, 4, 6, 3), **kwargs)


@register
def deeplabv2_r18(**kwargs: Any) -> DeepLabV2:
    """DeepLab-v2 on ResNet-18 (basic blocks, 512-channel output)."""
    return DeepLabV2(BasicBlock, (2, 2, 2, 2), **kwargs)


@register
def deeplabv2_small(**kwargs: Any) -> DeepLabV2:
    """r101's bottleneck blocks at a quarter of its width, two per stage: 1.2 M parameters, ~4x tiny's compute."""
    return DeepLabV2(Bottleneck, (2, 2, 2, 2), planes=(16, 32, 64, 128), stem_width=16, **kwargs)


@register
def deeplabv2_tiny(**kwargs: Any) -> DeepLabV2:
    """One basic block per stage at a quarter of ResNet-18's width: 0.4 M parameters, the fast CPU default."""
    return DeepLabV2(BasicBlock, (1, 1, 1, 1), planes=(16, 32, 64, 128), stem_width=16, **kwargs)


def _daformer(encoder: str, embed_dim: int = 256, aspp_branches: int = 2, **kwargs: Any) -> DAFormer:
    """A DAFormer network on MiT ``encoder``; ``aspp_branches`` is DeepLab-v2's switch and must stay at 2."""
    if aspp_branches != 2:
        raise ConfigError("model.aspp_branches applies to DeepLab-v2 only; remove it for a daformer_* network")
    return DAFormer(mit(encoder), embed_dim=embed_dim, **kwargs)


@register
def daformer_mitb0(**kwargs: Any) -> DAFormer:
    """DAFormer's decoder on MiT-B0 (3.3 M encoder parameters)."""
    return _daformer("mit_b0", **kwargs)


@register
def daformer_mitb1(**kwargs: Any) -> DAFormer:
    """DAFormer's decoder on MiT-B1 (13.2 M encoder parameters)."""
    return _daformer("mit_b1", **kwargs)


@register
def daformer_mitb2(**kwargs: Any) -> DAFormer:
    """DAFormer's decoder on MiT-B2 (24.2 M encoder parameters)."""
    return _daformer("mit_b2", **kwargs)


@register
def daformer_mitb3(**kwargs: Any) -> DAFormer:
    """DAFormer's decoder on MiT-B3 (44.1 M encoder parameters)."""
    return _daformer("mit_b3", **kwargs)


@register
def daformer_mitb4(**kwargs: Any) -> DAFormer:
    """DAFormer's decoder on MiT-B4 (60.8 M encoder parameters)."""
    return _daformer("mit_b4", **kwargs)


@register
def daformer_mitb5(**kwargs: Any) -> DAFormer:
    """DAFormer (Hoyer et al., CVPR 2022): MiT-B5 (81.44 M) and the 256-channel decoder, 85.16 M with 19 classes."""
    return _daformer("mit_b5", **kwargs)


@register
def daformer_mittiny(**kwargs: Any) -> DAFormer:
    """A CPU-sized DAFormer for SynthCity: a one-block-per-stage MiT at half B0's width, a 32-channel decoder."""
    return _daformer("mit_tiny", embed_dim=32, **kwargs)


def build_model(name: str, num_classes: int = 19, aspp_branches: int = 2, **kwargs: Any) -> nn.Module:
    """Build a registered variant.

    Args:
        name: A key of ``MODELS``, e.g. ``"deeplabv2_r101"`` (the paper), ``"daformer_mitb5"`` (DAFormer) or
            ``"deeplabv2_tiny"`` / ``"daformer_mittiny"`` (CPU).
        num_classes: Number of output classes.
        aspp_branches: DeepLab-v2 only: 2 (sum of the dilation-6 and -12 branches, the released code) or 4 (all).
        **kwargs: Passed to the network, e.g. ``trainable_bn=True`` for DeepLab-v2.

    Raises:
        ConfigError: For an unknown name, an ``aspp_branches`` other than 2 or 4, or a non-positive class count.
    """
    if name not in MODELS:
        raise ConfigError(f"model.name: unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    if aspp_branches not in ASPP_CHOICES:
        raise ConfigError(f"model.aspp_branches: got {aspp_branches!r}; choose 2 (the released code) or 4 (all)")
    if num_classes < 1:
        raise ConfigError(f"model.num_classes: got {num_classes}; it must be a positive number of classes")
    return MODELS[name](num_classes=num_classes, aspp_branches=aspp_branches, variant=name, **kwargs)


def check_model_config(name: str) -> None:
    """``model.name`` is registered; a ConfigKeyError naming the key otherwise."""
    if name not in MODELS:
        raise ConfigKeyError(
            f"config key 'model.name': {name!r} is not a model; choose one of {', '.join(sorted(MODELS))}",
            "model.name",
        )


def output_stride_of(name: str) -> int:
    """The output stride of a registered network, by its family (``daformer_*``: 4; DeepLab-v2: 8)."""
    return DAFormer.output_stride if name.startswith("daformer_") else DeepLabV2.output_stride


def check_hrda_config(cfg: Config) -> None:
    """HRDA's sizes fit the network's output grids: the training crop, the detail crop and the window stride are
    multiples of twice the output stride (so that the detail lands on whole context cells); a ConfigKeyError
    naming the key otherwise."""
    hrda = cfg.model.hrda
    if hrda is None:
        return
    multiple = 2 * output_stride_of(cfg.model.name)
    sizes: list[tuple[str, Any]] = [("data.crop", cfg.data.crop), ("model.hrda.detail_crop", hrda.detail_crop)]
    sizes += [("model.hrda.detail_stride", hrda.detail_stride)] if hrda.detail_stride is not None else []
    for key, size in sizes:
        if size[0] % multiple or size[1] % multiple:
            raise ConfigKeyError(
                f"config key '{key}': {size[0]}x{size[1]} is not a multiple of {multiple} (twice the output stride "
                f"of {cfg.model.name}), which HRDA's fusion needs; round it to a multiple of {multiple}",
                key,
                "model.hrda",
            )
