"""Domain mixup (paper Eqs. 2, 4, 8) and the baseline masks: ClassMix (DACS), CutMix and CowMix."""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import Tensor

from camix.functional.classes import label_bins, mask_from_selection, presence_matrix, select_half_batched
from camix.labels import IGNORE_INDEX


def mix(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Mixup of Eqs. 2, 4 and 8: ``M ⊙ a + (1 − M) ⊙ b``.

    A boolean mask selects exactly (``torch.where``), so integer labels stay integer and nothing is rounded.
    A float mask blends floating inputs arithmetically; with integer inputs it is read as ``mask > 0.5``.

    Args:
        mask: ``[B, H, W]`` bool or float.
        a: ``[B, H, W]`` or ``[B, C, H, W]`` (the mask broadcasts over the channel dim), taken where the mask is set:
            the target image / pseudo-label / significance mask in CAMix's target-to-source direction.
        b: same shape as ``a`` (or broadcastable to it), taken elsewhere.

    Returns:
        The mixed tensor, of ``a`` and ``b``'s promoted dtype and broadcast shape.
    """
    m = mask
    while m.dim() < max(a.dim(), b.dim()):
        m = m.unsqueeze(-3)
    if m.dtype == torch.bool:
        return torch.where(m, a, b)
    if not (a.is_floating_point() or b.is_floating_point()):
        return torch.where(m > 0.5, a, b)
    dtype = torch.promote_types(a.dtype, b.dtype)
    m = m.to(dtype)
    return m * a + (1 - m) * b


def classmix_mask(
    label_map: Tensor,
    generator: torch.Generator,
    *,
    ignore_index: int = IGNORE_INDEX,
    count_ignore: bool = False,
    num_classes: int | None = None,
) -> Tensor:
    """ClassMix mask (DACS; iDACS in the target-to-source direction): per image, half of its classes.

    Image ``b`` with ``n_b`` distinct classes gets ``ceil(n_b / 2)`` of them, drawn uniformly without
    replacement; the mask is True on their pixels. Fixed-shape tensor ops, no host synchronisation.

    Args:
        label_map: ``[B, H, W]`` int64 (ground truth or pseudo-labels of the image pasted from).
        generator: the only source of randomness; on ``label_map``'s device.
        ignore_index: the ignore label; not a class unless ``count_ignore``.
        count_ignore: reproduce the released code, which counts the ignore label (and any label outside
            ``[0, num_classes)``) as one more class and marks its pixels when it is chosen (docs/fidelity.md).
        num_classes: labels ``>= num_classes`` count as ignored; None: every label in ``[0, ignore_index)`` is a
            class (``[0, 255]`` if ``ignore_index`` is not in ``[1, 256]``).

    Returns:
        ``[B, H, W]`` bool.
    """
    if num_classes is None:  # every label below the ignore index is a class (so 255 needs no special case)
        num_classes = ignore_index if 0 < ignore_index <= 256 else 256
    bins = label_bins(label_map, num_classes, ignore_index)
    present = presence_matrix(bins, num_classes, count_other=count_ignore)
    return mask_from_selection(select_half_batched(present, generator), bins)


def cutmix_mask(shape: tuple[int, int, int], generator: torch.Generator) -> Tensor:
    """CutMix mask (French et al. 2020 for segmentation): one box of half the image area per sample.

    The box height is ``round(r·H)`` with ``r`` log-uniform in ``[1/2, 1]`` (random aspect, as French et al.),
    its width ``round(H·W / (2·h))`` (so the area is half the image up to rounding: within ``h / 2`` pixels),
    and its position uniform among those that keep it fully inside the image.

    Args:
        shape: ``(B, H, W)``.
        generator: the only source of randomness; the mask is made on its device.

    Returns:
        ``[B, H, W]`` bool, True inside the box.
    """
    batch, height, width = shape
    u = torch.rand(batch, 3, generator=generator, device=generator.device, dtype=torch.float64)
    box_h = torch.exp(u[:, 0] * math.log(0.5)).mul(height).round().clamp(1, height)
    box_w = (height * width / (2 * box_h)).round().clamp(1, width)
    top = (u[:, 1] * (height - box_h + 1)).floor().clamp(max=height - box_h)
    left = (u[:, 2] * (width - box_w + 1)).floor().clamp(max=width - box_w)
    rows = torch.arange(height, device=generator.device, dtype=torch.float64)
    cols = torch.arange(width, device=generator.device, dtype=torch.float64)
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
    return in_rows[:, :, None] & in_cols[:, None, :]


def cowmix_mask(shape: tuple[int, int, int], generator: torch.Generator, *, sigma: float, p: float) -> Tensor:
    """CowMix mask (French et al., "Milking CowMask"): thresholded Gaussian-smoothed noise.

    Per sample: normal noise smoothed by a Gaussian of std ``sigma`` pixels (separable, truncated at 3σ,
    computed as a valid convolution over a noise field padded by the kernel radius, so there are no border
    effects), then thresholded at ``mean + std·√2·erfinv(2p − 1)`` of the smoothed field, so that about
    ``1 − p`` of the area is True.

    Args:
        shape: ``(B, H, W)``.
        generator: the only source of randomness; the mask is made on its device.
        sigma: smoothing scale in pixels (``<= 0``: no smoothing).
        p: the expected fraction of False pixels, in ``[0, 1]``.

    Returns:
        ``[B, H, W]`` bool.
    """
    batch, height, width = shape
    radius = math.ceil(3 * sigma) if sigma > 0 else 0
    size = (batch, 1, height + 2 * radius, width + 2 * radius)
    field = torch.randn(size, generator=generator, device=generator.device)
    if radius > 0:
        kernel = _gaussian_kernel(sigma, radius, field.device)
        field = F.conv2d(F.conv2d(field, kernel.view(1, 1, -1, 1)), kernel.view(1, 1, 1, -1))
    field = field.view(batch, height * width)
    threshold = field.mean(dim=1, keepdim=True) + field.std(dim=1, keepdim=True) * _normal_quantile(p)
    return (field > threshold).view(batch, height, width)


def _gaussian_kernel(sigma: float, radius: int, device: torch.device) -> Tensor:
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _normal_quantile(p: float) -> float:
    """``Φ⁻¹(p) = √2·erfinv(2p − 1)``, with ±inf at the ends."""
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return NormalDist().inv_cdf(p)
