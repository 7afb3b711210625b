"""DeepLab-v2 with a Caffe-style ResNet backbone, as used by AdaptSegNet, DACS and CAMix (README: Networks and recipes).

The module tree and state-dict names follow the community PyTorch port of DeepLab-v2 so that its
MS-COCO and ImageNet initialisations load unchanged:

- stem ``conv1`` (7x7/2) + ``bn1`` + ReLU + 3x3/2 max-pool with ``ceil_mode=True``;
- ``layer1``..``layer4``: residual blocks with the stride on the *first 1x1 conv* (Caffe convention),
  ``layer3`` dilated by 2 and ``layer4`` by 4, so the output stride is 8;
- a projection shortcut ``downsample.{0,1}`` (1x1 conv + BN) in the first block of a layer when the
  stride, the width or the dilation changes;
- the classifier ``layer5.conv2d_list.{0..3}``: four 3x3 convs with bias and dilations 6, 12, 18, 24.

The released code sums only the dilation-6 and -12 branches (an early ``return`` inside the loop;
docs/fidelity.md); ``aspp_branches=2`` reproduces that and ``aspp_branches=4`` sums all four.
All four convs exist in either case so that the weights files load; with ``aspp_branches=2`` the
unused two are frozen (``requires_grad=False``), so they reach neither the optimiser nor DDP's hooks.

BatchNorm follows the released code (docs/fidelity.md): affine parameters are frozen
(``requires_grad=False``), statistics come from the batch in training mode and from the running
estimates in eval mode. ``trainable_bn=True`` unfreezes the affine parameters (for from-scratch runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from torch import Tensor, nn

from camix.models.batchnorm import ChunkedBatchNorm2d

ASPP_DILATIONS: tuple[int, ...] = (6, 12, 18, 24)
CLASSIFIER_PREFIX = "layer5."


def _bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with the community defaults (eps 1e-5, momentum 0.1, affine); per-chunk statistics on demand."""
    return ChunkedBatchNorm2d(channels)


class Bottleneck(nn.Module):
    """Caffe-style bottleneck: 1x1 (strided) -> 3x3 (dilated) -> 1x1 expanding by 4, plus the shortcut."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = _bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """Residual bottleneck; ReLU after the sum."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)  # in place: one activation fewer per block
        return self.relu(out)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34 style; the stride sits on the first conv, as in Caffe and torchvision)."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """Residual basic block; ReLU after the sum."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


Block = type[Bottleneck] | type[BasicBlock]


class ClassifierModule(nn.Module):
    """The DeepLab-v2 ASPP classifier: parallel dilated 3x3 convs whose logits are summed.

    Args:
        in_channels: Width of the backbone output.
        num_classes: Number of output classes.
        branches: How many of the convs are summed in ``forward`` (2 = the released code, 4 = all).
    """

    def __init__(self, in_channels: int, num_classes: int, branches: int = 2) -> None:
        super().__init__()
        self.branches = branches
        convs = [nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True) for d in ASPP_DILATIONS]
        for conv in convs:  # DeepLab's init: weights ~ N(0, 0.01); biases zero
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.constant_(conv.bias, 0.0)  # type: ignore[arg-type]  # bias=True above
        for conv in convs[branches:]:  # kept for the weights' sake, never used: no gradient, no DDP hook
            conv.requires_grad_(False)
        self.conv2d_list = nn.ModuleList(convs)

    def forward(self, x: Tensor) -> Tensor:
        """Sum of the first ``branches`` dilated convs."""
        out = self.conv2d_list[0](x)
        for conv in self.conv2d_list[1 : self.branches]:
            out = out + conv(x)
        return out


class DeepLabV2(nn.Module):
    """DeepLab-v2 (output stride 8) on a Caffe-style ResNet.

    Args:
        block: Residual block type (``Bottleneck`` for ResNet-50/101, ``BasicBlock`` for ResNet-18).
        layers: Number of blocks in ``layer1``..``layer4``, e.g. ``(3, 4, 23, 3)`` for ResNet-101.
        planes: Inner width of each layer (its output width is ``planes * block.expansion``).
        stem_width: Output channels of ``conv1``.
        num_classes: Number of output classes ``C``.
        aspp_branches: 2 (sum of the dilation-6 and -12 convs, the released code) or 4 (all).
        trainable_bn: Let the optimiser update the BatchNorm affine parameters (frozen in the released code).
        variant: Registry name, used in messages.

    Shapes:
        ``forward``: ``[B, 3, H, W]`` -> ``[B, C, h, w]`` logits at stride 8, not upsampled; ``h = output_size(H)``.
    """

    output_stride = 8
    head_prefix = CLASSIFIER_PREFIX  # the classifier learns ``optim.classifier_lr_mult`` times faster

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        planes: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        num_classes: int = 19,
        aspp_branches: int = 2,
        trainable_bn: bool = False,
        variant: str = "custom",
    ) -> None:
        super().__init__()
        if aspp_branches not in (2, 4):
            raise ValueError(f"aspp_branches must be 2 or 4, got {aspp_branches}")
        self.num_classes = num_classes
        self.aspp_branches = aspp_branches
        self.trainable_bn = trainable_bn
        self.variant = variant
        self.block_type = block.__name__
        self.inplanes = stem_width
        self.conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = _bn(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], dilation=2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], dilation=4)
        self.layer5 = ClassifierModule(self.inplanes, num_classes, aspp_branches)
        self._init_backbone()
        set_bn_trainable(self, trainable_bn)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        """One residual stage; block 0 carries the projection shortcut when shape or dilation changes."""
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_channels or dilation in (2, 4):
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out_channels, kernel_size=1, stride=stride, bias=False), _bn(out_channels)
            )
        stage: list[nn.Module] = [block(self.inplanes, planes, stride, dilation, downsample)]
        self.inplanes = out_channels
        stage += [block(out_channels, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _init_backbone(self) -> None:
        """Kaiming-normal convs and unit/zero BatchNorm for training from scratch (classifier excluded)."""
        for name, module in self.named_modules():
            if name.startswith("layer5"):
                continue
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def features(self, x: Tensor) -> Tensor:
        """The backbone's output (``layer4``) ``[B, C_4, h, w]``, the map a feature distance compares."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def encode(self, x: Tensor) -> Tensor:
        """The backbone's output (what :meth:`decode` and HRDA's attention head read)."""
        return self.features(x)

    def decode(self, features: Tensor) -> Tensor:
        """Logits at output stride 8 from :meth:`encode`'s output."""
        return cast(Tensor, self.layer5(features))

    @staticmethod
    def last_feature(features: Tensor) -> Tensor:
        """The map of :meth:`encode`'s output that the feature distance compares (all of it)."""
        return features

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits ``[B, C, h, w]`` at output stride 8 (callers upsample bilinearly); with ``return_features``
        also the ``layer4`` output."""
        features = self.features(x)
        logits = self.layer5(features)
        return (logits, features) if return_features else logits


def set_bn_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (the released code) or unfreeze the affine parameters of every BatchNorm in ``model``."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for param in module.parameters():
                param.requires_grad_(trainable)


def output_size(size: int) -> int:
    """Spatial size of the logits for an input side of ``size`` pixels (e.g. 512 -> 65, 1024 -> 129).

    Follows the stem conv (7x7/2, pad 3), the ceil-mode max-pool (3x3/2, pad 1) and the strided
    1x1 conv of ``layer2``.
    """
    conv1 = (size + 2 * 3 - 7) // 2 + 1
    pool = -(-(conv1 + 2 * 1 - 3) // 2) + 1
    if (pool - 1) * 2 >= conv1 + 1:  # PyTorch drops a last window that starts in the right padding
        pool -= 1
    return (pool - 1) // 2 + 1


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    classifier_lr_mult: float = 10.0,
    norm_weight_decay: float | None = None,
) -> list[dict[str, object]]:
    """Optimiser parameter groups: backbone at ``lr``, head/classifier at ``classifier_lr_mult * lr``.

    The head is every parameter whose name starts with the model's ``head_prefix`` (``layer5.`` for DeepLab-v2,
    ``decode_head.`` for DAFormer). Only parameters with ``requires_grad`` are included, so frozen BatchNorm
    affine parameters never reach the optimiser. Each group carries ``"lr"``, ``"initial_lr"`` (both
    ``lr * lr_mult``), ``"lr_mult"`` and ``"name"``, so that a schedule can set
    ``group["lr"] = schedule(t) * group["lr_mult"]``.

    Args:
        model: A ``DeepLabV2``, a ``DAFormer`` or any module with a ``head_prefix`` (default ``layer5.``).
        lr: Base learning rate (2.5e-4 in the paper, 6e-5 in DAFormer).
        weight_decay: Weight decay of the groups (5e-4 in the paper, 0.01 in DAFormer).
        classifier_lr_mult: Learning-rate multiplier of the head (10 in both).
        norm_weight_decay: When set, the backbone's normalisation-layer parameters (LayerNorm, BatchNorm,
            GroupNorm) form a group ``backbone_norm`` with this decay (DAFormer: 0, "no decay on norms").

    Returns:
        Non-empty groups, backbone first, head last, ready for ``torch.optim.SGD`` or ``AdamW``.
    """
    prefix = getattr(model, "head_prefix", CLASSIFIER_PREFIX)
    norm_names = set()
    if norm_weight_decay is not None:
        norm_types = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)
        for module_name, module in model.named_modules():
            if isinstance(module, norm_types):
                norm_names |= {f"{module_name}.{n}" for n, _ in module.named_parameters(recurse=False)}
    backbone: list[nn.Parameter] = []
    norms: list[nn.Parameter] = []
    classifier: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(prefix):
            classifier.append(param)
        else:
            (norms if name in norm_names else backbone).append(param)
    plan = (
        ("backbone", backbone, 1.0, weight_decay),
        ("backbone_norm", norms, 1.0, norm_weight_decay),
        ("classifier", classifier, classifier_lr_mult, weight_decay),
    )
    groups = []
    for group_name, params, mult, decay in plan:
        if params:
            group_lr = lr * mult
            groups.append(
                {
                    "name": group_name,
                    "params": params,
                    "lr": group_lr,
                    "initial_lr": group_lr,
                    "lr_mult": mult,
                    "weight_decay": decay,
                }
            )
    return groups


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
