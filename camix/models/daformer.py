"""DAFormer's network: a MiT encoder and the context-aware multi-level fusion decoder (Hoyer et al., CVPR 2022).

The decoder (DAFormer paper, Sec. 3.2 "DAFormer Network Architecture"): each of the encoder's four feature maps
is embedded to ``embed_dim`` channels (256) by a linear layer, bilinearly upsampled to the size of the first
(1/4 of the input) and concatenated; a depthwise-separable ASPP fuses them: a 1x1 conv for dilation 1 and
depthwise 3x3 + pointwise 1x1 convs for dilations 6, 12 and 18, each with BatchNorm + ReLU and no image
pooling; a 3x3 conv with BatchNorm + ReLU merges the branches; dropout (0.1) and a 1x1 classifier give the
logits at 1/4 of the input. With MiT-B5 and 19 classes the decoder has 3.71 M parameters (85.16 M in all).

Inputs are camix's Caffe-normalised BGR images (0-255, mean subtracted, like every camix network); the
network converts them to the ImageNet RGB normalisation (mean 0.485/0.456/0.406, std 0.229/0.224/0.225)
that the MiT checkpoints were trained with, so datasets, augmentation and tools stay the same for both
families. State-dict names: ``backbone.*`` (the encoder, named as the MiT checkpoints inside) and
``decode_head.*``. The decoder's BatchNorms are :class:`~camix.models.batchnorm.ChunkedBatchNorm2d`, so
CAMix's batched teacher passes keep per-pass statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camix.labels import CAFFE_MEAN_BGR
from camix.models.batchnorm import ChunkedBatchNorm2d
from camix.models.mit import MixVisionTransformer

IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)
FUSION_DILATIONS = (1, 6, 12, 18)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 1, dilation: int = 1, groups: int = 1) -> nn.Module:
    """Conv (no bias) + BatchNorm + ReLU, padded to keep the size."""
    padding = dilation * (kernel // 2)
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation, groups=groups, bias=False)
    return nn.Sequential(conv, ChunkedBatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SeparableConv(nn.Module):
    """Depthwise dilated 3x3 conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__()
        self.depthwise = conv_bn_relu(in_channels, in_channels, 3, dilation, groups=in_channels)
        self.pointwise = conv_bn_relu(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` -> ``[B, C_out, H, W]``."""
        return self.pointwise(self.depthwise(x))


class SeparableASPP(nn.Module):
    """Parallel branches (1x1 conv at dilation 1, else separable 3x3 convs), concatenated, merged by a 3x3 conv."""

    def __init__(self, in_channels: int, channels: int, dilations: Sequence[int] = FUSION_DILATIONS) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            conv_bn_relu(in_channels, channels, 1) if d == 1 else SeparableConv(in_channels, channels, d)
            for d in dilations
        )
        self.bottleneck = conv_bn_relu(len(dilations) * channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` -> ``[B, channels, H, W]``."""
        return self.bottleneck(torch.cat([branch(x) for branch in self.branches], dim=1))


class DAFormerHead(nn.Module):
    """The decoder: per-level linear embeddings, upsampling to the first level, separable-ASPP fusion, classifier."""

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        embed_dim: int = 256,
        dilations: Sequence[int] = FUSION_DILATIONS,
        dropout: float = 0.1,
        fusion: str = "aspp",
    ) -> None:
        super().__init__()
        self.embed = nn.ModuleList(nn.Linear(c, embed_dim) for c in in_channels)
        width = len(in_channels) * embed_dim
        # "conv": a 1x1 conv + BN + ReLU instead of the ASPP, HRDA's scale-attention head (HRDA Sec. 3.3)
        self.fuse = SeparableASPP(width, embed_dim, dilations) if fusion == "aspp" else conv_bn_relu(width, embed_dim)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Four feature maps (finest first) -> logits ``[B, num_classes, h, w]`` at the size of the first."""
        size = features[0].shape[-2:]
        embedded = []
        for layer, feature in zip(self.embed, features, strict=True):
            tokens = layer(feature.flatten(2).transpose(1, 2))  # [B, h_i * w_i, embed_dim]
            grid = tokens.transpose(1, 2).reshape(feature.shape[0], -1, *feature.shape[-2:])
            embedded.append(grid if grid.shape[-2:] == size else F.interpolate(grid, size=size, mode="bilinear"))
        return self.classifier(self.dropout(self.fuse(torch.cat(embedded, dim=1))))


class DAFormer(nn.Module):
    """A MiT encoder with DAFormer's decoder.

    Args:
        backbone: the encoder (its ``embed_dims`` give the decoder's input widths).
        num_classes: number of output classes ``C``.
        embed_dim: the decoder's width (256 in DAFormer).
        dropout: dropout before the classifier (0.1 in DAFormer).
        variant: registry name, used in messages.

    Shapes:
        ``forward``: ``[B, 3, H, W]`` Caffe-normalised BGR -> ``[B, C, ceil(H/4), ceil(W/4)]`` logits (callers
        upsample). ``forward(x, return_features=True)`` also returns the encoder's last feature map (stride 32),
        the one DAFormer's ImageNet feature distance compares.
    """

    output_stride = 4
    head_prefix = "decode_head."  # the decoder learns ``optim.classifier_lr_mult`` times faster
    backbone_prefix = "backbone."  # where the encoder's checkpoint names live in this model's state dict

    def __init__(
        self,
        backbone: MixVisionTransformer,
        num_classes: int = 19,
        embed_dim: int = 256,
        dropout: float = 0.1,
        variant: str = "custom",
    ) -> None:
        super().__init__()
        self.num_classes, self.variant = num_classes, variant
        self.backbone = backbone
        self.decode_head = DAFormerHead(backbone.embed_dims, num_classes, embed_dim, dropout=dropout)
        shift = [m - c for m, c in zip(IMAGENET_MEAN_RGB, reversed(CAFFE_MEAN_BGR), strict=True)]
        self.register_buffer("input_shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_scale", torch.tensor(IMAGENET_STD_RGB).view(1, 3, 1, 1), persistent=False)

    def normalise(self, x: Tensor) -> Tensor:
        """Caffe BGR (0-255 minus the Caffe mean) -> ImageNet-normalised RGB."""
        shift, scale = cast(Tensor, self.input_shift), cast(Tensor, self.input_scale)
        return (x.flip(1) - shift.to(x.dtype)) / scale.to(x.dtype)

    def features(self, x: Tensor) -> Tensor:
        """The encoder's last feature map ``[B, C_4, H/32, W/32]`` (for the feature distance)."""
        return self.backbone(self.normalise(x))[-1]

    def encode(self, x: Tensor) -> list[Tensor]:
        """The encoder's four feature maps (what :meth:`decode` and HRDA's attention head read)."""
        return cast(list[Tensor], self.backbone(self.normalise(x)))

    def decode(self, features: list[Tensor]) -> Tensor:
        """Logits at stride 4 from :meth:`encode`'s feature maps."""
        return cast(Tensor, self.decode_head(features))

    @staticmethod
    def last_feature(features: list[Tensor]) -> Tensor:
        """The map of :meth:`encode`'s output that the feature distance compares (the last one)."""
        return features[-1]

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits at stride 4 (and the last encoder feature map when ``return_features``)."""
        features = self.backbone(self.normalise(x))
        logits = self.decode_head(features)
        return (logits, features[-1]) if return_features else logits
