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

from camix.config import MethodConfig
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
    logits = model(image)
    return F.interpolate(logits.float(), size=image.shape[-2:], mode="bilinear", align_corners=True)
