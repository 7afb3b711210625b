"""The EMA teacher's reading of the target batch (paper Sec. 3.1-3.3): probabilities, pseudo-label, DACS's confidence
weight and, with the SigMask level, the significance mask U_T from N noisy passes (Eqs. 5-7).

The N + 1 passes run ``ctx.teacher_group`` per forward (``train.teacher_passes``, :func:`passes_per_forward`; by
default one pass per forward on the CPU, all in one on a GPU), interleaved in the batch; each pass is normalised
with its own BatchNorm statistics (:mod:`camix.models.batchnorm`), so the result is that of N + 1 separate forwards
whatever the grouping. With the released noise (``official_noise``) the N copies are identical, so one noisy pass
stands for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from camix import functional as Fn
from camix.models.batchnorm import deinterleave, interleave, per_pass_batch_stats
from camix.step_context import StepContext, TeacherView


def teacher_view(ctx: StepContext, image: Tensor, significance: bool) -> TeacherView:
    """The teacher over the clean target and (``significance``) its N noisy copies (Eq. 5): ``ctx.teacher_group``
    passes per forward, each pass normalised with its own batch statistics, so the result is that of N + 1 separate
    forwards whatever the grouping (:func:`teacher_logits`)."""
    assert ctx.teacher is not None
    cfg = ctx.cfg
    passes = [image]
    if significance:  # the released noise adds the same -0.2 to every copy: one pass stands for all N
        copies = 1 if cfg.official_noise else cfg.noise_passes
        noisy = Fn.noisy_copies(
            image, copies, ctx.generator, std=cfg.noise_std, clip=cfg.noise_clip, official=cfg.official_noise
        )
        passes += list(noisy.unbind(0))
    clean, noisy_mean = teacher_logits(ctx, passes)
    size = image.shape[-2:]
    prob = F.interpolate(clean, size=size, mode="bilinear", align_corners=True).softmax(1)
    max_prob, pseudo = prob.max(1)
    weight = Fn.pseudo_label_weight(
        max_prob, cfg.pseudo_threshold, mode=cfg.confidence_weight, per_image=cfg.confidence_per_image
    )
    if cfg.ignore_top or cfg.ignore_bottom:  # DAFormer: no pseudo-label training on the ego vehicle's rows
        weight = Fn.ignore_rows(weight, cfg.ignore_top, cfg.ignore_bottom)
    sig = significance_from_passes(ctx, noisy_mean, size) if noisy_mean is not None else None
    return TeacherView(prob, pseudo, weight, sig)


def teacher_logits(ctx: StepContext, passes: Sequence[Tensor]) -> tuple[Tensor, Tensor | None]:
    """The teacher's float32 logits of the first (clean) pass, and the mean softmax of the other passes (None when
    there are none), at the logits' resolution. Passes run ``ctx.teacher_group`` per forward; only the clean pass
    updates the teacher's running BatchNorm statistics."""
    assert ctx.teacher is not None
    group = max(1, min(ctx.teacher_group or len(passes), len(passes)))
    clean: Tensor | None = None
    prob_sum: Tensor | None = None
    for start in range(0, len(passes), group):
        chunk = passes[start : start + group]
        with torch.no_grad(), ctx.autocast(), per_pass_batch_stats(ctx.teacher, len(chunk), track=start == 0):
            logits = deinterleave(ctx.teacher(interleave(chunk)).float(), len(chunk))  # [B, K, C, h, w]
        if start == 0:
            clean, logits = logits[:, 0], logits[:, 1:]
        if logits.shape[1]:
            probs = logits.softmax(2).sum(1)
            prob_sum = probs if prob_sum is None else prob_sum + probs
    assert clean is not None
    return clean, prob_sum / (len(passes) - 1) if prob_sum is not None else None


def significance_from_passes(ctx: StepContext, mean_prob: Tensor, size: torch.Size) -> Tensor:
    """U_T (Sec. 3.3, Eqs. 5-7) from the mean softmax ``[B,C,h,w]`` of the N noisy passes at the logits' resolution
    (Eqs. 5-6 need only that mean).

    ``significance_resolution: input`` upsamples the mean probabilities to the input size and thresholds there (a
    0/1 mask); ``logits`` thresholds at the logits' resolution, with the released code's literal entropy, and
    upsamples the 0/1 mask bilinearly (a soft mask).
    """
    cfg = ctx.cfg
    k_sup = cfg.k_sup if cfg.k_sup is not None else math.log(ctx.num_classes)
    threshold = Fn.dynamic_threshold(
        ctx.iteration,
        cfg.threshold_ramp if cfg.threshold_ramp is not None else ctx.total_iterations,
        beta=cfg.threshold_beta,
        gamma=cfg.threshold_gamma,
        k_sup=k_sup,
        form=cfg.threshold_form,
    )
    if cfg.significance_resolution == "logits":
        hard = Fn.significance_mask(Fn.predictive_entropy(mean_prob.unsqueeze(0), official=True), threshold)
        return F.interpolate(hard.unsqueeze(1), size=size, mode="bilinear", align_corners=True).squeeze(1)
    upsampled = F.interpolate(mean_prob, size=size, mode="bilinear", align_corners=True)
    return Fn.significance_mask(Fn.predictive_entropy(upsampled.unsqueeze(0)), threshold)


def passes_per_forward(setting: str | int, device: torch.device) -> int | None:
    """How many of the teacher's N + 1 passes run in one forward, for ``train.teacher_passes``: ``separate`` (1),
    ``batched`` (None: all), a number of passes, or ``auto``: separate on the CPU, batched on a GPU. On the CPU the
    arrangements take the same time (ResNet-101, 2 x 256x256, the teacher alone: 10.76 s separate, 11.16 s three
    passes per forward, 10.84 s batched; benchmarks/RESULTS.md, 2026-12-03 19:41) and separate forwards hold a third
    of the memory; on a GPU one forward is the fastest (NVIDIA H200, ResNet-101, 2 x 512x512, bf16, the teacher
    alone: 0.10 s separate, 0.07 s three passes per forward, 0.06 s batched; the CAMix iteration 0.200 / 0.172 /
    0.139 s; benchmarks/RESULTS.md, 2026-12-04 14:57-14:58)."""
    if isinstance(setting, int):
        return setting
    if setting == "auto":
        return 1 if device.type == "cpu" else None
    return 1 if setting == "separate" else None
