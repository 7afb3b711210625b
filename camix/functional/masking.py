"""Masked Image Consistency (MIC; Hoyer et al., "MIC: Masked Image Consistency for Context-Enhanced Domain
Adaptation", CVPR 2023, Sec. 3.2): a block mask over the target image and the weighted cross-entropy of the student
on the masked image against the teacher's pseudo-label of the whole image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from camix.labels import IGNORE_INDEX


def block_mask(
    batch: int,
    height: int,
    width: int,
    ratio: float,
    block: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> Tensor:
    """MIC's random block mask (MIC Sec. 3.2): ``True`` where the pixel is **kept**.

    A grid of ``round(height / block) × round(width / block)`` cells (at least one each way; Python's ``round``,
    as the reference) per image; a cell is kept where a uniform draw exceeds ``ratio`` (so about ``1 − ratio`` of
    the cells stay), and the grid is upsampled to ``height × width`` by nearest neighbour. Every pixel of a cell
    shares its decision; a side that is not a multiple of ``block`` gets cells of unequal size.

    Args:
        batch, height, width: the images' batch size and size.
        ratio: the mask ratio r, the share of cells hidden in expectation (MIC: 0.7).
        block: the cell side in pixels (MIC: 64).
        generator: the only source of randomness (the draws are made on its device).
        device: where the mask goes (default: the generator's device).

    Returns:
        ``[batch, height, width]`` bool.
    """
    rows, cols = max(1, round(height / block)), max(1, round(width / block))
    draws = torch.rand((batch, 1, rows, cols), generator=generator, device=generator.device)
    cells = (draws > ratio).float()
    mask = F.interpolate(cells, size=(height, width), mode="nearest")[:, 0] > 0.5
    return mask.to(device) if device is not None else mask


def mask_image(image: Tensor, keep: Tensor) -> Tensor:
    """The masked image of MIC Sec. 3.2: ``keep ⊙ x`` on a **normalised** image ``[B, C, H, W]`` (camix's images are
    Caffe-normalised, mean subtracted), so a hidden pixel becomes 0, the mean colour. ``keep``: ``[B, H, W]``."""
    return image * keep.unsqueeze(1).to(image.dtype)


def mic_loss(logits: Tensor, pseudo_label: Tensor, pixel_weight: Tensor, *, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """MIC's masked consistency loss (MIC Sec. 3.2): the pixel-weighted cross-entropy of the student's prediction of the
    masked image against the teacher's pseudo-label of the unmasked one, ``Σ w·CE / n`` over the ``n`` pixels that are
    not ``ignore_index`` (a pseudo-label has none, so this is the mean over all pixels, as the reference's).

    Args:
        logits: ``[B, C, H, W]`` student logits on the masked image, at the label's size.
        pseudo_label: ``[B, H, W]`` int64 teacher pseudo-label of the unmasked image.
        pixel_weight: ``[B, H, W]`` the host method's pseudo-label weight (DACS's confidence weight, ignored rows);
            detached.

    Returns:
        Scalar loss; the gradient reaches ``logits`` only.
    """
    ce = F.cross_entropy(logits, pseudo_label, ignore_index=ignore_index, reduction="none") * pixel_weight.detach()
    valid = (pseudo_label != ignore_index).sum()
    return ce.sum() / valid.clamp(min=1).to(ce.dtype)
