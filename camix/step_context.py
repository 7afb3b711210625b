"""What a training step works with: its context (networks, config, generator, augmentation, prior), the teacher's
view of the target, and what the step returns (named losses, the mixed batch, the debug panel's tiles).

The method registry (:mod:`camix.methods`) builds the context (``build_context``) and runs the steps; the teacher
(:mod:`camix.teacher`) and the mask strategies (:mod:`camix.mixes`) read it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camix import functional as Fn
from camix.config import HrdaConfig, MethodConfig
from camix.data.batch import Batch


@dataclass
class StepContext:
    """What a step needs besides the batch. ``prior`` is the spatial prior at the target image size."""

    student: nn.Module
    teacher: nn.Module | None
    cfg: MethodConfig
    num_classes: int
    generator: torch.Generator
    augment: Callable[[Tensor], Tensor]
    total_iterations: int
    prior: Tensor | None = None
    relations: Mapping[int, Sequence[int]] = field(default_factory=dict)
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    iteration: int = 0
    imagenet: nn.Module | None = None  # the frozen initial network, when the FD loss is on
    teacher_group: int | None = None  # the teacher's passes per forward (None: all N + 1 in one forward)
    mic_augment: Callable[[Tensor], Tensor] | None = None  # MIC's own colour augmentation, when method.mic is on
    # set by the loop during a step (camix.step.optimisation_step): backpropagates a finished loss term at once
    backward: Callable[[Tensor], None] | None = None
    hrda: HrdaConfig | None = None  # model.hrda: the student is camix.models.HRDA, trained on context + detail
    output_stride: int = 8  # the network's output stride (HRDA's detail crop corners are multiples of twice it)


@dataclass(frozen=True)
class MixedBatch:
    """What a mixing step trained the student on (Sec. 3.2-3.3), after the flip and before the strong augmentation
    of the image: the statistics the loop logs and the tiles of the debug panel (the paper's Figure 2)."""

    image: Tensor  # [B,3,H,W] the mixed image x_M (Eq. 2), after the strong augmentation, detached
    mask: Tensor  # [B,H,W] bool M, True where the pixel comes from the target
    label: Tensor  # [B,H,W] int64 the mixed label Y_M (Eq. 4)
    significance: Tensor  # [B,H,W] the mixed significance mask U_M (Eq. 8), ones when the SigMask level is off
    pseudo_label: Tensor  # [B,H,W] int64 the teacher's pseudo-label of the target
    weight: Tensor  # [B,H,W] the mixed confidence weight


@dataclass
class StepOutput:
    """Named losses (summed by the loop, logged as ``loss/<name>``), for a mixing step its mixed batch, and the
    tiles of the debug panel: caption -> a tensor of the batch's first image (``camix.visualize.debug_panel``)."""

    losses: dict[str, Tensor]
    mixed: MixedBatch | None = None
    tiles: dict[str, Tensor] = field(default_factory=dict)
    released: set[str] = field(default_factory=set)  # terms already backpropagated (their values are detached)


def backward_finished(ctx: StepContext, out: StepOutput) -> None:
    """Backpropagate the loss terms a step has finished, when the loop lets it (``ctx.backward``), so that each term's
    graph (the student's activations) is freed before the step builds the next one: the peak memory is one forward's,
    not the sum of them. The gradient is the sum's, as one backward of the summed loss would give it (up to the
    order of floating-point accumulation). The terms stay in ``out.losses``, detached, for logging."""
    pending = [name for name in out.losses if name not in out.released]
    if ctx.backward is None or not pending:
        return
    ctx.backward(torch.stack([out.losses[name] for name in pending]).sum())
    for name in pending:
        out.losses[name] = out.losses[name].detach()
    out.released.update(pending)


@dataclass
class TeacherView:
    """The teacher's reading of the target batch (Sec. 3.1-3.3)."""

    prob: Tensor  # [B,C,H,W] softmax at the input size
    pseudo: Tensor  # [B,H,W] int64 argmax
    weight: Tensor  # [B,H,W] DACS confidence weight
    significance: Tensor | None  # [B,H,W] U_T, or None when the SigMask level is off


StepFn = Callable[[StepContext, Batch, Batch | None], StepOutput]


def upsampled_logits(model: nn.Module, image: Tensor) -> Tensor:
    """Model logits bilinearly upsampled to the input size (align_corners=True, as DACS), in float32."""
    return _upsampled(model(image), image.shape[-2:])


def _upsampled(logits: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """``logits`` in float32, bilinearly upsampled to ``size`` (align_corners=True, as DACS); on the CPU, the
    gradient that reaches the network's logits has its subnormal values set to zero (:func:`flush_subnormal`)."""
    if logits.requires_grad and logits.device.type == "cpu":
        logits.register_hook(flush_subnormal)
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=True)


def flush_subnormal(grad: Tensor) -> Tensor:
    """``grad`` with every subnormal value (0 < |g| < the dtype's smallest normal number, 1.2e-38 in float32) set to
    zero.

    A cross-entropy's gradient is the softmax probability divided by the number of pixels; with 2x256x256 pixels, a
    class whose logit lies some 76 below the pixel's largest (a probability under 1.5e-33) gets a subnormal one. x86
    CPUs compute with subnormal operands through a slow microcode path: after a few iterations on street scenes, a
    few thousand of the 41,382 gradient values of ResNet-101's classifier (2x19x33x33) are subnormal and its
    backward takes 400 ms instead of 25 ms (2 threads). Zeroing them here, once, on the small output grid, changes
    each value by less than 1.2e-38: on those 41,382 values the gradient passed to the layers below stays bitwise
    the same, and the classifier's weight and bias gradients move by under 2e-36 (a class whose every probability is
    that small).
    """
    tiny = torch.finfo(grad.dtype).tiny
    return grad.masked_fill(grad.abs() < tiny, 0.0)


@dataclass(frozen=True)
class Prediction:
    """The student's prediction of a training image, as its losses read it.

    Without HRDA: the logits at the input size. With HRDA (HRDA Sec. 3.3): the fused logits at the input size, the
    detail crop's own logits at the crop's size, where the crop lies, and the scale attention; :meth:`loss` then
    weights the fused and the detail losses (:func:`camix.functional.hrda_loss`).
    """

    logits: Tensor  # [B,C,H,W] float32 at the input size (HRDA: the fused prediction)
    features: Tensor | None = None  # the features DAFormer's feature distance compares (HRDA: the context's)
    detail: Tensor | None = None  # HRDA: [B,C,hh,ww] float32, the detail crop's logits at its input size
    box: tuple[int, int] = (0, 0)  # HRDA: (top, left) of the detail crop on the input
    attention: Tensor | None = None  # HRDA: [B,C or 1,h,w] the scale attention on the context's grid
    detail_weight: float = 0.0  # HRDA's lambda_d

    def loss(self, fn: Callable[..., Tensor], *targets: Any) -> Tensor:
        """``fn(logits, *targets)``; with HRDA ``(1 - lambda_d) fn(fused, *targets) + lambda_d fn(detail, *cropped)``,
        where every target with the input's height and width (labels, weights, masks, probabilities) is cropped to
        the detail crop and anything else (a scalar) is passed as is."""
        fused = fn(self.logits, *targets)
        if self.detail is None:
            return fused
        size = self.logits.shape[-2:]
        cropped = [self.crop(t) if isinstance(t, Tensor) and t.shape[-2:] == size else t for t in targets]
        return Fn.hrda_loss(fused, fn(self.detail, *cropped), self.detail_weight)

    def crop(self, tensor: Tensor) -> Tensor:
        """The detail crop's window of a tensor at the input size (its last two dimensions)."""
        assert self.detail is not None
        (top, left), (height, width) = self.box, self.detail.shape[-2:]
        return tensor[..., top : top + height, left : left + width]

    def crop_mask(self, like: Tensor) -> Tensor:
        """``[1, 1, H, W]``: 1 inside the detail crop, 0 elsewhere, at the input size of ``like``."""
        assert self.detail is not None
        inside = torch.zeros_like(like[:1, :1])
        (top, left), (height, width) = self.box, self.detail.shape[-2:]
        inside[..., top : top + height, left : left + width] = 1
        return inside

    def tiles(self, image: Tensor) -> dict[str, Tensor]:
        """HRDA's debug-panel tiles for the batch's first image, at the input size: the context (the input at 0.5,
        shown enlarged), the detail crop (the input darkened outside it) and the scale attention (mean over classes);
        none without HRDA."""
        if self.detail is None or self.attention is None:
            return {}
        first = image[:1].detach().float()
        size = first.shape[-2:]
        small = F.interpolate(first, scale_factor=0.5, mode="bilinear", align_corners=False)
        outside = 1 - self.crop_mask(first)
        attention = F.interpolate(self.attention[:1].detach().float().mean(1, keepdim=True), size=size, mode="nearest")
        return {
            "HRDA context (x0.5)": F.interpolate(small, size=size, mode="nearest")[0],
            "HRDA detail crop": (first - 80 * outside)[0],
            "HRDA scale attention": attention[0, 0],
        }


def predict(ctx: StepContext, image: Tensor, *, features: bool = False) -> Prediction:
    """The student's :class:`Prediction` of a training image (call it under ``ctx.autocast()``).

    Without HRDA it is :func:`upsampled_logits` (with ``features``: the logits and the network's features, the logits
    upsampled outside autocast), the same arithmetic as before HRDA existed. With HRDA (``ctx.hrda``) a detail crop is
    drawn from ``ctx.generator`` (:func:`camix.functional.detail_box`, corners on a grid of twice the output stride)
    and the student's training forward gives the fused and detail logits, the attention and the context's features.
    """
    hrda = ctx.hrda
    if hrda is None and not features:
        return Prediction(upsampled_logits(ctx.student, image))
    if hrda is None:
        raw, feats = ctx.student(image, return_features=True)
        with torch.autocast(raw.device.type, enabled=False):
            return Prediction(_upsampled(raw, image.shape[-2:]), feats)
    crop = (hrda.detail_crop[1], hrda.detail_crop[0])
    box = Fn.detail_box(image.shape[-2], image.shape[-1], crop, 2 * ctx.output_stride, ctx.generator)
    out = ctx.student(image, detail_box=box)
    return Prediction(
        _upsampled(out.fused, image.shape[-2:]),
        out.features if features else None,
        _upsampled(out.detail, crop),
        box,
        out.attention,
        hrda.detail_loss_weight,
    )
