"""Strong photometric augmentation of the mixed image (DACS): colour jitter and Gaussian blur, with kornia.

Images travel through camix as Caffe-normalised BGR (0-255 scale, mean subtracted); kornia works on RGB in
[0, 1], so the augmentation converts there and back. Labels and masks are never touched here.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

from camix.config import AugmentConfig
from camix.data.labels import CAFFE_MEAN_BGR


def to_unit_rgb(image: torch.Tensor) -> torch.Tensor:
    """Caffe-normalised BGR [B,3,H,W] -> RGB in [0, 1]."""
    mean = image.new_tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    return ((image + mean) / 255.0).flip(1).clamp(0.0, 1.0)


def from_unit_rgb(image: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] [B,3,H,W] -> Caffe-normalised BGR."""
    mean = image.new_tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    return image.flip(1) * 255.0 - mean


def blur_kernel_size(side: int) -> int:
    """An odd kernel of about a tenth of the image side (DACS's rule), at least 3."""
    size = max(3, round(0.1 * side))
    return size if size % 2 else size + 1


class StrongAugment(nn.Module):
    """Colour jitter (p, strength) and Gaussian blur (p, sigma range) applied per image."""

    def __init__(self, cfg: AugmentConfig, height: int, width: int) -> None:
        super().__init__()
        s = cfg.jitter_strength
        self.jitter = K.ColorJitter(s, s, s, s, p=cfg.jitter_p)
        kernel = (blur_kernel_size(height), blur_kernel_size(width))
        self.blur = K.RandomGaussianBlur(kernel, sigma=cfg.blur_sigma, p=cfg.blur_p)
        self.active = cfg.jitter_p > 0 or cfg.blur_p > 0

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Augment a batch of Caffe-normalised BGR images [B,3,H,W]."""
        if not self.active:
            return image
        dtype = image.dtype
        unit = to_unit_rgb(image.float())
        return from_unit_rgb(self.blur(self.jitter(unit))).to(dtype)
