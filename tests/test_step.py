"""One optimisation step: the terms a step backpropagates early give the gradient of the summed loss."""

from __future__ import annotations

import copy

import pytest
import torch

from camix.config import MethodConfig, MicConfig
from camix.methods import build_context, mean_teacher
from camix.models import build_model
from camix.step import optimisation_step

B, H, W = 2, 32, 48


def gradients(early: bool, mic: float) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    torch.manual_seed(0)
    student = build_model("deeplabv2_tiny", 19)
    teacher = copy.deepcopy(student).requires_grad_(False)
    cfg = MethodConfig(
        name="mean_teacher", mix="classmix", confidence_weight="none", mic=MicConfig(weight=mic, block=8)
    )
    ctx = build_context(
        cfg,
        student=student,
        teacher=teacher,
        num_classes=19,
        generator=torch.Generator().manual_seed(1),
        total_iterations=10,
        crop=(W, H),
    )
    g = torch.Generator().manual_seed(2)
    source = {"image": torch.randn(B, 3, H, W, generator=g) * 40, "label": torch.randint(0, 19, (B, H, W))}
    target = {"image": torch.randn(B, 3, H, W, generator=g) * 40, "box": torch.tensor([[0, 0, H, W]] * B)}
    optimizer = torch.optim.SGD(student.parameters(), lr=0.0)  # lr 0: the step leaves the gradients to read
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    if early:
        out, total = optimisation_step(ctx, mean_teacher, source, target, optimizer, scaler)
        assert out.released == set(out.losses) - {"mic" if mic else "con"}  # all but the last term went early
    else:  # the reference: one backward of the summed loss
        out = mean_teacher(ctx, source, target)
        total = torch.stack(list(out.losses.values())).sum()
        total.backward()
    grads = {name: p.grad.clone() for name, p in student.named_parameters() if p.grad is not None}
    return grads, {name: v.item() for name, v in out.losses.items()}


@pytest.mark.parametrize("mic", [0.0, 1.0])
def test_early_backward_gives_the_gradient_of_the_summed_loss(mic: float) -> None:
    early, early_losses = gradients(True, mic)
    reference, losses = gradients(False, mic)
    assert early_losses == pytest.approx(losses, rel=1e-6) and set(losses) == {"seg", "con"} | (
        {"mic"} if mic else set()
    )
    assert early.keys() == reference.keys() and len(early) > 10
    for name, grad in early.items():
        assert torch.allclose(grad, reference[name], rtol=1e-4, atol=1e-6), name
