"""HRDA (Hoyer et al., "HRDA: Context-Aware High-Resolution Domain-Adaptive Semantic Segmentation", ECCV 2022)
around any registered network: one encoder and the network's own decoder applied to a low-resolution context and a
high-resolution detail, fused with a learned scale attention (HRDA Sec. 3.2-3.3, :func:`camix.functional.hrda_fuse`).

:class:`HRDA` keeps the network under ``base.`` (its head prefix becomes ``base.<head>``) and the attention head
under ``attention.``; both heads learn ``optim.classifier_lr_mult`` times faster, as the network's own head does.
:func:`build_network` is the one builder of a run's network (plain or wrapped) from ``model``'s config.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camix import functional as Fn
from camix.config import HrdaConfig, ModelConfig
from camix.models.daformer import DAFormer, DAFormerHead
from camix.models.deeplabv2 import ClassifierModule, DeepLabV2
from camix.models.registry import build_model


class HrdaOutput(NamedTuple):
    """HRDA's training forward (with a detail box): logits on the output grids, before any upsampling."""

    fused: Tensor  # [B, C, H/s, W/s] the fused prediction over the whole training crop (s: the output stride)
    detail: Tensor  # [B, C, hh/s, ww/s] the detail crop's own prediction
    attention: Tensor  # [B, C or 1, H/2s, W/2s] the scale attention, after the sigmoid
    features: Tensor  # the context's feature map that DAFormer's feature distance compares


def attention_head(base: nn.Module, cfg: HrdaConfig) -> nn.Module:
    """HRDA's scale-attention head for ``base``: its decoder design with C (class-wise) or 1 output channels.

    DAFormer: the decoder at ``attention_channels`` with a 1x1 conv fusion instead of the ASPP (HRDA Sec. 3.3).
    DeepLab-v2: its dilated-conv classifier (the network has no separate width to set; ``attention_channels`` is
    unused), initialised like it, so the attention starts near sigmoid(0) = 0.5.
    """
    out = cast(int, base.num_classes) if cfg.attention == "classwise" else 1
    if isinstance(base, DAFormer):
        return DAFormerHead(base.backbone.embed_dims, out, cfg.attention_channels, fusion="conv")
    if isinstance(base, DeepLabV2):
        return ClassifierModule(base.inplanes, out, base.aspp_branches)
    raise TypeError(f"HRDA knows no attention head for {type(base).__name__}")


def on_grid(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """``logits`` resampled to exactly ``size`` when they are not (bilinear, ``align_corners=True``, as camix upsamples
    logits everywhere). camix's Caffe-style DeepLab-v2 gives ``H/8 + 1`` cells where the fusion needs ``H/8`` (the
    HRDA reference's DeepLab-v2 gives ``H/8``); DAFormer's grids are exact and pass through untouched."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


class HRDA(nn.Module):
    """A network with HRDA's context, detail and scale attention.

    ``forward(x, detail_box=(top, left))`` (training): the context is ``x`` downscaled by 0.5 (bilinear), the detail
    the ``detail_crop`` window of ``x`` at ``(top, left)`` (multiples of twice the output stride); returns
    :class:`HrdaOutput`. ``forward(x)`` (inference: evaluation, prediction, the teacher's pseudo-labels): the context
    of the whole ``x`` and the detail from overlapping ``detail_crop`` windows every ``detail_stride`` pixels, run as
    one batch and averaged (:func:`camix.functional.slide_average`), fused with the attention everywhere; returns the
    fused logits ``[B, C, ceil(H/s), ceil(W/s)]`` (and the context's features with ``return_features``), like the
    plain network, so every caller upsamples them the same way. An input whose sides are not multiples of ``2s`` is
    zero-padded (the mean colour, inputs being mean-subtracted) and the logits cropped back.

    The windows are batched window-major, so a batch of interleaved teacher passes
    (:func:`camix.models.batchnorm.interleave`) stays interleaved and each pass keeps its own BatchNorm statistics.
    """

    def __init__(self, base: nn.Module, cfg: HrdaConfig) -> None:
        super().__init__()
        self.base = base
        self.attention = attention_head(base, cfg)
        self.num_classes, self.variant = base.num_classes, base.variant
        self.output_stride = cast(int, base.output_stride)
        head = cast(str, base.head_prefix)
        self.head_prefix = (f"base.{head}", "attention.")  # both heads at optim.classifier_lr_mult
        self.detail_crop = (cfg.detail_crop[1], cfg.detail_crop[0])  # (height, width)
        stride = cfg.detail_stride or (cfg.detail_crop[0] // 2, cfg.detail_crop[1] // 2)
        self.detail_stride = (stride[1], stride[0])

    @property
    def net(self) -> Any:
        """The wrapped network, with its ``encode``, ``decode`` and ``last_feature``."""
        return self.base

    def features(self, x: Tensor) -> Tensor:
        """The context's feature map (``x`` at 0.5) that DAFormer's feature distance compares."""
        return cast(Tensor, self.net.last_feature(self.net.encode(downscale(x))))

    def context(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The context pass on ``x`` (sides multiples of ``2s``): logits and attention on the ``H/2s x W/2s`` grid,
        and the features."""
        grid = (x.shape[-2] // (2 * self.output_stride), x.shape[-1] // (2 * self.output_stride))
        features = self.net.encode(downscale(x))
        logits = on_grid(self.net.decode(features), grid)
        attention = torch.sigmoid(on_grid(self.attention(features), grid))
        return logits, attention, self.net.last_feature(features)

    def detail(self, crops: Tensor) -> Tensor:
        """The network's logits of full-resolution crops, on their ``hh/s x ww/s`` grid."""
        grid = (crops.shape[-2] // self.output_stride, crops.shape[-1] // self.output_stride)
        return on_grid(self.net.decode(self.net.encode(crops)), grid)

    def forward(
        self, x: Tensor, detail_box: tuple[int, int] | None = None, return_features: bool = False
    ) -> Tensor | tuple[Tensor, Tensor] | HrdaOutput:
        """Training (``detail_box`` given) -> :class:`HrdaOutput`; inference -> fused logits (see the class)."""
        if detail_box is None:
            return self.infer(x, return_features)
        top, left = detail_box
        stride = self.output_stride
        lr, attention, features = self.context(x)
        hr = self.detail(x[..., top : top + self.detail_crop[0], left : left + self.detail_crop[1]])
        fused = Fn.hrda_fuse(lr, hr, attention, (top // stride, left // stride))
        return HrdaOutput(fused, hr, attention, features)

    def infer(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """The fused whole-input inference (see the class)."""
        height, width = x.shape[-2:]
        stride, multiple = self.output_stride, 2 * self.output_stride
        padded = F.pad(x, (0, -width % multiple, 0, -height % multiple))
        lr, attention, features = self.context(padded)
        fused = Fn.hrda_fuse(lr, self.slide(padded), attention, (0, 0))
        fused = fused[..., : math.ceil(height / stride), : math.ceil(width / stride)]
        return (fused, features) if return_features else fused

    def slide(self, x: Tensor) -> Tensor:
        """The detail logits of ``x`` from overlapping windows, batched window-major, averaged where they overlap."""
        height, width = x.shape[-2:]
        window = (min(self.detail_crop[0], height), min(self.detail_crop[1], width))
        boxes = Fn.slide_boxes(height, width, window, self.detail_stride)
        crops = torch.stack([x[..., t : t + window[0], left : left + window[1]] for t, left in boxes])
        # [n, B, ...] -> [n·B, ...]: row j·B + i is window j of image i, so interleaved passes stay interleaved
        windows = self.detail(crops.flatten(0, 1)).unflatten(0, (len(boxes), -1))
        stride = self.output_stride
        grid = [(t // stride, left // stride) for t, left in boxes]
        return Fn.slide_average(windows, grid, (height // stride, width // stride))


def downscale(x: Tensor) -> Tensor:
    """HRDA's context input: ``x`` at half its size, bilinear (``align_corners=False``, as the reference resizes)."""
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)


def build_network(cfg: ModelConfig) -> nn.Module:
    """The network of ``model``'s config: the registered network, wrapped in :class:`HRDA` when ``model.hrda`` is set.
    Pretrained weights load into :func:`base_network` of it."""
    base = build_model(cfg.name, cfg.num_classes, cfg.aspp_branches)
    return base if cfg.hrda is None else HRDA(base, cfg.hrda)


def base_network(model: nn.Module) -> nn.Module:
    """The registered network inside ``model`` (itself when it is not wrapped in :class:`HRDA`)."""
    return cast(nn.Module, model.base) if isinstance(model, HRDA) else model
