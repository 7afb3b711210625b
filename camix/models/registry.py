"""Registry of DeepLab-v2 variants: ``MODELS[name](**kwargs) -> DeepLabV2`` and ``build_model``.

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
from typing import Any

from camix.errors import ConfigError
from camix.models.deeplabv2 import BasicBlock, Bottleneck, DeepLabV2

Builder = Callable[..., DeepLabV2]

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


def build_model(name: str, num_classes: int = 19, aspp_branches: int = 2, **kwargs: Any) -> DeepLabV2:
    """Build a registered variant.

    Args:
        name: A key of ``MODELS``, e.g. ``"deeplabv2_r101"`` (the paper) or ``"deeplabv2_tiny"`` (CPU).
        num_classes: Number of output classes.
        aspp_branches: 2 (sum of the dilation-6 and -12 branches, the released code) or 4 (all four).
        **kwargs: Passed to ``DeepLabV2``, e.g. ``trainable_bn=True``.

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
