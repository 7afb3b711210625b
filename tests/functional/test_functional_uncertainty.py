"""Noisy teacher passes, predictive entropy, dynamic threshold, significance mask (Eqs. 5-8) and the EMA (Eq. 3)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import camix.functional as F


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------- noisy_copies
def test_noisy_copies_golden() -> None:
    images = torch.zeros(1, 1, 4, 4)
    # value_range 1, std 0.1, clip 0.2: copies = clamp(0.1·ε, −0.2, 0.2), ε drawn as one [N, B, C, H, W] tensor
    expected = (torch.randn((2, 1, 1, 4, 4), generator=gen(3)) * 0.1).clamp(-0.2, 0.2)
    assert torch.equal(F.noisy_copies(images, 2, gen(3), value_range=1.0), expected)


def test_noisy_copies_differ_and_have_the_right_scale() -> None:
    images = torch.rand(2, 3, 32, 32) * 255
    copies = F.noisy_copies(images, 4, gen(1))
    assert copies.shape == (4, 2, 3, 32, 32) and copies.dtype == images.dtype
    noise = copies - images
    assert noise.abs().max() <= 0.2 * 255 + 1e-3  # clipped at ±0.2 of the range
    assert all(not torch.equal(copies[i], copies[j]) for i in range(4) for j in range(i + 1, 4))
    # std of N(0, 25.5²) clipped at ±2σ is 0.9594σ = 24.5
    assert 23.5 < noise.std().item() < 25.5
    assert torch.equal(F.noisy_copies(images, 4, gen(1)), copies)


def test_noisy_copies_official_are_identical_minus_0_2() -> None:
    images = torch.rand(2, 3, 4, 4) * 255
    copies = F.noisy_copies(images, 3, gen(), official=True)
    assert copies.shape == (3, 2, 3, 4, 4)
    for i in range(3):
        assert torch.equal(copies[i], images - 0.2)


# ---------------------------------------------------------------------------------------------- predictive_entropy
def test_predictive_entropy_golden() -> None:
    probs = torch.zeros(2, 1, 2, 4, 4)  # N = 2 passes, C = 2
    probs[:, :, 0] = 1.0  # default: both passes certain of class 0 -> p̄ = (1, 0) -> 0 (0·log 0 = 0, not NaN)
    probs[0, 0, :, 0, 0] = torch.tensor([1.0, 0.0])  # pixel (0,0): passes disagree -> p̄ = (1/2, 1/2) -> ln 2
    probs[1, 0, :, 0, 0] = torch.tensor([0.0, 1.0])
    probs[:, 0, :, 1, 1] = torch.tensor([0.75, 0.25])  # pixel (1,1): −(0.75 ln 0.75 + 0.25 ln 0.25) = 0.5623
    entropy = F.predictive_entropy(probs)
    assert entropy.shape == (1, 4, 4) and not entropy.isnan().any()
    assert entropy[0, 0, 0].item() == pytest.approx(math.log(2))
    assert entropy[0, 1, 1].item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert entropy[0, 3, 3].item() == 0.0
    with pytest.raises(ValueError):
        F.predictive_entropy(probs[0])


def test_predictive_entropy_is_bounded_by_ln_c() -> None:
    probs = torch.randn(8, 2, 19, 8, 8, generator=gen(2)).softmax(2)
    entropy = F.predictive_entropy(probs)
    assert (entropy >= 0).all() and (entropy <= math.log(19) + 1e-5).all()
    uniform = torch.full((3, 1, 19, 2, 2), 1 / 19)
    assert torch.allclose(F.predictive_entropy(uniform), torch.full((1, 2, 2), math.log(19)))


# -------------------------------------------------------------------------------- dynamic_threshold, significance
def test_dynamic_threshold_endpoints_and_midpoint() -> None:
    k = math.log(19)
    assert F.dynamic_threshold(0, 100, k_sup=k) == pytest.approx((0.75 + 0.25 * math.exp(-5.0)) * k)  # 0.75k + small
    assert F.dynamic_threshold(100, 100, k_sup=k) == pytest.approx(k)
    assert F.dynamic_threshold(10**6, 100, k_sup=k) == pytest.approx(k)
    # t = T/2: exp(−5·(1/2)²) = exp(−1.25) = 0.2865 -> (0.75 + 0.25·0.2865)·k
    assert F.dynamic_threshold(50, 100, k_sup=k) == pytest.approx((0.75 + 0.25 * math.exp(-1.25)) * k)
    assert F.dynamic_threshold(3, 0, k_sup=2.0) == 2.0  # no ramp
    values = [F.dynamic_threshold(t, 100, beta=0.5, gamma=-3.0, k_sup=1.0) for t in range(0, 120, 10)]
    assert values == sorted(values) and values[0] == pytest.approx(0.5 + 0.5 * math.exp(-3.0))


def test_dynamic_threshold_as_printed_in_the_paper() -> None:
    k = math.log(19)  # 2.944
    # Eq. 7 as typeset: H = β + (1 − β)·exp(γ(1 − t/T)²)·K_sup -> 0.75 + 0.25·e^−5·2.944 = 0.7550 at t = 0
    assert F.dynamic_threshold(0, 100, k_sup=k, form="paper") == pytest.approx(0.75 + 0.25 * math.exp(-5.0) * k)
    # and 0.75 + 0.25·2.944 = 1.486 nats at the end of the ramp (the code's form reaches 2.944)
    assert F.dynamic_threshold(100, 100, k_sup=k, form="paper") == pytest.approx(1.4861, abs=1e-4)
    assert F.dynamic_threshold(100, 100, k_sup=k, form="code") == pytest.approx(k)


def test_significance_mask_golden() -> None:
    entropy = torch.tensor([[[0.1, 0.5, 0.7, 0.0]] * 4])
    mask = F.significance_mask(entropy, 0.5)  # strict: 0.5 < 0.5 is False
    assert mask.dtype == torch.float32
    assert mask.tolist() == [[[1.0, 0.0, 0.0, 1.0]] * 4]


# ---------------------------------------------------------------------------------------------------------- EMA
def test_ema_alpha_schedule() -> None:
    assert F.ema_alpha(0) == 0.0  # warm start: the first update copies the student
    assert F.ema_alpha(1) == 0.5
    assert F.ema_alpha(9) == pytest.approx(0.9)
    assert F.ema_alpha(99) == pytest.approx(0.99) and F.ema_alpha(10**6) == 0.99
    assert F.ema_alpha(10**6, alpha_max=0.999) == 0.999


def pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    student = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    student[1].running_mean.fill_(5.0)
    return teacher, student


def test_ema_update_warm_start_copies_the_student() -> None:
    teacher, student = pair()
    F.ema_update_(teacher, student, F.ema_alpha(0))
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        assert torch.equal(t, s)
    assert teacher[1].running_mean.eq(0).all()  # buffers left alone by default


def test_ema_update_golden_average_and_buffers() -> None:
    teacher, student = pair()
    with torch.no_grad():
        for p in teacher.parameters():
            p.fill_(1.0)
        for p in student.parameters():
            p.fill_(3.0)
    F.ema_update_(teacher, student, 0.75, copy_buffers=True)  # 0.75·1 + 0.25·3 = 1.5
    assert all(torch.allclose(p, torch.full_like(p, 1.5)) for p in teacher.parameters())
    assert teacher[1].running_mean.eq(5.0).all()
    assert all(p.grad is None for p in teacher.parameters()) and all(
        torch.equal(p, torch.full_like(p, 3.0)) for p in student.parameters()
    )
    with pytest.raises(ValueError):
        F.ema_update_(teacher, nn.Sequential(nn.Conv2d(3, 4, 3)), 0.5)


def test_official_entropy_is_nan_where_a_probability_underflowed_and_the_mask_drops_it() -> None:
    """The released code computes p log p literally: 0 * log 0 = NaN, and NaN < H is false, so U = 0 there."""
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]).T.reshape(1, 1, 3, 1, 2)  # [N, B, C, H, W]
    official = F.predictive_entropy(probs, official=True)
    assert torch.isnan(official[0, 0, 0]) and not torch.isnan(official[0, 0, 1])
    ours = F.predictive_entropy(probs)
    assert ours[0, 0, 0].item() == pytest.approx(math.log(2))
    assert official[0, 0, 1].item() == pytest.approx(ours[0, 0, 1].item())
    assert F.significance_mask(official, 5.0).tolist() == [[[0.0, 1.0]]]
