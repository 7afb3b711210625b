"""Evaluation metrics: confusion matrix, per-class IoU and mIoU over the 19/16/13-class protocols."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from camix.labels import IGNORE_INDEX, MIOU13_CLASSES, MIOU16_CLASSES

__all__ = ["MIOU13_CLASSES", "MIOU16_CLASSES", "confusion_matrix", "iou", "miou"]


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Confusion matrix by one ``bincount``: ``cm[g, p]`` counts pixels of ground truth ``g`` predicted ``p``.

    Pixels whose ground truth is ``ignore_index`` or outside ``[0, C)`` are not counted; neither are pixels with a
    prediction outside ``[0, C)`` (predictions are expected to be class ids).

    Args:
        pred: ``[...]`` integer predicted class ids.
        target: same shape, integer ground truth.
        num_classes: ``C``.
        ignore_index: ground-truth label that is not counted.

    Returns:
        ``[C, C]`` int64, rows = ground truth, columns = prediction, on the inputs' device.
    """
    if pred.shape != target.shape:
        raise ValueError(f"confusion_matrix: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    valid = (target >= 0) & (target < num_classes) & (target != ignore_index) & (pred >= 0) & (pred < num_classes)
    cells = num_classes * num_classes
    index = torch.where(valid, target * num_classes + pred, torch.full_like(target, cells))
    return torch.bincount(index, minlength=cells + 1)[:cells].view(num_classes, num_classes)


def iou(cm: Tensor) -> Tensor:
    """Per-class intersection over union ``TP / (TP + FP + FN)`` from a confusion matrix.

    Args:
        cm: ``[C, C]`` confusion matrix, rows = ground truth.

    Returns:
        ``[C]`` float64; NaN where a class is absent from both the ground truth and the predictions.
    """
    cm = cm.to(torch.float64)
    tp = cm.diagonal()
    union = cm.sum(dim=0) + cm.sum(dim=1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def miou(cm: Tensor, classes: Sequence[int] | None = None) -> float:
    """Mean IoU over ``classes`` (all by default; :data:`MIOU16_CLASSES` / :data:`MIOU13_CLASSES` for SYNTHIA),
    ignoring NaN entries. For reporting: returns a Python float (a host sync). NaN if every entry is NaN.

    Args:
        cm: ``[C, C]`` confusion matrix, rows = ground truth.
        classes: trainIds to average over.

    Returns:
        The mean IoU in ``[0, 1]``, or NaN.
    """
    values = iou(cm)
    if classes is not None:
        values = values[torch.as_tensor(list(classes), dtype=torch.long, device=values.device)]
    return float(values.nanmean())
