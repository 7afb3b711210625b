"""Strong photometric augmentation of the mixed image (DACS): colour jitter and Gaussian blur.

Built from kornia's functional ops with every random factor drawn on the device from an explicit generator,
and applied (or not, with probability p) through ``torch.where``: no host synchronisation, unlike kornia's
augmentation modules, which inspect their sampled parameters on the host. Images travel through camix as
Caffe-normalised BGR (0-255 scale, mean subtracted); the ops work on RGB in [0, 1], so the augmentation converts
there and back. Labels and masks are never touched here.
"""

from __future__ import annotations

import functools
import math

import torch
from kornia.enhance import adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation
from kornia.filters import filter2d_separable, get_gaussian_kernel1d
from torch import nn

from camix.config import AugmentConfig
from camix.labels import CAFFE_MEAN_BGR


@functools.cache
def _caffe_mean(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The Caffe BGR mean as a [1,3,1,1] tensor on ``device``, made once: a tensor made from Python numbers is a
    copy from pageable host memory, which on a GPU waits for every queued kernel."""
    return torch.tensor(CAFFE_MEAN_BGR, dtype=dtype, device=device).view(1, 3, 1, 1)


def to_unit_rgb(image: torch.Tensor) -> torch.Tensor:
    """Caffe-normalised BGR [B,3,H,W] -> RGB in [0, 1]."""
    return ((image + _caffe_mean(image.device, image.dtype)) / 255.0).flip(1).clamp(0.0, 1.0)


def from_unit_rgb(image: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] [B,3,H,W] -> Caffe-normalised BGR."""
    return image.flip(1) * 255.0 - _caffe_mean(image.device, image.dtype)


def blur_kernel_size(side: int) -> int:
    """An odd kernel of about a tenth of the image side (DACS's rule), at least 3."""
    size = max(3, round(0.1 * side))
    return size if size % 2 else size + 1


def _rand(count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """U(0, 1) numbers from ``generator``, on ``device`` (a no-op move when the generator lives there)."""
    return torch.rand(count, generator=generator, device=generator.device).to(device, non_blocking=True)


def _uniform(low: float, high: float, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * _rand(count, generator, device)


def _where(apply: torch.Tensor, changed: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.where(apply.view(-1, 1, 1, 1), changed, image)


def _decide(p: float, batch: int, generator: torch.Generator, device: torch.device, per_batch: bool) -> torch.Tensor:
    """Which images an op applies to: one draw per image, or (``per_batch``, the released code) one for the batch."""
    draws = _rand(1 if per_batch else batch, generator, device) < p
    return draws.expand(batch) if per_batch else draws


def color_jitter(
    image: torch.Tensor,
    strength: float,
    p: float,
    generator: torch.Generator,
    *,
    per_batch: bool = False,
    random_order: bool = False,
) -> torch.Tensor:
    """DACS's colour jitter, kornia ``ColorJitter(s, s, s, s)`` of its era, per image.

    Brightness additive ``+-s``; contrast and saturation ``x U(1 - s, 1 + s)``; hue ``+-s`` of a *full* turn
    (kornia multiplies its hue factor by 2 pi: ``s = 0.25`` shifts hue by up to 90 degrees).

    Args:
        image: RGB in [0, 1], [B,3,H,W] (on the generator's device for a sync-free step).
        strength: s, the jitter strength of each factor (DACS: 0.25).
        p: the probability that an image is jittered at all.
        generator: the source of every random number.
        per_batch: decide "jitter or not" once for the whole batch (the released code) instead of per image.
        random_order: apply the four ops in a random order per image, as kornia's ColorJitter does; otherwise
            brightness, contrast, saturation, hue. Costs four times the work (each op runs on every image in each
            of the four rounds; the choice is made with ``torch.where``, without a host synchronisation).
    """
    b, s, device = image.shape[0], strength, image.device
    apply = _decide(p, b, generator, device, per_batch)
    ops = (
        adjust_brightness,
        adjust_contrast,
        adjust_saturation,
        lambda x, f: adjust_hue(x, f * 2 * math.pi),
    )
    low = max(0.0, 1 - s)
    factors = (
        _uniform(-s, s, b, generator, device),
        _uniform(low, 1 + s, b, generator, device),
        _uniform(low, 1 + s, b, generator, device),
        _uniform(-s, s, b, generator, device),
    )
    out = image
    if not random_order:
        for op, factor in zip(ops, factors, strict=True):
            out = op(out, factor)
        return _where(apply, out, image)
    order = _rand(4 * b, generator, device).view(b, 4).argsort(dim=1)  # a uniform permutation per image
    for step in range(4):
        candidates = torch.stack([op(out, factor) for op, factor in zip(ops, factors, strict=True)])
        pick = order[:, step].view(1, b, 1, 1, 1).expand(1, *out.shape)
        out = candidates.gather(0, pick).squeeze(0)
    return _where(apply, out, image)


def gaussian_blur(
    image: torch.Tensor,
    kernel: tuple[int, int],
    sigma: tuple[float, float],
    p: float,
    generator: torch.Generator,
    *,
    per_batch: bool = False,
) -> torch.Tensor:
    """Gaussian blur with sigma ~ U(sigma) per image (the same in both directions), applied with probability p.

    ``per_batch``: decide "blur or not" once for the whole batch (the released code); sigma stays per image.
    """
    b, device = image.shape[0], image.device
    apply = _decide(p, b, generator, device, per_batch)
    sigmas = _uniform(sigma[0], sigma[1], b, generator, device).view(b, 1)
    # kornia's gaussian_blur2d checks sigma on the host; building the per-image kernels directly does not
    kernel_y, kernel_x = (get_gaussian_kernel1d(size, sigmas) for size in kernel)
    return _where(apply, filter2d_separable(image, kernel_x, kernel_y, "reflect"), image)


class StrongAugment(nn.Module):
    """Colour jitter (p, strength) and Gaussian blur (p, sigma range), sync-free; factors drawn per image.

    Args:
        cfg: probabilities and strengths.
        height, width: the crop size (the blur kernel is about a tenth of each side).
        generator: the random source (on the images' device); its state lives in the training checkpoint.
    """

    def __init__(self, cfg: AugmentConfig, height: int, width: int, generator: torch.Generator) -> None:
        super().__init__()
        self.cfg, self.generator = cfg, generator
        self.kernel = (blur_kernel_size(height), blur_kernel_size(width))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Augment a batch of Caffe-normalised BGR images [B,3,H,W]."""
        cfg = self.cfg
        if cfg.jitter_p <= 0 and cfg.blur_p <= 0:
            return image
        unit = to_unit_rgb(image.float())
        unit = color_jitter(
            unit,
            cfg.jitter_strength,
            cfg.jitter_p,
            self.generator,
            per_batch=cfg.per_batch,
            random_order=cfg.random_order,
        )
        unit = gaussian_blur(unit, self.kernel, cfg.blur_sigma, cfg.blur_p, self.generator, per_batch=cfg.per_batch)
        return from_unit_rgb(unit).to(image.dtype)
