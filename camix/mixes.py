"""The mask strategies (``method.mix``): the mask M of each baseline and of CAMix, and what each needs.

===================  ============================================  ===========================
``method.mix``       mask M (True = pixel taken from the target)    paper
===================  ============================================  ===========================
none                 all target (plain mean teacher)               Table 2/6 "Mean Teacher"
cutmix / cowmix      a box / a smooth random region                Table 2
classmix             not( half the classes of the source label )    DACS
inverse_classmix     half the classes of the teacher pseudo-label  iDACS
camix                contextual mask (prior + relations), Eq. 1    CAMix (Algorithm 1)
===================  ============================================  ===========================

A new strategy is a mask function, one :class:`MixStrategy` entry in :data:`MIXES` and its literal in
``MethodConfig.mix`` (docs/architecture.md). Masks, selections and thresholds stay on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from camix import functional as Fn
from camix.config import MethodConfig
from camix.data.batch import Batch
from camix.step_context import StepContext, TeacherView


def active_mix(cfg: MethodConfig, iteration: int) -> str:
    """The mask strategy at ``iteration``: every mix mode runs ClassMix (DACS) during the warm-up (released code)."""
    if iteration < cfg.warmup_iterations:
        return "classmix"
    return cfg.mix


def needs_significance(cfg: MethodConfig, mix: str) -> bool:
    """The SigMask level needs the N noisy teacher passes (Eq. 5-7) only for the SRC loss."""
    return cfg.significance_mask and cfg.consistency == "src" and MIXES[mix].significance


def crop_prior(prior: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """The spatial prior ``[C,H,W]`` cropped at each target crop's box -> ``[B,C,h,w]``, on the device.

    ``boxes`` is ``[B,4]`` (top, left, height, width) on the prior's device; every crop of a batch has the
    crop size ``size`` = (h, w) (the boxes' own height and width are not read, so nothing goes to the host).
    Where a crop overhangs an image smaller than the crop (padded by the loader, ``camix.data.transforms``),
    the prior is uniform (``1/C``): it leaves the teacher's argmax there unchanged.
    """
    h, w = size
    rows = boxes[:, 0, None] + torch.arange(h, device=boxes.device)  # [B,h]
    cols = boxes[:, 1, None] + torch.arange(w, device=boxes.device)  # [B,w]
    inside = (rows < prior.shape[-2])[:, :, None] & (cols < prior.shape[-1])[:, None, :]  # [B,h,w]
    rows, cols = rows.clamp(max=prior.shape[-2] - 1), cols.clamp(max=prior.shape[-1] - 1)
    crops = prior[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1)  # [C,B,h,w] -> [B,C,h,w]
    return torch.where(inside[:, None], crops, 1.0 / prior.shape[0])  # a Python scalar keeps the prior's dtype


def all_target(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """Plain mean teacher: every pixel comes from the target."""
    return torch.ones(tuple(view.pseudo.shape), dtype=torch.bool, device=view.pseudo.device)


def classmix(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """DACS: half the classes of the source label pasted onto the target."""
    return ~Fn.classmix_mask(source["label"], ctx.generator, count_ignore=ctx.cfg.classmix_count_ignore)


def inverse_classmix(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """iDACS: half the classes of the teacher pseudo-label pasted onto the source."""
    return Fn.classmix_mask(view.pseudo, ctx.generator)


def cutmix(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """CutMix: a source box pasted onto the target."""
    return ~Fn.cutmix_mask(tuple(view.pseudo.shape), ctx.generator)  # type: ignore[arg-type]


def cowmix(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """CowMix: a smooth random source region pasted onto the target."""
    shape = tuple(view.pseudo.shape)
    return ~Fn.cowmix_mask(shape, ctx.generator, sigma=ctx.cfg.cowmix_sigma, p=ctx.cfg.cowmix_p)  # type: ignore[arg-type]


def contextual(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """CAMix: the contextual mask of Eq. 1 from the teacher's probabilities, the cropped prior and the relations."""
    prior = None
    if ctx.cfg.spatial_prior and ctx.prior is not None:
        size = (view.prob.shape[-2], view.prob.shape[-1])
        prior = crop_prior(ctx.prior, target["box"], size).to(view.prob.dtype)
    return Fn.contextual_mask(view.prob, prior, ctx.relations, ctx.generator)


@dataclass(frozen=True)
class MixStrategy:
    """A mask strategy (``method.mix``): its mask M and what it needs besides the teacher's view."""

    mask: Callable[[StepContext, TeacherView, Batch, Batch], Tensor]  # bool [B,H,W], True = pixel from the target
    label: str  # the paper's name, in reports
    prior: bool = False  # reads the spatial prior (built only when method.spatial_prior is on)
    mixes: bool = True  # pastes source pixels (False: the plain mean teacher, whose ClassMix warm-up is optional)
    significance: bool = False  # the SigMask level (Sec. 3.3) applies to it


MIXES: dict[str, MixStrategy] = {
    "none": MixStrategy(all_target, "Mean Teacher", significance=True, mixes=False),
    "cutmix": MixStrategy(cutmix, "+ CutMix"),
    "cowmix": MixStrategy(cowmix, "+ CowMix"),
    "classmix": MixStrategy(classmix, "+ DACS"),
    "inverse_classmix": MixStrategy(inverse_classmix, "+ iDACS"),
    "camix": MixStrategy(contextual, "+ CAMix", prior=True, significance=True),
}


def target_mask(ctx: StepContext, mix: str, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """The mask M of strategy ``mix``: a bool [B,H,W] that is True where the mixed pixel comes from the target."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix strategy {mix!r}")
    return MIXES[mix].mask(ctx, view, source, target)
