"""DAFormer's training strategies as pure functions (Hoyer et al., "DAFormer: Improving Network Architectures and
Training Strategies for Domain-Adaptive Semantic Segmentation", CVPR 2022).

* :func:`warmup_poly_lr`: the learning-rate warm-up (Sec. 3.3, "Learning Rate Warmup for UDA") before poly decay.
* :func:`rcs_class_probabilities`: Rare Class Sampling (Sec. 3.3, "Rare Class Sampling"): classes drawn with
  a softmax over ``(1 - f_c) / T`` of their source pixel frequencies ``f_c``.
* :func:`downscale_label_ratio`, :func:`thing_feature_distance`: the Thing-Class ImageNet Feature Distance
  (Sec. 3.3, "Thing-Class ImageNet Feature Distance").
* :func:`ignore_rows`: the pseudo-label weight set to 0 on the top and bottom rows of the target crops (the
  released DAFormer configs: 15 and 120 rows of Cityscapes' 512x512 crops, where the ego vehicle and the
  rectification border are).

No host synchronisation in the per-iteration functions; shapes as in :mod:`camix.functional`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from camix.labels import IGNORE_INDEX

THING_CLASSES: tuple[int, ...] = (6, 7, 11, 12, 13, 14, 15, 16, 17, 18)
"""Cityscapes trainIds of DAFormer's thing classes: traffic light, sign, person, rider, car, truck, bus, train,
motorcycle, bicycle (pole, id 5, is excluded as in the released code)."""


def warmup_poly_lr(
    iteration: int, total: int, base_lr: float, power: float, warmup: int = 0, warmup_ratio: float = 1e-6
) -> float:
    """The learning rate at ``iteration``: linear warm-up over ``warmup`` iterations, then poly decay to 0.

    DAFormer Sec. 3.3 ("Learning Rate Warmup for UDA") with the schedule of its released code (mmcv's poly
    policy with linear warm-up): the poly value is ``p(t) = base_lr * (1 - t/T)^power``; during warm-up
    (``t < warmup``) it is scaled by ``1 - (1 - t/warmup) * (1 - warmup_ratio)``, which rises linearly from
    ``warmup_ratio`` at ``t = 0`` to 1 at ``t = warmup``. With ``warmup = 0`` it is camix's plain poly decay.

    Args:
        iteration: ``t`` in ``[0, T]``.
        total: ``T``, the number of iterations.
        base_lr: the peak learning rate (DAFormer: 6e-5).
        power: the poly exponent (DAFormer: 1.0, DACS/CAMix: 0.9).
        warmup: warm-up iterations (DAFormer: 1500).
        warmup_ratio: the fraction of the poly value used at ``t = 0`` (DAFormer: 1e-6).

    Returns:
        The learning rate, a Python float.
    """
    lr = base_lr * (1.0 - iteration / total) ** power
    if iteration < warmup:
        lr *= 1.0 - (1.0 - iteration / warmup) * (1.0 - warmup_ratio)
    return lr


def rcs_class_probabilities(class_pixels: Tensor, temperature: float = 0.01) -> Tensor:
    """Rare Class Sampling's class distribution (DAFormer Sec. 3.3, "Rare Class Sampling").

    ``f_c = n_c / sum_k n_k`` is the frequency of class ``c`` among the labelled source pixels and
    ``P(c) = exp((1 - f_c) / T) / sum_k exp((1 - f_k) / T)``, a softmax over the classes that occur. A smaller
    temperature ``T`` puts more mass on the rare classes. Classes with no pixel get probability 0.

    Args:
        class_pixels: ``[C]`` pixel counts per class over the source dataset (ignored pixels excluded).
        temperature: ``T > 0`` (DAFormer: 0.01).

    Returns:
        ``[C]`` float64 probabilities summing to 1.

    Raises:
        ValueError: a non-positive temperature or no labelled pixel at all.
    """
    if temperature <= 0:
        raise ValueError(f"the RCS temperature must be positive, got {temperature}")
    counts = class_pixels.double()
    if not bool((counts > 0).any()):
        raise ValueError("rare class sampling needs at least one labelled source pixel")
    freq = counts / counts.sum()
    logits = ((1.0 - freq) / temperature).masked_fill(counts <= 0, -math.inf)
    return logits.softmax(0)


def downscale_label_ratio(
    label: Tensor, size: Sequence[int], min_ratio: float = 0.75, num_classes: int = 19, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """A label map downscaled to a feature map's ``size`` by majority vote, kept only where the vote is clear.

    DAFormer Sec. 3.3 ("Thing-Class ImageNet Feature Distance"): each output cell takes the most frequent label of
    the pixels it covers (ignored pixels voting for an extra "ignore" class) and becomes ``ignore_index`` when that
    label covers less than ``min_ratio`` of them. Cells are the windows of an adaptive average pooling, i.e.
    ``s x s`` blocks when the label size is ``s`` times the feature size.

    Args:
        label: ``[B, H, W]`` int64 trainIds with ``ignore_index``.
        size: ``(h, w)`` of the feature map.
        min_ratio: the share the majority label must reach (DAFormer: 0.75).
        num_classes: number of classes ``C``.
        ignore_index: the ignore label.

    Returns:
        ``[B, h, w]`` int64 labels.
    """
    valid = label != ignore_index
    votes = torch.where(valid, label, torch.full_like(label, num_classes))
    onehot = F.one_hot(votes, num_classes + 1).permute(0, 3, 1, 2).float()
    share, winner = F.adaptive_avg_pool2d(onehot, (int(size[0]), int(size[1]))).max(dim=1)
    keep = (winner != num_classes) & (share >= min_ratio)
    return torch.where(keep, winner, torch.full_like(winner, ignore_index))


def thing_feature_distance(
    features: Tensor,
    imagenet_features: Tensor,
    label: Tensor,
    classes: Sequence[int] = THING_CLASSES,
    min_ratio: float = 0.75,
    num_classes: int = 19,
) -> Tensor:
    """The Thing-Class ImageNet Feature Distance ``L_FD`` (DAFormer Sec. 3.3).

    ``d(i, j) = || F_ImageNet(x)(i, j) - F_theta(x)(i, j) ||_2`` per feature cell, averaged over the cells whose
    downscaled source label (:func:`downscale_label_ratio`) is a thing class: ``sum(d * M) / sum(M)``. An exact
    0 (still connected to ``features``, zero gradient) where no cell holds a thing class, without a host sync.

    Args:
        features: ``[B, D, h, w]`` the trained encoder's last feature map on the source images.
        imagenet_features: ``[B, D, h, w]`` the frozen ImageNet encoder's, on the same images (detached here).
        label: ``[B, H, W]`` source labels (int64, ignore 255).
        classes: the thing classes (DAFormer: 6, 7, 11-18).
        min_ratio: the label downscaling's minimum majority share (DAFormer: 0.75).
        num_classes: number of classes.

    Returns:
        Scalar loss (multiply by lambda_FD, DAFormer: 0.005).
    """
    small = downscale_label_ratio(label, features.shape[-2:], min_ratio, num_classes)
    thing = torch.zeros_like(small, dtype=torch.bool)
    for c in classes:  # comparisons with Python ints: no class-list upload to the device each step
        thing |= small == c
    mask = thing.to(features.dtype)
    distance = (features - imagenet_features.detach()).norm(p=2, dim=1)
    count = mask.sum()
    return (distance * mask).sum() / torch.where(count > 0, count, torch.ones_like(count))


def ignore_rows(weight: Tensor, top: int = 0, bottom: int = 0) -> Tensor:
    """The pseudo-label weight ``[B, H, W]`` with its first ``top`` and last ``bottom`` rows set to 0 (a copy).

    DAFormer's released configs ignore the top 15 and bottom 120 rows of the 512x512 Cityscapes crops
    (``psweight_ignore_top`` / ``psweight_ignore_bottom``), where the rectification border and the ego vehicle
    are, so that the student is not trained on pseudo-labels of the car it is mounted on.
    """
    out = weight.clone()
    if top > 0:
        out[..., :top, :] = 0
    if bottom > 0:
        out[..., -bottom:, :] = 0
    return out
