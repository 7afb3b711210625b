"""BatchNorm whose training-mode statistics can be taken per pass of a batched forward.

CAMix's teacher runs, in training mode like the released code, a clean pass over the target batch and N noisy
passes (Eq. 5). camix can run several of them as one batched forward; with plain BatchNorm the clean images would
then be normalised with statistics that include the noisy copies, which changes the pseudo-labels. Inside
:func:`per_pass_batch_stats` every :class:`ChunkedBatchNorm2d` normalises each pass with that pass's own
statistics, exactly what separate forward passes compute.

The passes are **interleaved** in the batch (:func:`interleave`): row ``i·K + k`` holds image ``i`` of pass ``k``.
A contiguous ``[M·K, C, H, W]`` activation is then, without a copy, the ``[M, K·C, H, W]`` tensor whose channel
``k·C + c`` is channel ``c`` of pass ``k``, and one native ``batch_norm`` call over it takes every pass's statistics
(the pass folded into the channels: the same kernel, reads and writes as a plain BatchNorm). Any layer that only
stacks more rows per image keeps the layout: HRDA's sliding windows, batched window-major, still have the pass as
the fastest-varying row index. Only the first pass (the clean one, when ``track`` is set) updates the running
statistics, as a forward of the clean pass alone would; the noisy passes leave them untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ChunkedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state-dict names) with optional per-pass statistics."""

    chunks: int = 1  # passes interleaved in the batch, each normalised with its own statistics (training mode)
    track: bool = True  # update the running statistics (from the first pass) in training mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain BatchNorm, or per-pass batch statistics when ``chunks > 1`` in training mode; in training mode on
        the CPU (float32), the statistics come from :class:`CpuBatchNorm` for a contiguous batch and for a
        channels-last one of several passes (torch's channels-last kernel is as fast for one pass)."""
        if not self.training:
            return super().forward(x)
        if x.device.type == "cpu" and x.dtype == torch.float32:
            if x.is_contiguous():
                return self._on_cpu(x)
            last = torch.channels_last
            if self.chunks > 1 and x.is_contiguous(memory_format=last):
                # on a contiguous copy: group_norm's channels-last kernel takes a one-pass variance (off by ~1e-2
                # for a channel whose mean is large against its spread); two copies cost less than per-pass var_mean
                return self._on_cpu(x.contiguous()).contiguous(memory_format=last)
        if self.chunks <= 1 and self.track:
            return super().forward(x)
        if self.chunks <= 1:  # one pass whose statistics must not reach the running ones
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        if x.is_contiguous():
            return self._folded(x)
        return self._per_slice(x)

    def _on_cpu(self, x: torch.Tensor) -> torch.Tensor:
        """Training mode on the CPU: :class:`CpuBatchNorm`, then the running statistics from the first pass. The
        output is returned as it is, not as a view: an in-place ReLU on a view would make autograd copy the
        activation back in backward (``CopySlices``)."""
        n, _, h, w = x.shape
        out, mean, var = CpuBatchNorm.apply(x, self.weight, self.bias, self.eps, self.chunks)
        self._track_first(mean[0], var[0], (n // self.chunks) * h * w)
        return out

    def _folded(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pass statistics from one native ``batch_norm`` over ``x`` viewed as ``[M, K·C, H, W]``."""
        k, (n, c, h, w) = self.chunks, x.shape
        folded = x.view(n // k, k * c, h, w)
        running = self._tracked()
        momentum = self._momentum()
        mean, var = (None, None) if running is None else (running[0].repeat(k), running[1].repeat(k))
        out = F.batch_norm(folded, mean, var, *self._affine(), True, momentum, self.eps)
        if running is not None and mean is not None and var is not None:
            running[0].copy_(mean[:c])
            running[1].copy_(var[:c])
        return out.view(n, c, h, w)

    def _per_slice(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pass statistics for a non-contiguous (channels-last) ``x``: one reduction, one multiply-add."""
        parts = x.unflatten(0, (-1, self.chunks))  # [M, K, C, H, W], a view
        exact = parts if parts.dtype == torch.float32 else parts.float()  # statistics in fp32 under autocast
        var, mean = torch.var_mean(exact, dim=(0, 3, 4), unbiased=False, keepdim=True)  # [1, K, C, 1, 1]
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.view(1, 1, -1, 1, 1)
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias.view(1, 1, -1, 1, 1)
        out = torch.addcmul(shift.to(parts.dtype), parts, scale.to(parts.dtype))
        self._track_first(mean[0, 0].flatten(), var[0, 0].flatten(), parts[:, 0].numel() // parts.shape[2])
        return out.flatten(0, 1)

    def _affine(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Weight and bias for a batch of ``chunks`` passes folded into the channels (repeated per pass)."""
        k = self.chunks
        weight = self.weight.repeat(k) if self.weight is not None and k > 1 else self.weight
        bias = self.bias.repeat(k) if self.bias is not None and k > 1 else self.bias
        return weight, bias

    @torch.no_grad()
    def _track_first(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        """The running statistics as a forward of the first pass alone updates them, from its mean and biased
        variance over ``count`` values (unbiased in the running variance); nothing when this forward does not
        track."""
        running = self._tracked()
        if running is None:
            return
        unbiased = var * (count / max(count - 1, 1))
        running[0].lerp_(mean.to(running[0].dtype), self._momentum())
        running[1].lerp_(unbiased.to(running[1].dtype), self._momentum())

    def _tracked(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The running mean and variance that this forward updates (from the first pass), or None; counts the
        batch in ``num_batches_tracked`` as ``nn.BatchNorm2d`` does."""
        if not self.track or not self.track_running_stats or self.running_mean is None or self.running_var is None:
            return None
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        return self.running_mean, self.running_var

    def _momentum(self) -> float:
        """``nn.BatchNorm2d``'s update factor: ``momentum``, or the cumulative average when it is None."""
        if self.momentum is not None:
            return self.momentum
        tracked = self.num_batches_tracked
        return 1.0 / float(tracked) if tracked is not None and int(tracked) > 0 else 0.0


class CpuBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm of a contiguous float32 ``[N, C, H, W]`` on the CPU, with the statistics of each of
    ``passes`` interleaved passes (:func:`interleave`), in two vectorised passes.

    The native CPU kernel gathers each channel's mean and variance of a contiguous batch in a scalar loop, most of
    its time: on a 2x2304x65x65 activation it takes 24 ms and this 10 ms (``benchmarks/batchnorm_cpu.py``). Here
    one native ``group_norm`` with a group per channel takes each image's per-channel moments (a vectorised,
    centred reduction) and writes the image-normalised activation; each pass's statistics follow exactly from its
    images' moments (the mean of the means; the mean of the variances plus the variance of the means), and one
    multiply-add in place turns the image-normalised activation into the batch-normalised one. Returns the output
    and each pass's mean and biased variance, ``[passes, C]``. The backward is the native training-mode backward
    with those statistics (the passes folded into the channels), so the gradients are those of
    ``F.batch_norm(training=True)`` on each pass.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float, passes: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, c, h, w = x.shape
        out, image_mean, image_rstd = torch.native_group_norm(x, None, None, n, c, h * w, c, eps)  # [N, C] moments
        image_mean, image_rstd = image_mean.view(-1, passes, c), image_rstd.view(-1, passes, c)  # [M, K, C]
        image_var = (image_rstd.pow(-2) - eps).clamp_min_(0.0)
        mean = image_mean.mean(0)  # [K, C]
        var = (image_var + (image_mean - mean).square()).mean(0)
        invstd = torch.rsqrt(var + eps)
        scale = invstd if weight is None else invstd * weight
        shift = (image_mean - mean) * scale
        if bias is not None:
            shift = shift + bias
        out.mul_((scale / image_rstd).view(n, c, 1, 1)).add_(shift.view(n, c, 1, 1))
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps, ctx.passes = eps, passes
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor, *_: Any
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, None, None]:
        x, weight, mean, invstd = ctx.saved_tensors
        k, (n, c, h, w) = ctx.passes, x.shape
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        fold = (n // k, k * c, h, w)  # the passes as channels: a view of the contiguous batch
        grads = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous().view(fold),
            x.view(fold),
            weight if weight is None or k == 1 else weight.repeat(k),
            None,
            None,
            mean.flatten(),
            invstd.flatten(),
            True,
            ctx.eps,
            mask,
        )
        weight_grad, bias_grad = (
            None if not mask[i] else grads[i] if k == 1 else grads[i].view(k, c).sum(0) for i in (1, 2)
        )
        return grads[0].view(n, c, h, w) if mask[0] else None, weight_grad, bias_grad, None, None


def interleave(passes: Sequence[torch.Tensor]) -> torch.Tensor:
    """One batch of K passes of ``[B, ...]``, interleaved as :func:`per_pass_batch_stats` expects: row ``i·K + k``
    is image ``i`` of pass ``k``; channels-last passes give a channels-last batch."""
    if len(passes) == 1:
        return passes[0]
    batch = torch.stack(list(passes), dim=1).flatten(0, 1)
    first = passes[0]
    if first.dim() == 4 and not first.is_contiguous() and first.is_contiguous(memory_format=torch.channels_last):
        return batch.contiguous(memory_format=torch.channels_last)
    return batch


def deinterleave(batch: torch.Tensor, passes: int) -> torch.Tensor:
    """``[B·K, ...]`` back to ``[B, K, ...]`` (a view): index 1 is the pass."""
    return batch.unflatten(0, (-1, passes))


@contextlib.contextmanager
def per_pass_batch_stats(model: nn.Module, passes: int, *, track: bool = True) -> Iterator[None]:
    """Within the block, every :class:`ChunkedBatchNorm2d` of ``model`` takes statistics per pass of a batch that
    holds ``passes`` passes interleaved (:func:`interleave`), and updates its running statistics from the first pass
    only when ``track``."""
    layers = [m for m in model.modules() if isinstance(m, ChunkedBatchNorm2d)]
    for layer in layers:
        layer.chunks, layer.track = passes, track
    try:
        yield
    finally:
        for layer in layers:
            layer.chunks, layer.track = 1, True
