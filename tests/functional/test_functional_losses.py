"""SRC loss (Eq. 9), its Table 5 alternatives and DACS's pseudo-label confidence weight."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF

import camix.functional as F

LN4, LN43 = math.log(4), math.log(4 / 3)


def golden_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # logits (0, ln 3) everywhere -> softmax (1/4, 3/4): CE(target 0) = ln 4, CE(target 1) = ln(4/3)
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 1] = math.log(3)
    target = torch.ones(1, 4, 4, dtype=torch.int64)
    target[0, 0] = 0  # row 0: four pixels of class 0
    target[0, 3, 3] = 255  # one ignored pixel: 11 pixels of class 1 remain
    sig = torch.ones(1, 4, 4)
    sig[0, 1] = 0.0  # row 1 (four class-1 pixels) is uncertain
    return logits, target, sig


# --------------------------------------------------------------------------------------------------------- src_loss
def test_src_loss_golden() -> None:
    logits, target, sig = golden_inputs()
    # U counted where not ignored: row 0 (4) + rows 2-3 without (3,3) (7) = 11
    # numerator: 4·ln 4 + 7·ln(4/3)
    assert F.src_loss(logits, target, sig).item() == pytest.approx((4 * LN4 + 7 * LN43) / 11, rel=1e-6)
    weight = torch.ones(1, 4, 4)
    weight[0, 0] = 0.5  # w halves row 0; the denominator stays Σ U = 11
    assert F.src_loss(logits, target, sig, weight).item() == pytest.approx((2 * LN4 + 7 * LN43) / 11, rel=1e-6)


def test_src_loss_official_is_mean_ce_times_w_over_all_pixels() -> None:
    logits, target, sig = golden_inputs()
    # (4·ln 4 + 11·ln(4/3) + 0 for the ignored pixel) / 16, whatever U is
    expected = (4 * LN4 + 11 * LN43) / 16
    assert F.src_loss(logits, target, sig, official=True).item() == pytest.approx(expected, rel=1e-6)
    assert F.src_loss(logits, target, torch.zeros(1, 4, 4), official=True).item() == pytest.approx(expected, rel=1e-6)
    weight = torch.rand(1, 4, 4)
    ce = TF.cross_entropy(logits, target, ignore_index=255, reduction="none")
    assert torch.allclose(F.src_loss(logits, target, sig, weight, official=True), (ce * weight).mean())


def test_src_loss_equals_plain_ce_with_unit_mask_and_weights() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 19, 8, 8, generator=g)
    target = torch.randint(0, 19, (2, 8, 8), generator=g)
    target[0, :2] = 255
    plain = TF.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(F.src_loss(logits, target, torch.ones(2, 8, 8)), plain)
    assert torch.allclose(F.src_loss(logits, target, torch.ones(2, 8, 8), torch.ones(2, 8, 8)), plain)


def test_src_loss_gradient_flows_only_through_logits() -> None:
    logits, target, sig = golden_inputs()
    logits.requires_grad_(True)
    sig.requires_grad_(True)
    weight = torch.full((1, 4, 4), 0.5, requires_grad=True)
    F.src_loss(logits, target, sig, weight).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert sig.grad is None and weight.grad is None
    assert logits.grad[0, :, 1].abs().sum() == 0  # uncertain row: no gradient
    assert logits.grad[0, :, 3, 3].abs().sum() == 0  # ignored pixel: no gradient


def test_src_loss_empty_mask_is_zero_with_a_graph() -> None:
    logits, target, _ = golden_inputs()
    logits.requires_grad_(True)
    loss = F.src_loss(logits, target, torch.zeros(1, 4, 4))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))
    all_ignored = torch.full((1, 4, 4), 255)
    assert F.src_loss(logits, all_ignored, torch.ones(1, 4, 4)).item() == 0.0  # U only counts non-ignored pixels


# ------------------------------------------------------------------------------------------------ consistency_loss
def test_consistency_loss_kinds_golden() -> None:
    logits, target, sig = golden_inputs()
    src = F.consistency_loss(logits, target, sig, None, kind="src")
    assert torch.equal(src, F.src_loss(logits, target, sig))
    # ce: Σ w·CE over the 15 non-ignored pixels, U unused
    ce = F.consistency_loss(logits, target, sig, None, kind="ce")
    assert ce.item() == pytest.approx((4 * LN4 + 11 * LN43) / 15, rel=1e-6)
    assert F.consistency_loss(logits, target, None, None, kind="ce", official=True).item() == pytest.approx(
        (4 * LN4 + 11 * LN43) / 16, rel=1e-6
    )
    # mse: softmax (1/4, 3/4); target 0: ((3/4)² + (3/4)²)/2 = 0.5625, target 1: ((1/4)² + (1/4)²)/2 = 0.0625
    # -> (4·0.5625 + 11·0.0625) / 15 = 2.9375 / 15
    mse = F.consistency_loss(logits, target, None, None, kind="mse")
    assert mse.item() == pytest.approx(2.9375 / 15, rel=1e-6)
    weight = torch.ones(1, 4, 4)
    weight[0, 0] = 0.0  # dropping row 0 leaves 11·0.0625 / 15
    assert F.consistency_loss(logits, target, None, weight, kind="mse").item() == pytest.approx(0.6875 / 15, rel=1e-6)
    with pytest.raises(ValueError):
        F.consistency_loss(logits, target, sig, None, kind="kl")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        F.consistency_loss(logits, target, None, None, kind="src")


def test_consistency_losses_backpropagate_to_logits() -> None:
    logits, target, sig = golden_inputs()
    for kind in ("src", "ce", "mse"):
        x = logits.clone().requires_grad_(True)
        F.consistency_loss(x, target, sig, torch.ones(1, 4, 4), kind=kind).backward()  # type: ignore[arg-type]
        assert x.grad is not None and x.grad.abs().sum() > 0 and not x.grad.isnan().any()


# --------------------------------------------------------------------------------------------- pseudo_label_weight
def test_pseudo_label_weight_golden() -> None:
    max_prob = torch.full((2, 4, 4), 0.5)
    max_prob[0, 0] = 0.968  # image 0: 4 of 16 pixels reach the threshold (>= is inclusive) -> 0.25
    max_prob[1, 1:] = 0.99  # image 1: 12 of 16 -> 0.75
    uniform = F.pseudo_label_weight(max_prob)
    assert uniform.shape == (2, 4, 4)
    assert torch.equal(uniform[0], torch.full((4, 4), 0.25)) and torch.equal(uniform[1], torch.full((4, 4), 0.75))
    batch = F.pseudo_label_weight(max_prob, per_image=False)  # (4 + 12) / 32 = 0.5
    assert torch.equal(batch, torch.full((2, 4, 4), 0.5))
    pixel = F.pseudo_label_weight(max_prob, mode="pixel")
    assert torch.equal(pixel, (max_prob >= 0.968).float()) and pixel.sum() == 16
    assert torch.equal(F.pseudo_label_weight(max_prob, mode="none"), torch.ones(2, 4, 4))
    assert F.pseudo_label_weight(max_prob, 0.4).eq(1).all()
    with pytest.raises(ValueError):
        F.pseudo_label_weight(max_prob, mode="soft")  # type: ignore[arg-type]


def test_soft_mse_is_a_weighted_mean_over_every_element() -> None:
    """Table 5's released MSE: w * mean over B*C*H*W of (softmax(logits) - P_T)^2 (hand-computed, 2 classes)."""
    logits = torch.tensor([[[[0.0]], [[math.log(3.0)]]]], requires_grad=True)  # softmax = (0.25, 0.75)
    teacher = torch.tensor([[[[1.0]], [[0.0]]]])
    loss = F.soft_mse_loss(logits, teacher, torch.tensor(0.5))
    assert loss.item() == pytest.approx(0.5 * (0.75**2 + 0.75**2) / 2)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
