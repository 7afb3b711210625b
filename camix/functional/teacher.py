"""Mean teacher (paper Eq. 3): the EMA decay schedule and the in-place update."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def ema_alpha(step: int, alpha_max: float = 0.99) -> float:
    """EMA decay of Eq. 3 with the usual warm start: ``α_t = min(1 − 1/(t + 1), α_max)``.

    ``α_0 = 0``, so after the first update the teacher equals the student.

    Args:
        step: iteration ``t >= 0``.
        alpha_max: the decay's ceiling.

    Returns:
        ``α_t``, a Python float.
    """
    return min(1.0 - 1.0 / (step + 1), alpha_max)


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, alpha: float, *, copy_buffers: bool = False) -> None:
    """Eq. 3 in place: ``Φ'_t = α·Φ'_{t−1} + (1 − α)·Φ_t`` over the parameters, fused (``torch._foreach_lerp_``).

    Only parameters are averaged, as in the released code. Buffers (BatchNorm running statistics, which the
    frozen-BN DeepLab does not use in training) are left alone unless ``copy_buffers``, which copies the
    student's. No host synchronisation.

    Args:
        teacher: updated in place.
        student: read only; must have the same parameter names, shapes and dtypes.
        alpha: the decay α in ``[0, 1]`` (see :func:`ema_alpha`); ``α = 0`` copies the student exactly.
        copy_buffers: also copy the student's buffers into the teacher.

    Raises:
        ValueError: the two modules' parameter names differ.
    """
    t_named, s_named = list(teacher.named_parameters()), list(student.named_parameters())
    if [n for n, _ in t_named] != [n for n, _ in s_named]:
        raise ValueError("ema_update_: teacher and student have different parameters")
    t_params: list[Tensor] = [p for _, p in t_named]
    s_params: list[Tensor] = [p for _, p in s_named]
    if t_params:
        torch._foreach_lerp_(t_params, s_params, 1.0 - alpha)
    if copy_buffers:
        for t_buf, s_buf in zip(teacher.buffers(), student.buffers(), strict=True):
            t_buf.copy_(s_buf)
