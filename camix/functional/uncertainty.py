"""Significance mask of the teacher (paper Sec. 3.3, Eqs. 5-8): noisy passes, predictive entropy, threshold."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor


def noisy_copies(
    images: Tensor,
    n: int,
    generator: torch.Generator,
    *,
    std: float = 0.1,
    clip: float = 0.2,
    value_range: float = 255.0,
    official: bool = False,
) -> Tensor:
    """The N stochastic inputs of Eq. 5: each copy gets its own clipped Gaussian noise.

    ``copy_i = X + clamp(ε_i, −clip·R, clip·R)`` with ``ε_i ~ N(0, (std·R)²)`` i.i.d. per copy and pixel, where
    ``R = value_range`` (255 for Caffe-normalised BGR inputs, so the defaults are σ = 0.1 and a clip of 0.2 of
    the intensity range).

    Args:
        images: ``[B, C, H, W]`` float.
        n: number of copies ``N``.
        generator: the only source of randomness; on ``images``' device.
        std: noise std as a fraction of ``value_range``.
        clip: noise clip as a fraction of ``value_range``.
        value_range: the intensity range of ``images``.
        official: reproduce the released code (docs/fidelity.md): its clamp bounds are swapped, so every
            copy is exactly ``images − 0.2`` and all copies are identical (no randomness is drawn).

    Returns:
        ``[N, B, C, H, W]``, ``images``' dtype and device.
    """
    if official:
        return (images - 0.2).unsqueeze(0).repeat(n, *([1] * images.dim()))
    shape = (n, *images.shape)
    noise = torch.randn(shape, generator=generator, device=images.device, dtype=images.dtype)
    bound = clip * value_range
    return images.unsqueeze(0) + (noise * (std * value_range)).clamp_(-bound, bound)


def predictive_entropy(probs: Tensor, *, official: bool = False) -> Tensor:
    """Predictive entropy of Eqs. 5-6: ``ζ = −Σ_c p̄_c log p̄_c`` with ``p̄ = mean over the N passes``.

    Natural logarithm; ``0·log 0 = 0``, so the result is never NaN for valid probabilities.

    Args:
        probs: ``[N, B, C, H, W]`` softmax probabilities of the N stochastic passes.
        official: compute ``p̄·log p̄`` literally, as the released code does: a probability that underflowed to 0
            gives ``0·(−inf) = NaN``, and so a NaN entropy at that pixel (which then fails ``ζ < H``).

    Returns:
        ``[B, H, W]``, in ``[0, ln C]`` (or NaN with ``official``).

    Raises:
        ValueError: ``probs`` is not 5-D.
    """
    if probs.dim() != 5:
        raise ValueError(f"predictive_entropy expects [N, B, C, H, W] probabilities, got shape {tuple(probs.shape)}")
    mean = probs.mean(dim=0)
    if official:
        return -(mean * mean.log()).sum(dim=1)
    return -torch.special.xlogy(mean, mean).sum(dim=1)


def dynamic_threshold(
    step: int,
    ramp_steps: int,
    *,
    beta: float = 0.75,
    gamma: float = -5.0,
    k_sup: float,
    form: Literal["code", "paper"] = "code",
) -> float:
    """Dynamic entropy threshold H(t) of Eq. 7, in the authors' code's form (default) or as printed.

    ``form="code"``: ``H = (β + (1 − β)·exp(γ·(1 − min(t / T, 1))²))·K_sup``: it rises from
    ``(β + (1 − β)e^γ)·K_sup`` at ``t = 0`` to ``K_sup`` at ``t = T`` and stays there. With ``K_sup = ln C`` this
    is at least 0.75·ln C, above the entropy of almost every pixel of a trained model, so the mask keeps nearly
    everything. ``form="paper"``: Eq. 7 as typeset, ``H = β + (1 − β)·exp(γ·(1 − min(t / T, 1))²)·K_sup``, which
    rises from about β to ``β + (1 − β)·K_sup`` nats and does mask uncertain pixels.

    Args:
        step: current iteration ``t``.
        ramp_steps: ramp length ``T`` (``<= 0``: no ramp, the final value).
        beta: β.
        gamma: γ (negative).
        k_sup: ``K_sup``, the entropy's upper bound; ``ln C`` at the call sites.
        form: which reading of Eq. 7.

    Returns:
        The threshold, a Python float.
    """
    progress = 1.0 if ramp_steps <= 0 else min(step / ramp_steps, 1.0)
    ramp = math.exp(gamma * (1.0 - progress) ** 2)
    if form == "paper":
        return beta + (1.0 - beta) * ramp * k_sup
    return (beta + (1.0 - beta) * ramp) * k_sup


def significance_mask(entropy: Tensor, threshold: float | Tensor) -> Tensor:
    """Target significance mask of Sec. 3.3: ``U_T = 1[ζ < H]`` (``U_S`` is all ones; mix them with Eq. 8).

    Args:
        entropy: ``[B, H, W]`` predictive entropy ζ.
        threshold: H (a float, or a tensor broadcastable to ``entropy``).

    Returns:
        ``[B, H, W]`` in ``entropy``'s float dtype: 1 where ``ζ < H``, else 0 (also where ζ is NaN).
    """
    return (entropy < threshold).to(entropy.dtype)
