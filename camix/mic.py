"""Masked Image Consistency (MIC; Hoyer et al., CVPR 2023) as a term any mean-teacher method can add.

The target image gets MIC's own colour augmentation (``method.mic.augment``, its own random draws), then a random
block mask hides about ``ratio`` of it (:func:`camix.functional.block_mask`, at the full resolution of the crop,
before anything else sees the image); the student predicts the masked image and learns the teacher's pseudo-label
of the *unmasked* image with the host method's pixel weight (:func:`camix.functional.mic_loss`), times
``method.mic.weight``. The teacher is the method's own EMA teacher, so its pseudo-label and threshold are the
host's (CAMix's teacher view for CAMix + MIC).
"""

from __future__ import annotations

from torch import Tensor

from camix import functional as Fn
from camix.step_context import StepContext, predict


def masked_consistency(ctx: StepContext, target_image: Tensor, pseudo: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """MIC's loss term (already times ``method.mic.weight``) and the masked image (detached, for the debug panel).

    Args:
        ctx: the step's context (``ctx.mic_augment`` set, see ``camix.methods.build_context``).
        target_image: ``[B, 3, H, W]`` the target batch as loaded (normalised), unmixed and unflipped.
        pseudo: ``[B, H, W]`` the teacher's pseudo-label of that image; ``weight``: its pixel weight.
    """
    cfg = ctx.cfg.mic
    assert ctx.mic_augment is not None, "method.mic.weight > 0 needs the context's MIC augmentation"
    image = ctx.mic_augment(target_image)
    batch, _, height, width = image.shape
    keep = Fn.block_mask(batch, height, width, cfg.ratio, cfg.block, ctx.generator, device=image.device)
    masked = Fn.mask_image(image, keep)
    with ctx.autocast():
        pred = predict(ctx, masked)  # HRDA: context and detail of the masked full-resolution image
    return cfg.weight * pred.loss(Fn.mic_loss, pseudo, weight), masked.detach()
