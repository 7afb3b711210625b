"""BatchNorm whose training-mode statistics can be taken per pass of a batched forward.

CAMix's teacher runs, in training mode like the released code, a clean pass over the target batch and N noisy
passes (Eq. 5). camix can run several of them as one batched forward (on a GPU, fewer and larger kernels); with
plain BatchNorm the clean images would then be normalised with statistics that include the noisy copies, which
changes the pseudo-labels. Inside :func:`per_pass_batch_stats` every :class:`ChunkedBatchNorm2d` normalises each
of ``passes`` equal slices of the batch with that slice's own statistics, exactly what separate forward passes
compute, in two reads of the activation (one ``var_mean`` reduction, one fused multiply-add) like a native
BatchNorm. Only the first pass of the block (the clean one, when ``track`` is set) updates the running statistics,
as a forward of the clean pass alone would; the noisy passes leave them untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class ChunkedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state-dict names) with optional per-pass statistics."""

    chunks: int = 1  # passes in the batch, each normalised with its own statistics (training mode)
    track: bool = True  # update the running statistics (from the first pass) in training mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain BatchNorm, or per-pass batch statistics when ``chunks > 1`` in training mode."""
        if not self.training or (self.chunks <= 1 and self.track):
            return super().forward(x)
        if self.chunks <= 1:  # one pass whose statistics must not reach the running ones
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        parts = x.unflatten(0, (self.chunks, -1))  # [K, B/K, C, H, W], a view
        exact = parts if parts.dtype == torch.float32 else parts.float()  # statistics in fp32 under autocast
        var, mean = torch.var_mean(exact, dim=(1, 3, 4), unbiased=False, keepdim=True)  # [K, 1, C, 1, 1]
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.view(1, 1, -1, 1, 1)
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias.view(1, 1, -1, 1, 1)
        out = torch.addcmul(shift.to(parts.dtype), parts, scale.to(parts.dtype))
        if self.track:
            self._track_first(mean[0].flatten(), var[0].flatten(), parts[0].numel() // parts.shape[2])
        return out.flatten(0, 1)

    @torch.no_grad()
    def _track_first(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        """The running statistics as a forward of the first pass alone updates them (unbiased variance)."""
        if not self.track_running_stats or self.running_mean is None or self.running_var is None:
            return
        momentum = self.momentum if self.momentum is not None else 0.1
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        unbiased = var * (count / max(count - 1, 1))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


@contextlib.contextmanager
def per_pass_batch_stats(model: nn.Module, passes: int, *, track: bool = True) -> Iterator[None]:
    """Within the block, every :class:`ChunkedBatchNorm2d` of ``model`` takes statistics per pass of the batch
    (``passes`` equal slices), and updates its running statistics from the first pass only when ``track``.

    Modules with a ``passes`` attribute (HRDA's wrapper, which batches its sliding windows) get it set to ``passes``
    too, so that what they batch keeps the pass-major layout: each pass's images (and their windows) in one slice."""
    layers = [m for m in model.modules() if isinstance(m, ChunkedBatchNorm2d)]
    layouts = [m for m in model.modules() if hasattr(m, "passes")]
    for layer in layers:
        layer.chunks, layer.track = passes, track
    for module in layouts:
        setattr(module, "passes", passes)  # noqa: B010  # a plain attribute of a module
    try:
        yield
    finally:
        for layer in layers:
            layer.chunks, layer.track = 1, True
        for module in layouts:
            setattr(module, "passes", 1)  # noqa: B010
