"""Consistency losses (paper Eq. 9, Table 5) and DACS's confidence weight of pseudo-labels."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from camix.labels import IGNORE_INDEX

ConsistencyKind = Literal["src", "ce", "mse"]
WeightMode = Literal["uniform", "pixel", "none"]


def src_loss(
    logits: Tensor,
    target: Tensor,
    sig_mask: Tensor,
    pixel_weight: Tensor | None = None,
    *,
    ignore_index: int = IGNORE_INDEX,
    official: bool = False,
) -> Tensor:
    """Significance-reweighted consistency loss of Eq. 9: ``Σ(U_M·w·CE) / Σ U_M`` over non-ignored pixels.

    ``U_M`` counts only where the target is not ``ignore_index``. When ``Σ U_M = 0`` the result is an exact 0
    that is still connected to ``logits`` (zero gradient), without branching on tensor values. ``sig_mask`` and
    ``pixel_weight`` are detached: the gradient flows only through ``logits``.

    Args:
        logits: ``[B, C, H, W]`` student logits on the mixed image.
        target: ``[B, H, W]`` int64 mixed (pseudo-)labels ``Y_M``.
        sig_mask: ``[B, H, W]`` mixed significance mask ``U_M`` (Eq. 8), 0/1 or soft.
        pixel_weight: ``[B, H, W]`` extra per-pixel weight ``w`` (DACS's confidence weight), or None for 1.
        ignore_index: label that contributes nothing.
        official: reproduce the released code (docs/fidelity.md): ``mean(CE·w)`` over all ``B·H·W`` pixels,
            ignored ones counting 0 in the numerator but 1 in the denominator; ``sig_mask`` has no effect.

    Returns:
        Scalar loss in ``logits``' dtype.
    """
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    if pixel_weight is not None:
        ce = ce * pixel_weight.detach()
    if official:
        return ce.mean()
    significance = sig_mask.detach().to(ce.dtype) * (target != ignore_index).to(ce.dtype)
    total = significance.sum()
    return (significance * ce).sum() / torch.where(total > 0, total, torch.ones_like(total))


def consistency_loss(
    logits: Tensor,
    target: Tensor,
    sig_mask: Tensor | None,
    pixel_weight: Tensor | None,
    kind: ConsistencyKind = "src",
    *,
    ignore_index: int = IGNORE_INDEX,
    official: bool = False,
) -> Tensor:
    """The consistency loss ``L_con`` of Eq. 11 and its Table 5 alternatives.

    * ``"src"``: :func:`src_loss` (Eq. 9).
    * ``"ce"``: the plain weighted CE of DACS: ``Σ w·CE / (number of non-ignored pixels)``; the significance mask
      is not used. With ``official`` it is DACS's exact ``mean(CE·w)`` over all pixels.
    * ``"mse"``: mean-teacher MSE between the student softmax and the *one-hot pseudo-label*: per pixel
      ``(1/C)·Σ_c (softmax_c − onehot_c)²``, times ``w``, averaged over the non-ignored pixels (with ``official``:
      over all pixels, ignored ones counting 0); the significance mask is not used.

    Args:
        logits: ``[B, C, H, W]`` student logits.
        target: ``[B, H, W]`` int64 mixed (pseudo-)labels.
        sig_mask: ``[B, H, W]`` significance mask (only ``"src"`` reads it; may be None otherwise).
        pixel_weight: ``[B, H, W]`` per-pixel weight, or None for 1.
        kind: ``"src"``, ``"ce"`` or ``"mse"``.
        ignore_index: label that contributes nothing.
        official: see above and :func:`src_loss`.

    Returns:
        Scalar loss.

    Raises:
        ValueError: unknown ``kind``, or ``"src"`` without a significance mask.
    """
    if kind == "src":
        if sig_mask is None:
            raise ValueError('consistency_loss(kind="src") needs a significance mask')
        return src_loss(logits, target, sig_mask, pixel_weight, ignore_index=ignore_index, official=official)
    ones = torch.ones(target.shape, dtype=logits.dtype, device=logits.device)
    if kind == "ce":
        return src_loss(logits, target, ones, pixel_weight, ignore_index=ignore_index, official=official)
    if kind == "mse":
        return _mse_loss(logits, target, pixel_weight, ignore_index=ignore_index, official=official)
    raise ValueError(f"unknown consistency loss {kind!r}; expected 'src', 'ce' or 'mse'")


def _mse_loss(
    logits: Tensor, target: Tensor, pixel_weight: Tensor | None, *, ignore_index: int, official: bool
) -> Tensor:
    valid = target != ignore_index
    onehot = F.one_hot(torch.where(valid, target, torch.zeros_like(target)), logits.shape[1])
    error = (logits.softmax(dim=1) - onehot.permute(0, 3, 1, 2).to(logits.dtype)).square().mean(dim=1)
    weight = valid.to(logits.dtype)
    if pixel_weight is not None:
        weight = weight * pixel_weight.detach()
    if official:
        return (weight * error).mean()
    count = valid.sum().to(logits.dtype)
    return (weight * error).sum() / torch.where(count > 0, count, torch.ones_like(count))


def soft_mse_loss(logits: Tensor, teacher_prob: Tensor, weight: Tensor | float = 1.0) -> Tensor:
    """Table 5's MSE consistency as the released code computes it: ``w · mean((softmax(logits) − P_T)²)``.

    The mean runs over all ``B·C·H·W`` elements, the significance mask is not used, and the teacher's soft
    prediction ``P_T`` is that of the *unmixed* target image (so it is compared with the student's prediction of
    the mixed image also at the pixels pasted from the source). ``w`` is DACS's confident fraction of the batch.

    Args:
        logits: ``[B, C, H, W]`` student logits on the mixed image.
        teacher_prob: ``[B, C, H, W]`` teacher softmax on the unmixed target (detached here).
        weight: a scalar factor (float or 0-d tensor, detached here).

    Returns:
        Scalar loss.
    """
    if isinstance(weight, Tensor):
        weight = weight.detach()
    return weight * (logits.softmax(dim=1) - teacher_prob.detach()).square().mean()


def pseudo_label_weight(
    max_prob: Tensor, threshold: float = 0.968, mode: WeightMode = "uniform", *, per_image: bool = True
) -> Tensor:
    """DACS's confidence weight of pseudo-labelled pixels (the ``w`` of :func:`src_loss`).

    * ``"uniform"``: the fraction of pixels with ``max_prob >= threshold``, broadcast to every pixel (per image;
      with ``per_image=False`` over the whole batch, as the DACS code computes it).
    * ``"pixel"``: 1 where ``max_prob >= threshold``, else 0.
    * ``"none"``: all ones.

    Args:
        max_prob: ``[B, H, W]`` teacher max-softmax probability.
        threshold: confidence threshold (0.968 in DACS and CAMix).
        mode: ``"uniform"``, ``"pixel"`` or ``"none"``.
        per_image: ``"uniform"`` only: the fraction per image (True) or over the batch (False).

    Returns:
        ``[B, H, W]`` in ``max_prob``'s dtype.

    Raises:
        ValueError: unknown ``mode``.
    """
    confident = (max_prob >= threshold).to(max_prob.dtype)
    if mode == "pixel":
        return confident
    if mode == "none":
        return torch.ones_like(max_prob)
    if mode == "uniform":
        dims = (-2, -1) if per_image else tuple(range(max_prob.dim()))
        return confident.mean(dim=dims, keepdim=True).expand_as(max_prob).clone()
    raise ValueError(f"unknown confidence weight mode {mode!r}; expected 'uniform', 'pixel' or 'none'")
