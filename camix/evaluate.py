"""Evaluation: confusion matrices accumulated on the model's device, per-class IoU and mIoU."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from camix.data.labels import CLASS_NAMES, MIOU13_CLASSES, MIOU16_CLASSES
from camix.functional import confusion_matrix, iou, miou


@dataclass(frozen=True)
class EvalResult:
    """A confusion matrix and the scores derived from it."""

    confusion: torch.Tensor  # [C, C] int64, rows = ground truth

    @property
    def iou(self) -> list[float]:
        """Per-class IoU in [0, 1] (nan for classes absent from both prediction and ground truth)."""
        return [float(v) for v in iou(self.confusion)]

    @property
    def miou19(self) -> float:
        """Mean IoU over all classes."""
        return miou(self.confusion)

    @property
    def miou16(self) -> float:
        """Mean IoU over the 16 SYNTHIA classes."""
        return miou(self.confusion, MIOU16_CLASSES)

    @property
    def miou13(self) -> float:
        """Mean IoU over the 13 SYNTHIA classes."""
        return miou(self.confusion, MIOU13_CLASSES)

    def as_dict(self) -> dict[str, Any]:
        """Scores in percent, JSON-friendly."""
        return {
            "miou19": 100 * self.miou19,
            "miou16": 100 * self.miou16,
            "miou13": 100 * self.miou13,
            "iou": {name: 100 * v for name, v in zip(CLASS_NAMES, self.iou, strict=False)},
        }


def predict_logits(model: nn.Module, image: torch.Tensor, size: tuple[int, int], flip: bool = False) -> torch.Tensor:
    """Logits upsampled (bilinear, align_corners=True as in DACS) to ``size`` = (height, width)."""
    logits = F.interpolate(model(image), size=size, mode="bilinear", align_corners=True)
    if flip:
        flipped = F.interpolate(model(image.flip(-1)), size=size, mode="bilinear", align_corners=True)
        logits = logits.softmax(1) + flipped.flip(-1).softmax(1)
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    *,
    num_classes: int,
    device: torch.device,
    flip: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Accumulate the confusion matrix of ``model`` (in eval mode) over labelled batches."""
    was_training = model.training
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for batch in tqdm(batches, desc="evaluate", disable=not progress, leave=False, dynamic_ncols=True):
        image = batch["image"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        pred = predict_logits(model, image, tuple(label.shape[-2:]), flip).argmax(1)
        cm += confusion_matrix(pred, label, num_classes)
    model.train(was_training)
    return EvalResult(cm)
