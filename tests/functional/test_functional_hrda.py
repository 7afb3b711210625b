"""HRDA's fusion, loss weighting, detail crop and sliding windows: goldens and the reference's recipe restated."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from camix import functional as Fn


def restated_fusion(
    lr: torch.Tensor, hr: torch.Tensor, att: torch.Tensor, crop: tuple[int, int, int, int]
) -> torch.Tensor:
    """HRDA's head, written out: ``crop`` = (y1, y2, x1, x2) of the detail in the full-resolution input, output
    stride ``os`` = 4 and the context at scale 0.5: the attention masked with the crop divided by os / 0.5, ``(1 - a)
    lr``, both resized x2 (bilinear, align_corners False), the detail written into zeros at the crop divided by os,
    ``a * hr + lr``."""
    os_, scale = 4, 0.5
    y1, y2, x1, x2 = (int(v / (os_ / scale)) for v in crop)
    mask = lr.new_zeros([lr.shape[0], 1, *lr.shape[2:]])
    mask[:, :, y1:y2, x1:x2] = 1
    att = att * mask
    lr = (1 - att) * lr
    up_lr = F.interpolate(lr, scale_factor=2, mode="bilinear", align_corners=False)
    att = F.interpolate(att, scale_factor=2, mode="bilinear", align_corners=False)
    inserted = torch.zeros_like(up_lr)
    y1, y2, x1, x2 = (int(v / os_) for v in crop)
    inserted[:, :, y1:y2, x1:x2] = hr
    return att * inserted + up_lr


@pytest.mark.parametrize("classwise", [True, False])
def test_fusion_matches_the_restated_reference(classwise: bool) -> None:
    torch.manual_seed(0)
    lr = torch.randn(2, 5, 8, 12)  # a 64x96 input at scale 0.5 -> 32x48 -> output stride 4 -> 8x12
    hr = torch.randn(2, 5, 8, 8)  # a 32x32 detail crop of the 64x96 input -> 8x8
    att = torch.rand(2, 5 if classwise else 1, 8, 12)
    crop = (16, 48, 40, 72)  # y1, y2, x1, x2 in input pixels, corners on a grid of 8
    fused = Fn.hrda_fuse(lr, hr, att, (crop[0] // 4, crop[2] // 4))
    assert fused.shape == (2, 5, 16, 24)
    assert torch.allclose(fused, restated_fusion(lr, hr, att, crop), atol=1e-5)


def test_fusion_goldens() -> None:
    lr = torch.full((1, 1, 1, 1), 2.0)
    hr = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    half = Fn.hrda_fuse(lr, hr, torch.full((1, 1, 1, 1), 0.5), (0, 0))
    assert torch.allclose(half, 0.5 * hr + 1.0)  # constant maps stay constant when upsampled
    assert torch.allclose(Fn.hrda_fuse(lr, hr, torch.ones(1, 1, 1, 1), (0, 0)), hr)  # all detail
    assert torch.allclose(Fn.hrda_fuse(lr, hr, torch.zeros(1, 1, 1, 1), (0, 0)), torch.full((1, 1, 2, 2), 2.0))
    outside = Fn.hrda_fuse(torch.full((1, 1, 2, 2), 2.0), hr, torch.ones(1, 1, 2, 2), (0, 2))
    assert torch.equal(outside[..., :1], torch.full((1, 1, 4, 1), 2.0))  # far from the detail: the context only
    with pytest.raises(ValueError, match="does not fit"):
        Fn.hrda_fuse(lr, hr, torch.ones(1, 1, 1, 1), (1, 0))


def test_loss_weighting_goldens_and_restatement() -> None:
    fused, detail = torch.tensor(2.0), torch.tensor(10.0)
    assert Fn.hrda_loss(fused, detail, 0.1).item() == pytest.approx(0.9 * 2.0 + 0.1 * 10.0)
    # the reference: loss_seg *= (1 - lr_w - hr_w) with lr_w = 0, hr.loss_seg *= hr_w, summed by the optimiser
    assert Fn.hrda_loss(fused, detail, 0.3).item() == pytest.approx((fused * (1 - 0 - 0.3) + detail * 0.3).item())
    assert Fn.hrda_loss(fused, detail, 0.0).item() == 2.0


def restated_slide(windows: torch.Tensor, boxes: list[tuple[int, int]], size: tuple[int, int]) -> torch.Tensor:
    """The reference's decode_hr: each window padded into place and summed, divided by the count of windows."""
    _, b, c, hh, ww = windows.shape
    preds = torch.zeros((b, c, *size))
    count = torch.zeros((b, 1, *size))
    for logits, (y1, x1) in zip(windows, boxes, strict=True):
        preds += F.pad(logits, (x1, size[1] - x1 - ww, y1, size[0] - y1 - hh))
        count[:, :, y1 : y1 + hh, x1 : x1 + ww] += 1
    return preds / count


def test_sliding_windows_follow_the_reference_grid_and_average_like_it() -> None:
    boxes = Fn.slide_boxes(1024, 2048, (512, 512), (256, 256))  # a 1024x2048 image, 512 windows, stride 256
    assert len(boxes) == 3 * 7 and boxes[0] == (0, 0) and boxes[-1] == (512, 1536)
    moved_back = [(t, left) for t in (0, 32, 36) for left in (0, 32, 36)]  # the last window ends at the border
    assert Fn.slide_boxes(100, 100, (64, 64), (32, 32)) == moved_back
    assert Fn.slide_boxes(50, 60, (64, 64), (32, 32)) == [(0, 0)]  # smaller than a window: one
    grid = Fn.slide_boxes(24, 40, (8, 16), (4, 8))
    windows = torch.randn(len(grid), 2, 3, 8, 16)
    assert torch.allclose(Fn.slide_average(windows, grid, (24, 40)), restated_slide(windows, grid, (24, 40)), atol=1e-6)
    constant = Fn.slide_average(torch.full((len(grid), 1, 1, 8, 16), 3.0), grid, (24, 40))
    assert torch.allclose(constant, torch.full((1, 1, 24, 40), 3.0))  # an average of equal windows is that value
    with pytest.raises(ValueError, match="uncovered"):
        Fn.slide_average(windows[:1], grid[:1], (24, 40))


def test_the_detail_crop_lies_inside_on_the_grid_and_draws_every_position() -> None:
    generator = torch.Generator().manual_seed(0)
    seen = {Fn.detail_box(64, 96, (32, 32), 8, generator) for _ in range(400)}
    assert seen == {(t, left) for t in range(0, 33, 8) for left in range(0, 65, 8)}
    assert Fn.detail_box(32, 32, (32, 32), 8, generator) == (0, 0)
    with pytest.raises(ValueError, match="does not fit"):
        Fn.detail_box(16, 64, (32, 32), 8, generator)
