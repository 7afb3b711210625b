"""MIC's block mask and masked consistency loss (camix.functional.masking): goldens and a re-statement."""

from __future__ import annotations

import math

import pytest
import torch

from camix import functional as F


def restated_mask(batch: int, height: int, width: int, ratio: float, block: int, seed: int) -> torch.Tensor:
    """The reference's recipe written out: Python ``round`` of the grid, ``rand > ratio``, nearest upsampling as
    integer index arithmetic (pixel i takes cell floor(i * cells / size))."""
    rows, cols = max(1, round(height / block)), max(1, round(width / block))
    cells = torch.rand((batch, 1, rows, cols), generator=torch.Generator().manual_seed(seed)) > ratio
    r = torch.arange(height) * rows // height
    c = torch.arange(width) * cols // width
    return cells[:, 0][:, r[:, None], c[None, :]]


def test_every_cell_is_constant_and_the_grid_has_the_reference_size() -> None:
    mask = F.block_mask(3, 128, 192, 0.5, 32, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 128, 192) and mask.dtype == torch.bool
    cells = mask.unflatten(1, (4, 32)).unflatten(3, (6, 32))  # [B, 4, 32, 6, 32]
    assert torch.equal(cells, cells[:, :, :1, :, :1].expand_as(cells))
    assert 0 < int(mask.sum()) < mask.numel()


def test_the_kept_fraction_is_one_minus_the_ratio() -> None:
    mask = F.block_mask(4000, 64, 64, 0.7, 16, torch.Generator().manual_seed(1))  # 64 000 cells of 16x16
    kept = float(mask.float().mean())
    assert abs(kept - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 64000)
    assert float(F.block_mask(50, 64, 64, 0.0, 16, torch.Generator()).float().mean()) > 0.999  # r = 0 keeps all
    assert not F.block_mask(50, 64, 64, 1.0, 16, torch.Generator()).any()  # r = 1 hides everything


@pytest.mark.parametrize(
    ("height", "width", "block", "grid"),
    [
        (128, 256, 64, (2, 4)),  # multiples of the block
        (100, 150, 64, (2, 2)),  # 1.56 -> 2, 2.34 -> 2: cells of unequal size
        (96, 160, 64, (2, 2)),  # 1.5 and 2.5 round to even, as Python's round (the reference's)
        (40, 20, 64, (1, 1)),  # smaller than a block: one cell (the reference's grid would be empty)
        (33, 70, 8, (4, 9)),
    ],
)
def test_the_exact_mask_matches_the_restatement(height: int, width: int, block: int, grid: tuple[int, int]) -> None:
    mask = F.block_mask(5, height, width, 0.7, block, torch.Generator().manual_seed(7))
    assert torch.equal(mask, restated_mask(5, height, width, 0.7, block, seed=7))
    assert (max(1, round(height / block)), max(1, round(width / block))) == grid  # the rounding the test expects
    draws = torch.rand((5, 1, *grid), generator=torch.Generator().manual_seed(7))  # the mask's very draws
    assert int(mask.flatten(1).any(1).sum()) == int((draws > 0.7).flatten(1).any(1).sum())


def test_masking_zeroes_hidden_pixels_of_the_normalised_image() -> None:
    image = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2) - 10
    keep = torch.tensor([[[True, False], [False, True]], [[False, False], [True, True]]])
    out = F.mask_image(image, keep)
    assert torch.equal(out, image * keep[:, None].float())
    assert out[0, :, 0, 1].abs().sum() == 0 and torch.equal(out[1, :, 1], image[1, :, 1])


def test_the_loss_is_the_weighted_cross_entropy_mean_hand_computed() -> None:
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 0] = math.log(3.0)  # pixel 0: p(class 0) = 3/4
    label = torch.tensor([[[0, 1]]])  # pixel 1: uniform, p = 1/2
    weight = torch.tensor([[[0.5, 1.0]]])
    expected = (0.5 * -math.log(0.75) + 1.0 * -math.log(0.5)) / 2
    assert F.mic_loss(logits, label, weight).item() == pytest.approx(expected, rel=1e-6)
    ignored = torch.tensor([[[0, 255]]])  # an ignored pixel counts in neither sum
    assert F.mic_loss(logits, ignored, weight).item() == pytest.approx(0.5 * -math.log(0.75), rel=1e-6)


def test_the_loss_reaches_the_logits_only() -> None:
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    weight = torch.rand(2, 3, 3, requires_grad=True)
    F.mic_loss(logits, torch.randint(0, 4, (2, 3, 3)), weight).backward()
    assert logits.grad is not None and weight.grad is None
