"""The teacher's N + 1 passes (Eq. 5) arranged for the device: every grouping gives what N + 1 separate forwards do.

The reference below is written without camix's grouping: one plain forward per pass on a copy of the teacher,
the clean pass updating the running BatchNorm statistics and the noisy ones leaving them as they were, then the
pseudo-label, DACS's confidence weight and U_T from those logits.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camix import functional as Fn
from camix.config import MethodConfig
from camix.methods import build_context
from camix.models import build_model, set_teacher_mode_
from camix.teacher import passes_per_forward, teacher_view

N, B, SIZE = 4, 2, 40


def reference(teacher: nn.Module, passes: list[torch.Tensor], cfg: MethodConfig, iteration: int, total: int) -> dict:
    """Pseudo-label, weight, U_T and running statistics from N + 1 separate plain forwards."""
    model = copy.deepcopy(teacher)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        clean = model(passes[0]).float()  # updates the running statistics
        kept = [(bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()) for bn in bns]
        noisy = torch.stack([model(x).float().softmax(1) for x in passes[1:]])  # [N,B,C,h,w]
        for bn, (mean, var, count) in zip(bns, kept, strict=True):  # a noisy pass never reaches them
            bn.running_mean.copy_(mean), bn.running_var.copy_(var), bn.num_batches_tracked.copy_(count)
    size = passes[0].shape[-2:]
    prob = F.interpolate(clean, size=size, mode="bilinear", align_corners=True).softmax(1)
    max_prob, pseudo = prob.max(1)
    weight = Fn.pseudo_label_weight(max_prob, cfg.pseudo_threshold, mode="uniform", per_image=True)
    k_sup = cfg.k_sup if cfg.k_sup is not None else math.log(19)
    threshold = Fn.dynamic_threshold(iteration, total, k_sup=k_sup, form=cfg.threshold_form)
    if cfg.significance_resolution == "logits":
        entropy = Fn.predictive_entropy(noisy, official=True)
        hard = Fn.significance_mask(entropy, threshold)[:, None]
        sig = F.interpolate(hard, size=size, mode="bilinear", align_corners=True)[:, 0]
    else:
        mean = torch.stack([F.interpolate(p, size=size, mode="bilinear", align_corners=True) for p in noisy])
        entropy = Fn.predictive_entropy(mean)
        sig = Fn.significance_mask(entropy, threshold)
    stats = {name: buf.clone() for name, buf in model.named_buffers()}
    return {"prob": prob, "pseudo": pseudo, "weight": weight, "sig": sig, "stats": stats, "entropy": entropy}


def median_gap(values: torch.Tensor) -> float:
    """A threshold halfway between the two middle values: about half the pixels on each side, none close to it."""
    ordered = values.flatten().sort().values
    middle = ordered.numel() // 2
    return float(ordered[middle - 1] + ordered[middle]) / 2


@pytest.mark.parametrize("model_name", ["deeplabv2_tiny", "daformer_mittiny"])
@pytest.mark.parametrize("resolution", ["input", "logits"])
def test_every_grouping_of_the_passes_equals_separate_forwards(model_name: str, resolution: str) -> None:
    torch.manual_seed(0)
    teacher = set_teacher_mode_(build_model(model_name, 19).requires_grad_(False), True)  # no dropout, as trained
    image = torch.randn(B, 3, SIZE, SIZE) * 60
    cfg = MethodConfig(name="mean_teacher", mix="camix", consistency="src", noise_passes=N)
    cfg = replace(cfg, significance_resolution=resolution)
    generator = torch.Generator().manual_seed(3)
    passes = [image, *Fn.noisy_copies(image, N, generator, std=cfg.noise_std, clip=cfg.noise_clip).unbind(0)]
    # at t = T the threshold is K_sup: put it amid the pixels' entropies, so that U_T masks about half of them
    cfg = replace(cfg, k_sup=median_gap(reference(teacher, passes, cfg, iteration=100, total=100)["entropy"]))
    expected = reference(teacher, passes, cfg, iteration=100, total=100)
    assert 0.2 < float(expected["sig"].mean()) < 0.8
    for group in (1, 2, 3, N + 1, None):
        model = copy.deepcopy(teacher)
        generator = torch.Generator().manual_seed(3)
        ctx = build_context(
            cfg, student=model, teacher=model, num_classes=19, generator=generator, total_iterations=100, crop=(B, B)
        )
        ctx.iteration, ctx.teacher_group = 100, group
        view = teacher_view(ctx, image, significance=True)
        assert torch.allclose(view.prob, expected["prob"], atol=1e-5), group
        assert torch.equal(view.pseudo, expected["pseudo"]), group
        assert torch.allclose(view.weight, expected["weight"], atol=1e-5), group
        assert view.significance is not None and torch.allclose(view.significance, expected["sig"], atol=1e-5), group
        for name, buffer in model.named_buffers():  # the clean pass alone moved the running statistics
            assert torch.allclose(buffer.float(), expected["stats"][name].float(), atol=1e-5), (group, name)
        assert any(not torch.equal(b, expected["stats"][n]) for n, b in teacher.named_buffers() if "running" in n)


def test_a_pass_alone_without_tracking_leaves_the_running_statistics() -> None:
    from camix.models.batchnorm import ChunkedBatchNorm2d, per_pass_batch_stats

    layer = ChunkedBatchNorm2d(3).train()
    x = torch.randn(4, 3, 5, 5) * 3 + 2
    with per_pass_batch_stats(layer, 1, track=False):
        out = layer(x)
    assert torch.allclose(out, F.batch_norm(x, None, None, training=True), atol=1e-5)
    assert torch.equal(layer.running_mean, torch.zeros(3)) and int(layer.num_batches_tracked) == 0
    assert layer.chunks == 1 and layer.track  # restored on exit


def test_auto_is_separate_on_the_cpu_and_batched_on_a_gpu_unless_the_config_forces_a_grouping() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert passes_per_forward("auto", cpu) == 1 and passes_per_forward("auto", gpu) is None
    assert passes_per_forward("separate", gpu) == 1 and passes_per_forward("batched", cpu) is None
    assert passes_per_forward(3, cpu) == 3


def test_the_released_noise_runs_one_noisy_pass_for_all_n() -> None:
    """``official_noise``: every copy is the image - 0.2, so one noisy pass gives what N identical passes give."""
    torch.manual_seed(0)
    teacher = set_teacher_mode_(build_model("deeplabv2_tiny", 19).requires_grad_(False), True)
    image = torch.randn(B, 3, SIZE, SIZE) * 60
    cfg = MethodConfig(name="mean_teacher", mix="camix", consistency="src", noise_passes=N, official_noise=True)
    copies = [image - 0.2] * N
    cfg = replace(cfg, k_sup=median_gap(reference(teacher, [image, *copies], cfg, iteration=100, total=100)["entropy"]))
    expected = reference(teacher, [image, *copies], cfg, iteration=100, total=100)
    rows: list[int] = []
    model = copy.deepcopy(teacher)
    model.register_forward_pre_hook(lambda _m, args: rows.append(args[0].shape[0]))
    ctx = build_context(
        cfg,
        student=model,
        teacher=model,
        num_classes=19,
        generator=torch.Generator(),
        total_iterations=100,
        crop=(B, B),
    )
    ctx.iteration, ctx.teacher_group = 100, None
    view = teacher_view(ctx, image, significance=True)
    assert rows == [2 * B]  # the clean pass and one noisy pass, in one forward
    assert 0.2 < float(expected["sig"].mean()) < 0.8
    assert view.significance is not None and torch.allclose(view.significance, expected["sig"], atol=1e-5)
    assert torch.equal(view.pseudo, expected["pseudo"])
