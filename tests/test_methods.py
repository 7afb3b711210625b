"""One CAMix/baseline step, inspected: what is mixed where, which loss, and the N noisy teacher passes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from camix import functional as Fn
from camix.config import MethodConfig
from camix.methods import StepContext, active_mix, mean_teacher, relations_for, source_only, teacher_view
from camix.models import build_model

B, H, W = 2, 32, 48


def batch(seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    g = torch.Generator().manual_seed(seed)
    label = torch.zeros(B, H, W, dtype=torch.int64)
    label[:, : H // 3] = 10  # sky
    label[:, H // 3 : H // 2] = 2  # building
    label[:, H // 2 :] = 0  # road
    label[:, 10:20, 5:8] = 5  # a pole with a sign
    label[:, 10:13, 8:12] = 7
    label[:, 20:28, 20:34] = 13  # a car
    source = {"image": torch.randn(B, 3, H, W, generator=g) * 40, "label": label}
    target = {
        "image": torch.randn(B, 3, H, W, generator=g) * 40 + 20,
        "label": label.flip(-1),
        "box": torch.tensor([[0, 0, H, W]] * B),
    }
    return source, target


def context(**method: Any) -> StepContext:
    torch.manual_seed(0)
    student = build_model("deeplabv2_tiny", 19)
    teacher = copy.deepcopy(student).requires_grad_(False)
    prior = torch.full((19, H, W), 1 / 19)
    cfg = MethodConfig(name="mean_teacher", **method)
    return StepContext(
        student=student,
        teacher=teacher,
        cfg=cfg,
        num_classes=19,
        generator=torch.Generator().manual_seed(1),
        augment=lambda x: x,
        total_iterations=10,
        prior=prior,
        relations=relations_for(cfg.relations),
    )


@pytest.mark.parametrize("mix", ["camix", "inverse_classmix", "classmix", "cutmix", "cowmix", "none"])
def test_mixing_levels_take_target_inside_the_mask_and_source_outside(mix: str) -> None:
    ctx = context(mix=mix, consistency="src", noise_passes=2)
    source, target = batch(0)
    out = mean_teacher(ctx, source, target)
    m = out.extras["mask"]
    assert m.dtype == torch.bool and m.shape == (B, H, W)
    image, label, sig = out.extras["mixed_image"], out.extras["mixed_label"], out.extras["significance"]
    inside = m.unsqueeze(1).expand_as(image)
    assert torch.equal(image[inside], target["image"][inside])  # Eq. 2 (no photometric augmentation here)
    assert torch.equal(image[~inside], source["image"][~inside])
    assert torch.equal(label[m], out.extras["pseudo_label"][m])  # Eq. 4
    assert torch.equal(label[~m], source["label"][~m])
    assert torch.all(sig[~m] == 1)  # Eq. 8: U_S = 1
    if mix == "none":
        assert m.all()
    elif mix != "camix":
        assert 0 < m.float().mean() < 1


def test_camix_mask_is_made_of_whole_pseudo_label_classes_and_keeps_poles_with_signs() -> None:
    ctx = context(mix="camix", consistency="src", noise_passes=2)
    source, target = batch(1)
    for _ in range(5):
        out = mean_teacher(ctx, source, target)
        pseudo, m = out.extras["pseudo_label"], out.extras["mask"]
        for b in range(B):
            chosen = set(pseudo[b][m[b]].tolist())
            assert not chosen & set(pseudo[b][~m[b]].tolist())  # a class is taken entirely or not at all
            if chosen & {6, 7}:
                present_poles = bool((pseudo[b] == 5).any())
                assert 5 in chosen or not present_poles


def test_official_consistency_is_mean_of_ce_times_weight() -> None:
    ctx = context(mix="camix", consistency="src", official_src=True, noise_passes=2)
    source, target = batch(2)
    torch.manual_seed(5)
    out = mean_teacher(ctx, source, target)
    logits = F.interpolate(ctx.student(out.extras["mixed_image"]), size=(H, W), mode="bilinear", align_corners=True)
    ce = F.cross_entropy(logits, out.extras["mixed_label"], ignore_index=255, reduction="none")
    assert out.losses["con"].item() == pytest.approx((ce * out.extras["weight"]).mean().item(), rel=1e-5)


def test_src_reweights_by_the_significance_mask() -> None:
    ctx = context(mix="camix", consistency="src", noise_passes=2)
    source, target = batch(3)
    out = mean_teacher(ctx, source, target)
    logits = F.interpolate(ctx.student(out.extras["mixed_image"]), size=(H, W), mode="bilinear", align_corners=True)
    ce = F.cross_entropy(logits, out.extras["mixed_label"], reduction="none")
    u, w = out.extras["significance"], out.extras["weight"]
    assert out.losses["con"].item() == pytest.approx(((u * w * ce).sum() / u.sum()).item(), rel=1e-5)  # Eq. 9


def teacher_inputs(**method: Any) -> torch.Tensor:
    ctx = context(mix="camix", consistency="src", **method)
    seen: list[torch.Tensor] = []
    assert ctx.teacher is not None
    ctx.teacher.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    teacher_view(ctx, batch(4)[1]["image"], significance=True)
    assert len(seen) == 1  # the clean and the N noisy passes go through one batched forward
    return seen[0]


def test_noisy_passes_differ_from_each_other_but_not_in_the_released_code() -> None:
    inputs = teacher_inputs(noise_passes=4)
    assert inputs.shape[0] == B * (1 + 4)
    noisy = inputs[B:].unflatten(0, (4, B))
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(noisy[i], noisy[j])
    assert (noisy - inputs[:B]).abs().max() <= 0.2 * 255 + 1e-3  # clipped to +-0.2 of the intensity range
    official = teacher_inputs(noise_passes=4, official_noise=True)[B:].unflatten(0, (4, B))
    assert all(torch.equal(official[0], official[i]) for i in range(4))


def test_significance_mask_follows_the_dynamic_threshold() -> None:
    ctx = context(mix="camix", consistency="src", noise_passes=2, threshold_ramp=100)
    image = batch(5)[1]["image"]
    ctx.iteration = 100  # end of the ramp: H = k_sup = ln 19, the largest possible entropy
    assert teacher_view(ctx, image, significance=True).significance.all()  # type: ignore[union-attr]
    ctx.cfg = MethodConfig(name="mean_teacher", mix="camix", noise_passes=2, threshold_ramp=100, k_sup=0.0)
    assert not teacher_view(ctx, image, significance=True).significance.any()  # type: ignore[union-attr]


def test_camix_warms_up_with_classmix() -> None:
    cfg = MethodConfig(name="mean_teacher", mix="camix", warmup_iterations=3)
    assert [active_mix(cfg, t) for t in (0, 2, 3, 10)] == ["classmix", "classmix", "camix", "camix"]


def test_gradient_reaches_the_student_only() -> None:
    ctx = context(mix="camix", consistency="src", noise_passes=2)
    source, target = batch(6)
    out = mean_teacher(ctx, source, target)
    sum(out.losses.values()).backward()  # type: ignore[union-attr]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ctx.student.parameters())
    assert ctx.teacher is not None and all(p.grad is None for p in ctx.teacher.parameters())
    assert Fn.DEFAULT_RELATIONS[12] == (17, 18)


@pytest.mark.parametrize("augment_source", [False, True])
def test_source_only_augments_the_labelled_batch_only_when_asked(augment_source: bool) -> None:
    """source-only + aug (the diagnostic row): the student sees the strongly augmented source image."""
    seen: list[torch.Tensor] = []
    ctx = context(augment_source=augment_source)
    ctx.augment = lambda x: x.flip(-1) + 7.0  # a stand-in with a recognisable effect
    ctx.student.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    source, _ = batch(0)
    out = source_only(ctx, source)
    expected = source["image"].flip(-1) + 7.0 if augment_source else source["image"]
    assert len(seen) == 1 and torch.equal(seen[0], expected)
    logits = F.interpolate(ctx.student(expected), size=(H, W), mode="bilinear", align_corners=True)
    assert torch.allclose(out.losses["seg"], F.cross_entropy(logits, source["label"], ignore_index=255), atol=1e-6)
