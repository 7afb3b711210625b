"""BatchNorm whose training-mode statistics can be taken per chunk of the batch.

CAMix's teacher runs, in training mode like the released code, a clean pass over the target batch and N noisy
passes (Eq. 5). camix runs them as one batched forward for speed; with plain BatchNorm the clean images would
then be normalised with statistics that include the N noisy copies, which changes the pseudo-labels. Inside
:func:`chunked_batch_stats` every :class:`ChunkedBatchNorm2d` normalises each of ``chunks`` equal slices of the
batch with that slice's own statistics — exactly what N + 1 separate forward passes compute.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class ChunkedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state-dict names) with optional per-chunk statistics."""

    chunks: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain BatchNorm, or per-chunk batch statistics when ``chunks > 1`` in training mode."""
        if self.chunks <= 1 or not self.training:
            return super().forward(x)
        parts = x.unflatten(0, (self.chunks, -1))  # [K, B/K, C, H, W]
        mean = parts.mean(dim=(1, 3, 4), keepdim=True)
        var = parts.var(dim=(1, 3, 4), unbiased=False, keepdim=True)
        out = (parts - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight.view(1, 1, -1, 1, 1) + self.bias.view(1, 1, -1, 1, 1)
        self._track(x)
        return out.flatten(0, 1)

    def _track(self, x: torch.Tensor) -> None:
        """Update the running statistics from the first chunk only (the clean pass), as a separate pass would."""
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            first = x[: x.shape[0] // self.chunks]
            with torch.no_grad():
                F.batch_norm(
                    first, self.running_mean, self.running_var, None, None, True, self.momentum or 0.1, self.eps
                )
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)


@contextlib.contextmanager
def chunked_batch_stats(model: nn.Module, chunks: int) -> Iterator[None]:
    """Within the block, every :class:`ChunkedBatchNorm2d` of ``model`` takes statistics per chunk of the batch."""
    layers = [m for m in model.modules() if isinstance(m, ChunkedBatchNorm2d)]
    for layer in layers:
        layer.chunks = chunks
    try:
        yield
    finally:
        for layer in layers:
            layer.chunks = 1
