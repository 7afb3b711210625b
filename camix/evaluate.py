"""Evaluation: inference (whole image, flip, sliding window), confusion matrices, IoU tables.

The protocol of DACS/CAMix: images and labels of the target validation split at ``data.val.size``
(1024x512 for Cityscapes), single scale, logits upsampled bilinearly (``align_corners=True``) to the
label's size and arg-maxed; the confusion matrix is accumulated on the model's device with ``bincount``
(:func:`camix.functional.confusion_matrix`). Full-resolution labels only change the size the logits are
upsampled to. Flip and sliding-window inference are opt-in and built from pure functions.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from camix.data.labels import CLASS_NAMES, MIOU13_CLASSES, MIOU16_CLASSES
from camix.functional import confusion_matrix, iou, miou

Net = Callable[[torch.Tensor], torch.Tensor]
"""Images [B,3,h,w] -> logits [B,C,h',w'] (any resolution)."""

METRICS: tuple[str, ...] = ("miou19", "miou16", "miou13")
METRIC_TITLES: dict[str, str] = {"miou19": "mIoU19", "miou16": "mIoU16", "miou13": "mIoU13"}

# Column headers of the paper's Tables 1 and 3 (trainId order).
SHORT_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "light", "sign", "vegetation", "terrain",
    "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bike",
)  # fmt: skip


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
        """Scores in percent (``miou19``, ``miou16``, ``miou13`` and ``iou`` by class name)."""
        return {
            "miou19": 100 * self.miou19,
            "miou16": 100 * self.miou16,
            "miou13": 100 * self.miou13,
            "iou": {name: 100 * v for name, v in zip(CLASS_NAMES, self.iou, strict=False)},
        }


# ----- inference -------------------------------------------------------------------------------------------
def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling with ``align_corners=True`` (as DACS) to ``size`` = (height, width); no-op if equal."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=True)


def flip_average(net: Net, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Horizontal-flip test-time augmentation: ``log((softmax(f(x)) + flip(softmax(f(flip x)))) / 2)``.

    The result is a valid logit map (its softmax is the mean of the two probability maps), at ``size``.
    """
    plain = resize_logits(net(image), size).log_softmax(1)
    flipped = resize_logits(net(image.flip(-1)), size).flip(-1).log_softmax(1)
    return torch.logaddexp(plain, flipped) - math.log(2.0)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Offsets of windows of ``window`` pixels every ``stride`` pixels covering ``length``; the last one is flush.

    >>> window_starts(10, 4, 3)
    [0, 3, 6]
    >>> window_starts(11, 4, 3)
    [0, 3, 6, 7]
    """
    if window >= length:
        return [0]
    starts = list(range(0, length - window + 1, max(1, stride)))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def window_stride(window: tuple[int, int], overlap: float) -> tuple[int, int]:
    """(width, height) steps between windows of ``window`` = (width, height) overlapping by ``overlap`` in [0, 1)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    return (max(1, round(window[0] * (1 - overlap))), max(1, round(window[1] * (1 - overlap))))


def sliding_window_logits(
    net: Net, image: torch.Tensor, window: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """Logits at the image's resolution, averaged over overlapping windows.

    Args:
        net: images -> logits; each window's logits are upsampled to the window's size.
        image: [B,3,H,W].
        window: (width, height) of a window; clipped to the image.
        stride: (width, height) step between windows.

    Returns:
        [B,C,H,W]: every pixel is the mean of the logits of the windows containing it.
    """
    height, width = image.shape[-2:]
    win_w, win_h = min(window[0], width), min(window[1], height)
    total: torch.Tensor | None = None
    count = image.new_zeros(1, 1, height, width)
    for top in window_starts(height, win_h, stride[1]):
        for left in window_starts(width, win_w, stride[0]):
            patch = image[..., top : top + win_h, left : left + win_w]
            logits = resize_logits(net(patch), (win_h, win_w))
            if total is None:
                total = logits.new_zeros(logits.shape[0], logits.shape[1], height, width)
            total[..., top : top + win_h, left : left + win_w] += logits
            count[..., top : top + win_h, left : left + win_w] += 1
    assert total is not None
    return total / count


def predict_logits(
    model: Net,
    image: torch.Tensor,
    size: tuple[int, int],
    flip: bool = False,
    window: tuple[int, int] | None = None,
    overlap: float = 1 / 3,
) -> torch.Tensor:
    """Logits of ``image`` [B,3,H,W] at ``size`` = (height, width).

    Args:
        model: the network (or any images -> logits callable).
        image: Caffe-normalised BGR images.
        size: output (height, width), e.g. the label's size.
        flip: average the probabilities of the image and its mirror image (:func:`flip_average`).
        window: (width, height) of sliding windows; None runs the whole image at once.
        overlap: fraction by which neighbouring windows overlap.
    """
    if window is None:
        return flip_average(model, image, size) if flip else resize_logits(model(image), size)

    def window_net(patch: torch.Tensor) -> torch.Tensor:
        return flip_average(model, patch, (patch.shape[-2], patch.shape[-1])) if flip else model(patch)

    logits = sliding_window_logits(window_net, image, window, window_stride(window, overlap))
    return resize_logits(logits, size)


class EvaluationStopped(Exception):
    """An evaluation ended early because its ``stop`` callback asked it to (a stop signal during training)."""


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    *,
    num_classes: int,
    device: torch.device,
    flip: bool = False,
    window: tuple[int, int] | None = None,
    overlap: float = 1 / 3,
    progress: bool = False,
    stop: Callable[[], bool] | None = None,
) -> EvalResult:
    """Accumulate the confusion matrix of ``model`` (in eval mode) over labelled batches on ``device``.

    Args:
        model: the network, already on ``device``.
        batches: dicts with ``image`` [B,3,H,W] and ``label`` [B,h,w]; logits are upsampled to the label size.
        num_classes: C.
        device: where inference and the bincount run.
        flip: flip test-time augmentation.
        window: sliding-window (width, height), or None for whole images.
        overlap: window overlap fraction.
        progress: show a progress bar.
        stop: asked before every batch; when it returns True the evaluation ends early.

    Raises:
        EvaluationStopped: ``stop`` returned True.
    """
    was_training = model.training
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for batch in tqdm(batches, desc="evaluate", disable=not progress, leave=False, dynamic_ncols=True):
        if stop is not None and stop():
            model.train(was_training)
            raise EvaluationStopped("evaluation stopped early")
        image = batch["image"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        size = (int(label.shape[-2]), int(label.shape[-1]))
        pred = predict_logits(model, image, size, flip, window, overlap).argmax(1)
        cm += confusion_matrix(pred, label, num_classes)
    model.train(was_training)
    return EvalResult(cm)


# ----- tables ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableLayout:
    """Which class columns and which mean IoUs a table shows."""

    classes: tuple[int, ...]
    metrics: tuple[str, ...]


TABLE1 = TableLayout(tuple(range(len(CLASS_NAMES))), METRICS)
"""GTA5 -> Cityscapes (the paper's Table 1): 19 classes, then mIoU19 (and mIoU16, mIoU13)."""
TABLE3 = TableLayout(MIOU16_CLASSES, ("miou16", "miou13"))
"""SYNTHIA -> Cityscapes (the paper's Table 3): the 16 SYNTHIA classes, then mIoU16 and mIoU13."""


def layout_for(source_name: str) -> TableLayout:
    """Table 3's layout for SYNTHIA sources, Table 1's otherwise."""
    return TABLE3 if source_name == "synthia" else TABLE1


def format_number(value: float | None, digits: int = 1) -> str:
    """``55.2``; ``-`` for None/nan (a class absent from both prediction and ground truth)."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table with cells padded to their column's width (readable as plain text too).

    Columns whose cells are all numbers (or ``-``) are right-aligned, the others left-aligned.
    """
    columns = list(zip(header, *rows, strict=True))
    widths = [max(len(str(cell)) for cell in column) for column in columns]
    right = [bool(rows) and all(_NUMBER.match(str(cell)) for cell in column[1:]) for column in columns]

    def line(cells: Sequence[str]) -> str:
        padded = [str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if r else ":" + "-" * (w + 1) for w, r in zip(widths, right, strict=True))
    return "\n".join([line(header), rule + "|", *(line(r) for r in rows)])


_NUMBER = re.compile(r"^([-+]?\d|-$)")


def iou_table(
    rows: Sequence[tuple[str, Mapping[str, Any]]], layout: TableLayout = TABLE1, first: str = "method"
) -> str:
    """Per-class IoU rows in the layout of the paper's Tables 1 and 3: class columns, then the mean IoUs.

    Args:
        rows: (name, scores) pairs; scores as :meth:`EvalResult.as_dict` (percent, ``iou`` by class name).
        layout: :data:`TABLE1` or :data:`TABLE3`.
        first: header of the first column.
    """
    header = [first, *(SHORT_NAMES[c] for c in layout.classes), *(METRIC_TITLES[m] for m in layout.metrics)]
    body = [
        [name]
        + [format_number(scores["iou"].get(CLASS_NAMES[c])) for c in layout.classes]
        + [format_number(scores.get(m)) for m in layout.metrics]
        for name, scores in rows
    ]
    return markdown_table(header, body)


def format_table(result: EvalResult, layout: TableLayout = TABLE1, name: str = "IoU (%)") -> str:
    """One result as a one-row :func:`iou_table` (percent)."""
    return iou_table([(name, result.as_dict())], layout)


def csv_lines(rows: Sequence[tuple[str, Mapping[str, Any]]], first: str = "method") -> list[list[Any]]:
    """Header and rows for :func:`csv_text`: name, the 19 class IoUs, mIoU19/16/13 (percent)."""
    header: list[Any] = [first, *CLASS_NAMES, *METRICS]
    body = [
        [name, *(scores["iou"].get(c) for c in CLASS_NAMES), *(scores.get(m) for m in METRICS)] for name, scores in rows
    ]
    return [header, *body]


def csv_text(rows: Sequence[Sequence[Any]]) -> str:
    """CSV with floats to 4 decimals (nan and None empty) and lists joined by spaces."""

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.4f}"
        return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([[cell(v) for v in row] for row in rows])
    return buffer.getvalue()


def json_safe(value: Any) -> Any:
    """``value`` with nan/inf floats replaced by None (strict JSON), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
