"""The student's logits as the losses read them: the subnormal gradient values flushed on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camix.step_context import flush_subnormal, upsampled_logits

TINY = torch.finfo(torch.float32).tiny  # 1.1754944e-38, the smallest normal float32


def test_flush_subnormal_zeroes_exactly_the_subnormal_values() -> None:
    grad = torch.tensor([1e-39, -1e-40, 1.4e-45, TINY, -TINY, 0.0, 1e-3, -2.5, float("nan"), float("inf")])
    out = flush_subnormal(grad)
    expected = torch.tensor([0.0, 0.0, 0.0, TINY, -TINY, 0.0, 1e-3, -2.5, float("nan"), float("inf")])
    torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)
    assert grad[0] == 1e-39  # not in place: autograd may still hold the incoming gradient


@pytest.mark.parametrize(
    ("dtype", "subnormal", "normal"), [(torch.float16, 1e-5, 1e-4), (torch.bfloat16, 1e-39, 2e-38)]
)
def test_flush_subnormal_uses_the_smallest_normal_of_the_gradient_dtype(
    dtype: torch.dtype, subnormal: float, normal: float
) -> None:
    grad = torch.tensor([subnormal, normal, -subnormal, 1.0], dtype=dtype)  # float16's smallest normal: 6.1e-5
    out = flush_subnormal(grad)
    assert out.dtype == dtype and grad[0] != 0
    assert out.tolist() == [0.0, grad[1].item(), 0.0, 1.0]


class FixedLogits(nn.Module):
    """A network whose logits are a parameter, whatever the image."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(image.shape[0], -1, -1, -1)


def test_the_gradient_reaching_the_logits_has_its_subnormal_values_flushed_and_no_other_change() -> None:
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 1] = -90.0  # softmax ~ 4e-40 for class 1: its cross-entropy gradient is subnormal
    logits[:, 2, 0, 0] = 1.5
    image, label = torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)
    model = FixedLogits(logits.clone())
    F.cross_entropy(upsampled_logits(model, image), label).backward()

    plain = logits.clone().requires_grad_(True)  # the same loss without the flush
    F.cross_entropy(F.interpolate(plain, size=(4, 4), mode="bilinear", align_corners=True), label).backward()
    assert plain.grad is not None and model.logits.grad is not None
    reference = plain.grad[:, 1]
    assert bool(((reference != 0) & (reference.abs() < TINY)).all())  # the plain gradient has subnormal values
    assert bool((model.logits.grad[:, 1] == 0).all())
    torch.testing.assert_close(model.logits.grad, flush_subnormal(plain.grad), rtol=0, atol=0)
    assert bool((model.logits.grad[:, [0, 2]].abs() > 1e-3).all())  # the other classes' gradient is untouched


def test_upsampled_logits_under_no_grad_registers_no_hook() -> None:  # register_hook would raise there
    model = FixedLogits(torch.zeros(1, 3, 2, 2))
    with torch.no_grad():
        out = upsampled_logits(model, torch.zeros(2, 3, 4, 4))
    assert out.shape == (2, 3, 4, 4) and not out.requires_grad
