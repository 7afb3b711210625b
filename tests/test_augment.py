"""The strong augmentation: kornia-era ColorJitter ranges, per-batch decisions, random op order (docs/fidelity.md)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from kornia.color import rgb_to_hsv
from kornia.enhance import adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation

from camix.augment import color_jitter, gaussian_blur


def reddish(batch: int) -> torch.Tensor:
    """A flat colour of hue 0 whose channels stay inside [0, 1] under every jitter (no clamping)."""
    return torch.tensor([0.45, 0.35, 0.35]).view(1, 3, 1, 1).expand(batch, 3, 2, 2).clone()


@pytest.mark.parametrize("random_order", [False, True])
def test_hue_shift_spans_a_quarter_turn_each_way(random_order: bool) -> None:
    """kornia's ColorJitter(hue=0.25) shifts hue by U(-0.25, 0.25) of a full turn: up to +-90 degrees."""
    out = color_jitter(reddish(4000), 0.25, 1.0, torch.Generator().manual_seed(0), random_order=random_order)
    hue = rgb_to_hsv(out)[:, 0, 0, 0]
    shift = torch.remainder(hue + math.pi, 2 * math.pi) - math.pi  # brightness/contrast/saturation keep hue here
    degrees = shift.abs().max().item() * 180 / math.pi
    assert 88.0 < degrees <= 90.0 + 1e-3
    assert (shift.abs() > math.pi / 4).float().mean().item() == pytest.approx(0.5, abs=0.04)  # uniform in +-90


def changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    return (before != after).flatten(1).any(1)


@pytest.mark.parametrize("op", ["jitter", "blur"])
def test_per_batch_decides_once_for_the_whole_batch(op: str) -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(6, 3, 9, 9, generator=g)

    def run(per_batch: bool) -> torch.Tensor:
        if op == "jitter":
            return changed(image, color_jitter(image, 0.25, 0.5, g, per_batch=per_batch))
        return changed(image, gaussian_blur(image, (5, 5), (0.5, 1.0), 0.5, g, per_batch=per_batch))

    batched = torch.stack([run(True) for _ in range(40)])
    assert all(row.all() or not row.any() for row in batched)
    assert 0 < batched[:, 0].float().mean() < 1
    per_image = torch.stack([run(False) for _ in range(40)])
    assert any(row.any() and not row.all() for row in per_image)


def test_random_order_applies_each_image_its_own_permutation() -> None:
    """Against a per-image loop over the same random draws (apply, 4 factors, order keys)."""
    batch, g = 64, torch.Generator().manual_seed(2)
    image = torch.rand(batch, 3, 5, 5, generator=torch.Generator().manual_seed(3))
    replay = torch.Generator().manual_seed(2)
    out = color_jitter(image, 0.25, 0.8, g, random_order=True)
    apply = torch.rand(batch, generator=replay) < 0.8
    draws = [torch.rand(batch, generator=replay) for _ in range(4)]
    keys = torch.rand(4 * batch, generator=replay).view(batch, 4)
    factors = [-0.25 + 0.5 * draws[0], 0.75 + 0.5 * draws[1], 0.75 + 0.5 * draws[2], -0.25 + 0.5 * draws[3]]
    ops = [
        lambda x, f: adjust_brightness(x, f),
        adjust_contrast,
        adjust_saturation,
        lambda x, f: adjust_hue(x, f * 2 * math.pi),
    ]
    orders = set()
    for i in range(batch):
        expected = image[i : i + 1]
        order = sorted(range(4), key=lambda k: keys[i, k].item())
        orders.add(tuple(order))
        if apply[i]:
            for k in order:
                expected = ops[k](expected, factors[k][i : i + 1])
        torch.testing.assert_close(out[i : i + 1], expected, rtol=0, atol=1e-5)
    assert len(orders) > 12  # many of the 24 permutations occur
    assert set(itertools.permutations(range(4))) >= orders
