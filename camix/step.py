"""One optimisation step around a method's step, as the training loop runs it (and the speed benchmarks time it).

:func:`optimisation_step`: the method's step (``camix.methods``) -> summed loss -> backward -> optimiser step ->
EMA teacher (Eq. 3); :func:`logged_values`: what the loop logs of it, kept on the device.
"""

from __future__ import annotations

import torch
from torch import nn

from camix import functional as Fn
from camix.data.batch import Batch
from camix.step_context import StepContext, StepFn, StepOutput


def optimisation_step(
    ctx: StepContext,
    step: StepFn,
    source: Batch,
    target: Batch | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    teacher: nn.Module | None = None,
    model: nn.Module | None = None,
    ema_alpha_max: float = 0.99,
) -> tuple[StepOutput, torch.Tensor]:
    """One iteration on a batch already on the device: step -> summed loss -> backward -> SGD step -> EMA (Eq. 3).

    The step may backpropagate the terms it has finished as it goes (``ctx.backward``,
    :func:`camix.step_context.backward_finished`), freeing each forward's graph before the next; the rest of the
    summed loss is backpropagated here.

    No host synchronisation (with bf16 or no autocast; fp16's GradScaler checks for infs on the host).

    Args:
        ctx: the step's context, ``ctx.iteration`` set (it picks the EMA decay).
        step: a method's step function (``camix.methods.METHODS``).
        source: the source batch; ``target``: the target batch or None.
        optimizer: steps the student; ``scaler``: the (possibly disabled) gradient scaler.
        teacher: the raw EMA teacher module, updated in place from ``model`` (the raw student), when given.
        ema_alpha_max: the EMA decay's ceiling.

    Returns:
        The step's output and the summed loss (detached).
    """
    optimizer.zero_grad(set_to_none=True)
    ctx.backward = lambda loss: scaler.scale(loss).backward()  # a step may backpropagate finished terms early
    try:
        out = step(ctx, source, target)
    finally:
        ctx.backward = None
    pending = [value for name, value in out.losses.items() if name not in out.released]
    if pending:
        scaler.scale(torch.stack(pending).sum()).backward()
    total = torch.stack([value.detach() for value in out.losses.values()]).sum()
    scaler.step(optimizer)
    scaler.update()
    if teacher is not None and model is not None:
        Fn.ema_update_(teacher, model, Fn.ema_alpha(ctx.iteration, ema_alpha_max))
    return out, total


def logged_values(out: StepOutput, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the loop logs of one step, detached on the device: each named loss, the total and, for a mixing step,
    what the masks did (the share of target pixels, of pixels kept by U_M, the mean confidence weight)."""
    values = {name: value.detach().float() for name, value in out.losses.items()}
    values["total"] = loss.detach().float()
    if out.mixed is not None:
        values["stat/target_area"] = out.mixed.mask.detach().float().mean()
        values["stat/significant"] = out.mixed.significance.detach().float().mean()
        values["stat/weight"] = out.mixed.weight.detach().float().mean()
    return values
