"""The optimiser: SGD or AdamW over camix's parameter groups, or SGD over the released code's duplicated list.

The released code (DACS's DeepLab-v2, used by CAMix) hands SGD the backbone parameters from a generator that walks
``module.modules()`` of the stem conv, the stem BatchNorm and ``layer1..4`` and yields every ``parameters()`` of each
visited module. A tensor therefore appears once per module that contains it: 3 times for a residual block's convs
(the ``layerN`` Sequential, the block, the conv), 4 times for a downsample conv (also its Sequential), once for the
stem conv; the classifier (``layer5``) is listed once. PyTorch's loop SGD (``foreach=False``) applies weight decay,
the momentum update and the step once per copy, so the backbone moves about 3x faster than its nominal learning
rate. The published DACS and CAMix numbers were trained that way; ``optim.duplicate_backbone_params`` reproduces it.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from camix import functional as Fn
from camix.config import OptimConfig
from camix.errors import ConfigError
from camix.models import param_groups
from camix.models.deeplabv2 import CLASSIFIER_PREFIX


def release_param_list(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The released code's backbone and classifier parameter lists, duplicates included, in its order.

    The backbone list walks the model's top-level children other than the classifier in registration order (for
    DeepLab-v2: ``conv1``, ``bn1``, ``layer1..4``; ``relu`` and ``maxpool`` hold no parameters) and, for each module
    that ``child.modules()`` visits, appends every ``parameters()`` that requires a gradient.

    Returns:
        ``(backbone, classifier)``.
    """
    head = getattr(model, "head_prefix", CLASSIFIER_PREFIX)
    backbone: list[nn.Parameter] = []
    classifier: list[nn.Parameter] = []
    for name, child in model.named_children():
        if f"{name}." == head:
            classifier.extend(p for p in child.parameters() if p.requires_grad)
            continue
        for module in child.modules():
            backbone.extend(p for p in module.parameters() if p.requires_grad)
    return backbone, classifier


def optimizer_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, object]]:
    """Parameter groups: camix's deduplicated groups, or the released code's duplicated lists."""
    groups = param_groups(model, cfg.lr, cfg.weight_decay, cfg.classifier_lr_mult, cfg.norm_weight_decay)
    if not cfg.duplicate_backbone_params:
        return groups
    backbone, classifier = release_param_list(model)
    lists = {"backbone": backbone, "classifier": classifier}
    return [{**group, "params": lists[str(group["name"])]} for group in groups]


def build_optimizer(model: nn.Module, cfg: OptimConfig, amp: str = "none") -> torch.optim.Optimizer:
    """SGD with momentum (DACS/CAMix) or AdamW (DAFormer); with ``cfg.duplicate_backbone_params`` the released update.

    The duplicated list needs PyTorch's single-tensor loop (``foreach=False``): it updates the parameter and its
    momentum buffer in place once per copy, as the released code's PyTorch did.

    Raises:
        ConfigError: the duplicated list with ``amp="fp16"``, whose gradient scaler would unscale a duplicated
            weight's gradient once per copy.
    """
    if cfg.duplicate_backbone_params and amp == "fp16":
        raise ConfigError(
            "optim.duplicate_backbone_params=true cannot train with train.amp=fp16 (the gradient scaler would unscale "
            "a duplicated weight's gradient once per copy); use train.amp=bf16 or none"
        )
    groups = optimizer_groups(model, cfg)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if not cfg.duplicate_backbone_params:
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    with warnings.catch_warnings():  # PyTorch warns that duplicates will be an error "in future"; they are intended
        warnings.filterwarnings("ignore", message=".*duplicate parameters.*")
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, foreach=False)


def poly_lr_(
    optimizer: torch.optim.Optimizer,
    base_lr: float,
    power: float,
    iteration: int,
    total: int,
    warmup: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """Poly decay after an optional linear warm-up (:func:`camix.functional.warmup_poly_lr`) for each group, times
    its ``lr_mult``; returns the base lr."""
    lr = Fn.warmup_poly_lr(iteration, total, base_lr, power, warmup, warmup_ratio)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    return lr
