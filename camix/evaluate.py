"""Evaluation, in one place: inference (whole image, flip, sliding window), confusion matrices, evaluating a model
or a checkpoint on ``data.val`` (``camix evaluate``), and the distributed evaluation during training. Tables of
the scores: :mod:`camix.tables`.

The protocol of DACS/CAMix: images and labels of the target validation split at ``data.val.size``
(1024x512 for Cityscapes), single scale, logits upsampled bilinearly (``align_corners=True``) to the
label's size and arg-maxed; the confusion matrix is accumulated on the model's device with ``bincount``
(:func:`camix.functional.confusion_matrix`). Full-resolution labels only change the size the logits are
upsampled to. Flip and sliding-window inference are opt-in and built from pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from camix.checkpoint import CheckpointInfo, run_dir_of
from camix.config import Config
from camix.config_tree import replace
from camix.data.datasets import build_dataset
from camix.data.layouts import classes_of_config
from camix.errors import CamixError, DataError
from camix.functional import confusion_matrix, iou, miou
from camix.io import json_safe
from camix.labels import CLASS_NAMES, MIOU13_CLASSES, MIOU16_CLASSES
from camix.runtime import Dist, all_reduce_, select_device

SizeWH = tuple[int, int]
Net = Callable[[torch.Tensor], torch.Tensor]
"""Images [B,3,h,w] -> logits [B,C,h',w'] (any resolution)."""

METRICS: tuple[str, ...] = ("miou19", "miou16", "miou13")


@dataclass(frozen=True)
class EvalResult:
    """A confusion matrix and the scores derived from it."""

    confusion: torch.Tensor  # [C, C] int64, rows = ground truth
    names: tuple[str, ...] = CLASS_NAMES  # the class names (a folder dataset's, or the 19 Cityscapes classes)

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
        """Scores in percent: ``miou19`` (the mean over every class), ``miou16`` and ``miou13`` (only for the
        Cityscapes classes) and ``iou`` by class name."""
        scores = {"miou19": 100 * self.miou19}
        if self.names == CLASS_NAMES:
            scores.update({"miou16": 100 * self.miou16, "miou13": 100 * self.miou13})
        return {**scores, "iou": {name: 100 * v for name, v in zip(self.names, self.iou, strict=False)}}


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


# ----- a model or a checkpoint on data.val ------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """An evaluated checkpoint: the confusion matrix, what was evaluated and how."""

    result: EvalResult
    checkpoint: CheckpointInfo
    protocol: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-friendly (scores in percent, nan as null)."""
        return json_safe(
            {
                "checkpoint": self.checkpoint.as_dict(),
                "protocol": self.protocol,
                **self.result.as_dict(),
                "confusion": self.result.confusion.cpu().tolist(),
            }
        )


def evaluation_protocol(cfg: Config, overlap: float, images: int) -> dict[str, Any]:
    """The settings that decide the numbers: dataset, sizes, flip, sliding window."""
    val = cfg.data.val
    return {
        "dataset": val.name,
        "root": val.root,
        "split": val.split,
        "images": images,
        "size": list(val.size) if val.size else None,
        "scale": val.scale,
        "label_size": val.label_size,
        "flip": cfg.eval.flip,
        "sliding_window": list(cfg.eval.sliding_window) if cfg.eval.sliding_window else None,
        "overlap": overlap if cfg.eval.sliding_window else None,
    }


def evaluate_with(
    cfg: Config, model: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device, **options: Any
) -> EvalResult:
    """:func:`evaluate` with ``cfg.model.num_classes``, the protocol of ``cfg.eval`` (flip, sliding window and its
    overlap, unless ``options`` give one) and the class names of the run's labels."""
    options.setdefault("overlap", cfg.eval.overlap)
    result = evaluate(
        model,
        batches,
        num_classes=cfg.model.num_classes,
        device=device,
        flip=cfg.eval.flip,
        window=cfg.eval.sliding_window,
        **options,
    )
    return EvalResult(result.confusion, class_names(cfg))


def class_names(cfg: Config) -> tuple[str, ...]:
    """The class names of a run's labels: a folder dataset's classes file, else the 19 Cityscapes classes."""
    classes = classes_of_config(cfg.data)
    return CLASS_NAMES if classes is None else classes[0]


def evaluate_model(
    cfg: Config, model: torch.nn.Module, info: CheckpointInfo, *, overlap: float | None = None, progress: bool = True
) -> Evaluation:
    """Evaluate ``model`` on ``cfg.data.val`` with ``cfg.eval``'s protocol (batch size 1 for native-size labels);
    ``overlap`` replaces ``eval.overlap``."""
    overlap = cfg.eval.overlap if overlap is None else overlap
    device = select_device(cfg.train.device)
    dataset = build_dataset(cfg.data.val, crop=None, train=False)
    batch_size = 1 if cfg.data.val.label_size == "native" else cfg.eval.batch_size
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=cfg.data.workers)
    result = evaluate_with(cfg, model.to(device), loader, device, overlap=overlap, progress=progress)
    return Evaluation(result, info, evaluation_protocol(cfg, overlap, len(dataset)))  # type: ignore[arg-type]


def default_eval_dir(info: CheckpointInfo, cfg: Config) -> Path:
    """``<run_dir>/eval/<ckpt stem>[_teacher][_flip][_slidingWxH][_native]``."""
    name = info.path.stem + ("_teacher" if info.network == "teacher" else "")
    if cfg.eval.flip:
        name += "_flip"
    if cfg.eval.sliding_window:
        name += f"_sliding{cfg.eval.sliding_window[0]}x{cfg.eval.sliding_window[1]}"
    if cfg.data.val.label_size == "native":
        name += "_native"
    return run_dir_of(info.path) / "eval" / name


def with_protocol(cfg: Config, *, teacher: bool, flip: bool, window: SizeWH | None, native_labels: bool) -> Config:
    """``cfg`` with the evaluation switches of the command line applied (flags only ever turn things on)."""
    changes: dict[str, Any] = {"eval.model": "teacher" if teacher else cfg.eval.model}
    if flip:
        changes["eval.flip"] = True
    if window is not None:
        changes["eval.sliding_window"] = window
    if native_labels:
        changes["data.val.label_size"] = "native"
    return replace(cfg, **changes)


# ----- during training (distributed) --------------------------------------------------------------------------
class EvaluationFailed(CamixError):
    """An evaluation during training failed; the checkpoint of that iteration was saved before it."""

    exit_code = 2  # 1 when the cause is not bad input (e.g. out of memory)


def evaluation_failure(exc: Exception, iteration: int, hint: str) -> EvaluationFailed:
    """One line for an evaluation that raised: the iteration, the cause, and how to resume (exit 2 for bad data)."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    error = EvaluationFailed(f"the evaluation at iteration {iteration} failed ({reason}); {hint} (it evaluates first)")
    error.exit_code = 2 if isinstance(exc, DataError) else 1
    return error


def evaluate_distributed(
    model: nn.Module, cfg: Config, device: torch.device, info: Dist, stop: Callable[[], bool] | None = None
) -> EvalResult | None:
    """Evaluate on ``data.val``; under DDP each rank takes a shard and the confusion matrices are summed.

    The global RNG states are left as they were (a DataLoader draws its seed from them), so a run that
    evaluates and one resumed after that evaluation continue identically. ``stop`` is asked between batches;
    when it stops any rank, every rank returns None (after one agreeing all-reduce).
    """
    dataset = build_dataset(cfg.data.val, crop=None, train=False)
    if info.enabled:
        dataset = Subset(dataset, range(info.rank, len(dataset), info.world_size))  # type: ignore[arg-type]
    loader = DataLoader(
        dataset, batch_size=cfg.eval.batch_size, num_workers=cfg.data.workers, pin_memory=device.type == "cuda"
    )
    devices = [device] if device.type == "cuda" else []
    stopped = False
    with torch.random.fork_rng(devices=devices):
        try:
            result = evaluate_with(cfg, model, loader, device, stop=stop)
        except EvaluationStopped:
            stopped = True
    flag = all_reduce_(torch.tensor([float(stopped)], device=device), info, op="max")
    if flag.item() > 0:
        return None
    return EvalResult(all_reduce_(result.confusion, info), result.names)
