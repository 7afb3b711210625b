"""Confusion matrix, IoU and mIoU against hand-computed values and a slow, obvious reference."""

from __future__ import annotations

import math

import pytest
import torch

import camix.functional as F
from camix.data import labels


def test_confusion_matrix_golden() -> None:
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [2, 0, 0, 1], [2, 2, 2, 2]])
    # gt 0: preds 0,1,0,0 -> (3, 1, 0); gt 1: 1,1,1,1 -> (0, 4, 0); gt 2: 2,0,2,2 -> (1, 0, 3); 255: not counted
    cm = F.confusion_matrix(pred, target, 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [[3, 1, 0], [0, 4, 0], [1, 0, 3]]
    # IoU = TP / (row + col − TP): class 0: 3 / (4 + 4 − 3) = 0.6; class 1: 4 / (4 + 5 − 4) = 0.8; class 2: 3 / 4
    assert torch.allclose(F.iou(cm), torch.tensor([0.6, 0.8, 0.75], dtype=torch.float64))
    assert F.miou(cm) == pytest.approx((0.6 + 0.8 + 0.75) / 3)
    assert F.miou(cm, classes=(0, 2)) == pytest.approx(0.675)


def test_confusion_matrix_ignore_index_inside_the_class_range() -> None:
    target = torch.tensor([[0, 1, 2, 0]])
    pred = torch.tensor([[1, 1, 2, 2]])
    # ignore_index 0: the two gt-0 pixels are dropped, leaving gt 1 -> 1 and gt 2 -> 2
    assert F.confusion_matrix(pred, target, 3, ignore_index=0).tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_iou_is_nan_only_where_a_class_is_absent_from_both() -> None:
    cm = torch.tensor([[2, 0, 0], [0, 0, 0], [0, 1, 0]])
    # class 0: 2/2 = 1; class 1: never in gt but predicted once -> 0/1 = 0; class 2: in gt, never right -> 0/1 = 0
    assert F.iou(cm).tolist() == [1.0, 0.0, 0.0]
    cm = torch.tensor([[2, 0], [0, 0]])  # class 1 absent from gt and predictions -> NaN, skipped by miou
    assert math.isnan(F.iou(cm)[1].item()) and F.miou(cm) == 1.0
    assert math.isnan(F.miou(torch.zeros(3, 3, dtype=torch.int64)))


def slow_confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[list[int]]:
    cm = [[0] * num_classes for _ in range(num_classes)]
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist(), strict=True):
        if t != 255:
            cm[t][p] += 1
    return cm


def slow_miou(cm: list[list[int]], classes: tuple[int, ...]) -> float:
    values = []
    for c in classes:
        tp = cm[c][c]
        fn = sum(cm[c]) - tp
        fp = sum(cm[r][c] for r in range(len(cm))) - tp
        if tp + fn + fp > 0:
            values.append(tp / (tp + fn + fp))
    return sum(values) / len(values)


@pytest.mark.parametrize("classes", [tuple(range(19)), labels.MIOU16_CLASSES, labels.MIOU13_CLASSES])
def test_fast_metrics_agree_with_a_slow_reference(classes: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 19, (3, 20, 30), generator=g)
    target[torch.rand(3, 20, 30, generator=g) < 0.1] = 255
    target[target == 16] = 255  # one class absent from the ground truth ...
    pred = torch.where(
        torch.rand(3, 20, 30, generator=g) < 0.6, target.clamp(max=18), torch.randint(0, 19, (3, 20, 30), generator=g)
    )
    pred[pred == 9] = 0  # ... and one never predicted
    pred[pred == 16] = 2  # class 16 absent from both -> NaN
    cm = F.confusion_matrix(pred, target, 19)
    reference = slow_confusion(pred, target, 19)
    assert cm.tolist() == reference
    assert math.isnan(F.iou(cm)[16].item())
    assert F.miou(cm, classes) == pytest.approx(slow_miou(reference, classes), rel=1e-12)


def test_class_subsets_are_re_exported() -> None:
    assert F.MIOU16_CLASSES is labels.MIOU16_CLASSES and F.MIOU13_CLASSES is labels.MIOU13_CLASSES
    assert len(F.MIOU16_CLASSES) == 16 and len(F.MIOU13_CLASSES) == 13
    assert F.IGNORE_INDEX == 255 and F.NUM_CLASSES == 19
    with pytest.raises(ValueError):
        F.confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 3), 3)
