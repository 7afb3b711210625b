"""HRDA's multi-resolution fusion (Hoyer et al., "HRDA: Context-Aware High-Resolution Domain-Adaptive Semantic
Segmentation", ECCV 2022, Sec. 3) as pure functions: the scale-attention fusion of a low-resolution context
prediction with a high-resolution detail prediction, the detail crop's position, the overlapping sliding windows
of detail inference and their average, and the loss weighting.

Coordinates are (top, left) on the grid named in each function; sizes are (height, width).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def hrda_fuse(lr_logits: Tensor, hr_logits: Tensor, attention: Tensor, box: tuple[int, int]) -> Tensor:
    """HRDA's fused prediction (HRDA Sec. 3.3, scale attention): ``a·hr + (1 − a)·lr`` at the detail resolution.

    The attention is zeroed outside the detail region (at the context's grid, the box halved), ``lr`` becomes
    ``(1 − a)·lr``, both are upsampled ×2 (bilinear, ``align_corners=False``), the detail logits are placed at
    ``box`` on the ``2h × 2w`` grid (zeros elsewhere), and ``fused = a_up·hr_placed + lr_up``. With the detail
    covering the whole grid (inference), the attention is used everywhere.

    Args:
        lr_logits: ``[B, C, h, w]`` the context's logits.
        hr_logits: ``[B, C, hh, ww]`` the detail's logits, at twice the context's resolution.
        attention: ``[B, C or 1, h, w]`` the scale attention, after the sigmoid, on the context's grid.
        box: ``(top, left)`` of the detail on the ``2h × 2w`` grid; ``top + hh <= 2h`` and ``left + ww <= 2w``.

    Returns:
        ``[B, C, 2h, 2w]`` fused logits.
    """
    (h, w), (hh, ww), (top, left) = lr_logits.shape[-2:], hr_logits.shape[-2:], box
    if top < 0 or left < 0 or top + hh > 2 * h or left + ww > 2 * w:
        raise ValueError(f"detail of {hh}x{ww} at {box} does not fit the {2 * h}x{2 * w} grid")
    inside = torch.zeros((1, 1, h, w), dtype=attention.dtype, device=attention.device)
    inside[..., top // 2 : (top + hh) // 2, left // 2 : (left + ww) // 2] = 1
    att = attention * inside
    lr_up = F.interpolate((1 - att) * lr_logits, scale_factor=2, mode="bilinear", align_corners=False)
    att_up = F.interpolate(att, scale_factor=2, mode="bilinear", align_corners=False)
    placed = F.pad(hr_logits, (left, 2 * w - left - ww, top, 2 * h - top - hh))
    return att_up * placed + lr_up


def hrda_loss(fused_loss: Tensor, detail_loss: Tensor, detail_weight: float) -> Tensor:
    """HRDA's training loss (HRDA Sec. 3.3): ``(1 − λ_d)·L(fused) + λ_d·L(detail on the detail crop's labels)``."""
    return (1 - detail_weight) * fused_loss + detail_weight * detail_loss


def detail_box(
    height: int, width: int, crop: tuple[int, int], divisible: int, generator: torch.Generator
) -> tuple[int, int]:
    """A random detail crop ``crop`` = (height, width) inside a ``height × width`` image, its corner on a grid of
    ``divisible`` pixels (so that the context's and the detail's output grids align): ``(top, left)``.

    The position slices the image, so it is read on the host (one synchronisation per training step, as the
    reference draws it on the host too)."""
    tops, lefts = (height - crop[0]) // divisible + 1, (width - crop[1]) // divisible + 1
    if tops < 1 or lefts < 1:
        raise ValueError(f"a detail crop of {crop[0]}x{crop[1]} does not fit a {height}x{width} image")
    draws = torch.randint(0, tops * lefts, (1,), generator=generator, device=generator.device)
    index = int(draws.item())  # a host read: the crop's position slices the image
    return (index // lefts) * divisible, (index % lefts) * divisible


def slide_boxes(height: int, width: int, window: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int]]:
    """The (top, left) of HRDA's overlapping sliding windows of ``window`` = (height, width) over an image: a grid
    of stride ``stride``, the last row and column moved back to end at the border."""
    boxes = []
    rows = max(height - window[0] + stride[0] - 1, 0) // stride[0] + 1
    cols = max(width - window[1] + stride[1] - 1, 0) // stride[1] + 1
    for r in range(rows):
        for c in range(cols):
            bottom, right = min(r * stride[0] + window[0], height), min(c * stride[1] + window[1], width)
            boxes.append((max(bottom - window[0], 0), max(right - window[1], 0)))
    return boxes


def slide_average(window_logits: Tensor, boxes: list[tuple[int, int]], size: tuple[int, int]) -> Tensor:
    """The average of overlapping window predictions: each window's logits added at its box, divided by how many
    windows cover each cell.

    Args:
        window_logits: ``[n, B, C, hh, ww]``, window ``i`` at ``boxes[i]`` (on the output grid).
        boxes: (top, left) per window; together they cover the whole grid.
        size: (H, W) of the output grid.

    Returns:
        ``[B, C, H, W]``.
    """
    _, batch, channels, hh, ww = window_logits.shape
    total = window_logits.new_zeros((batch, channels, *size))
    count = torch.zeros((1, 1, *size))  # the boxes' coverage, counted on the host: checked without a device read
    cover = total.new_zeros((1, 1, *size))  # and on the device: divided by without an upload (which would wait)
    for logits, (top, left) in zip(window_logits, boxes, strict=True):
        total[..., top : top + hh, left : left + ww] += logits
        count[..., top : top + hh, left : left + ww] += 1
        cover[..., top : top + hh, left : left + ww] += 1
    if bool((count == 0).any()):
        raise ValueError(f"the windows leave cells of the {size[0]}x{size[1]} grid uncovered")
    return total / cover
