"""One CAMix/baseline step, inspected: what is mixed where, which loss, and the N noisy teacher passes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from camix import functional as Fn
from camix.config import MethodConfig
from camix.methods import build_context, mean_teacher, source_only
from camix.mixes import active_mix, contextual, crop_prior
from camix.models import build_model
from camix.models.batchnorm import deinterleave
from camix.step_context import StepContext
from camix.teacher import teacher_view

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
    return build_context(
        cfg,
        student=student,
        teacher=teacher,
        num_classes=19,
        generator=torch.Generator().manual_seed(1),
        total_iterations=10,
        augment=lambda x: x,
        prior=prior,
    )


@pytest.mark.parametrize("mix", ["camix", "inverse_classmix", "classmix", "cutmix", "cowmix", "none"])
def test_mixing_levels_take_target_inside_the_mask_and_source_outside(mix: str) -> None:
    ctx = context(mix=mix, consistency="src", noise_passes=2)
    source, target = batch(0)
    out = mean_teacher(ctx, source, target)
    m = out.mixed.mask
    assert m.dtype == torch.bool and m.shape == (B, H, W)
    image, label, sig = out.mixed.image, out.mixed.label, out.mixed.significance
    inside = m.unsqueeze(1).expand_as(image)
    assert torch.equal(image[inside], target["image"][inside])  # Eq. 2 (no photometric augmentation here)
    assert torch.equal(image[~inside], source["image"][~inside])
    assert torch.equal(label[m], out.mixed.pseudo_label[m])  # Eq. 4
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
        pseudo, m = out.mixed.pseudo_label, out.mixed.mask
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
    logits = F.interpolate(ctx.student(out.mixed.image), size=(H, W), mode="bilinear", align_corners=True)
    ce = F.cross_entropy(logits, out.mixed.label, ignore_index=255, reduction="none")
    assert out.losses["con"].item() == pytest.approx((ce * out.mixed.weight).mean().item(), rel=1e-5)


def test_src_reweights_by_the_significance_mask() -> None:
    ctx = context(mix="camix", consistency="src", noise_passes=2)
    source, target = batch(3)
    out = mean_teacher(ctx, source, target)
    logits = F.interpolate(ctx.student(out.mixed.image), size=(H, W), mode="bilinear", align_corners=True)
    ce = F.cross_entropy(logits, out.mixed.label, reduction="none")
    u, w = out.mixed.significance, out.mixed.weight
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
    inputs = deinterleave(teacher_inputs(noise_passes=4), 1 + 4)  # [B, 1 + N, ...]: the clean pass first
    assert inputs.shape[:2] == (B, 1 + 4)
    clean, noisy = inputs[:, 0], inputs[:, 1:]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(noisy[:, i], noisy[:, j])
    assert (noisy - clean[:, None]).abs().max() <= 0.2 * 255 + 1e-3  # clipped to +-0.2 of the intensity range
    # the released copies are all the image - 0.2: one noisy pass stands for the N identical ones
    official = deinterleave(teacher_inputs(noise_passes=4, official_noise=True), 2)
    assert torch.equal(official[:, 1], official[:, 0] - 0.2)


def test_significance_mask_follows_the_dynamic_threshold() -> None:
    ctx = context(mix="camix", consistency="src", noise_passes=2, threshold_ramp=100)
    image = batch(5)[1]["image"]
    ctx.iteration = 100  # end of the ramp: H = k_sup = ln 19, the largest possible entropy
    assert teacher_view(ctx, image, significance=True).significance.all()  # type: ignore[union-attr]
    ctx.cfg = MethodConfig(name="mean_teacher", mix="camix", noise_passes=2, threshold_ramp=100, k_sup=0.0)
    assert not teacher_view(ctx, image, significance=True).significance.any()  # type: ignore[union-attr]


@pytest.mark.parametrize("mix", ["camix", "inverse_classmix", "cutmix", "none"])
def test_every_mix_mode_warms_up_with_classmix(mix: str) -> None:
    cfg = MethodConfig(name="mean_teacher", mix=mix, warmup_iterations=3)  # type: ignore[arg-type]
    assert [active_mix(cfg, t) for t in (0, 2, 3, 10)] == ["classmix", "classmix", mix, mix]


def test_warm_up_loss_is_ce_for_src_and_stays_mse_for_mse() -> None:
    source, target = batch(7)
    src = context(mix="camix", consistency="src", noise_passes=2, warmup_iterations=5)
    warm = mean_teacher(src, source, target)
    assert warm.mixed is not None and bool((warm.mixed.significance == 1).all())  # no SigMask in the warm-up
    logits = F.interpolate(src.student(warm.mixed.image), size=(H, W), mode="bilinear", align_corners=True)
    ce = F.cross_entropy(logits, warm.mixed.label, reduction="none") * warm.mixed.weight
    assert warm.losses["con"].item() == pytest.approx(ce.mean().item(), rel=1e-5)  # weighted CE, no U
    mse = context(mix="camix", consistency="mse", official_mse=True, warmup_iterations=5)
    out = mean_teacher(mse, source, target)
    assert out.losses["con"].item() < 0.1  # an MSE of probabilities, not a cross-entropy (~ln 19)


def test_official_mse_regresses_onto_the_unmixed_soft_teacher() -> None:
    """Table 5's released MSE: confident fraction x mean over B*C*H*W of (softmax(student(mixed)) - P_T)^2."""
    ctx = context(mix="camix", consistency="mse", official_mse=True, pseudo_threshold=0.06)
    source, target = batch(8)
    out = mean_teacher(ctx, source, target)
    assert ctx.teacher is not None
    with torch.no_grad():
        teacher = F.interpolate(ctx.teacher(target["image"]), size=(H, W), mode="bilinear", align_corners=True)
        student = F.interpolate(ctx.student(out.mixed.image), size=(H, W), mode="bilinear", align_corners=True)
    prob = teacher.softmax(1)
    confident = (prob.max(1).values >= 0.06).float().mean()
    assert 0 < confident < 1
    expected = confident * (student.softmax(1) - prob).square().mean()
    assert out.losses["con"].item() == pytest.approx(expected.item(), rel=1e-5)
    onehot = mean_teacher(context(mix="camix", consistency="mse", pseudo_threshold=0.06), source, target)
    assert onehot.losses["con"].item() != pytest.approx(expected.item(), rel=1e-3)


def sharpen(ctx: StepContext, factor: float) -> StepContext:
    """A teacher whose pixel entropies spread over [0, ln C] (the untrained one is nearly uniform everywhere)."""
    assert ctx.teacher is not None
    with torch.no_grad():
        for conv in ctx.teacher.layer5.conv2d_list:  # type: ignore[union-attr]
            conv.weight.mul_(factor)
    return ctx


def test_threshold_ramp_defaults_to_the_run_length() -> None:
    """Eq. 7 as printed: t / t_max with t_max = train.iterations unless threshold_ramp is set."""
    ctx = sharpen(context(mix="camix", consistency="src", noise_passes=2, threshold_form="paper"), 30.0)
    assert ctx.cfg.threshold_ramp is None and ctx.total_iterations == 10
    image = batch(9)[1]["image"]
    ctx.iteration = 10  # t = t_max: H = beta + (1 - beta) ln 19 = 1.49 nats
    at_end = teacher_view(ctx, image, significance=True).significance
    ctx.cfg = MethodConfig(**{**ctx.cfg.__dict__, "threshold_ramp": 1000})  # H ~ beta = 0.75 at t = 10
    early = teacher_view(ctx, image, significance=True).significance
    assert at_end is not None and early is not None and at_end.sum() > early.sum()


def test_significance_at_the_logits_resolution_is_soft() -> None:
    ctx = context(mix="camix", consistency="src", noise_passes=2, significance_resolution="logits", k_sup=1.0)
    ctx = sharpen(ctx, 30.0)
    sig = teacher_view(ctx, batch(10)[1]["image"], significance=True).significance
    assert sig is not None and sig.shape == (B, H, W)
    assert ((sig > 0) & (sig < 1)).any() and sig.min() >= 0 and sig.max() <= 1


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


def test_every_mix_literal_and_method_literal_has_one_registry_record() -> None:
    from typing import get_args, get_type_hints

    from camix.methods import METHODS
    from camix.mixes import MIXES

    hints = get_type_hints(MethodConfig)
    assert set(get_args(hints["mix"])) == set(MIXES)
    assert set(get_args(hints["name"])) == set(METHODS)


def test_the_registry_decides_teacher_target_and_prior() -> None:
    from camix.methods import method_of, paper_label, uses_prior

    assert (method_of(MethodConfig(name="source_only")).teacher, method_of(MethodConfig()).target) == (False, False)
    assert method_of(MethodConfig(name="mean_teacher")).teacher and method_of(MethodConfig(name="mean_teacher")).target
    assert uses_prior(MethodConfig(name="mean_teacher", mix="camix"))
    assert not uses_prior(MethodConfig(name="mean_teacher", mix="camix", spatial_prior=False))
    assert not uses_prior(MethodConfig(name="mean_teacher", mix="classmix"))
    assert not uses_prior(MethodConfig(name="source_only", mix="camix"))
    assert build_context_prior("classmix") is None and build_context_prior("camix") is not None
    assert [paper_label("source_only", "none", t) for t in (False, True)] == ["Source only", "Oracle"]
    assert [paper_label("mean_teacher", m, False) for m in ("none", "classmix", "camix")] == [
        "Mean Teacher",
        "+ DACS",
        "+ CAMix",
    ]


def build_context_prior(mix: str) -> torch.Tensor | None:
    return context(mix=mix).prior


def test_crop_prior_gathers_each_box_like_slicing_and_ignores_the_box_size() -> None:
    prior = torch.arange(3 * 10 * 12, dtype=torch.float32).view(3, 10, 12)
    boxes = torch.tensor([[0, 0, 4, 5], [6, 7, 4, 5], [3, 2, 99, 99]])  # the last box's size is not read
    crops = crop_prior(prior, boxes, (4, 5))
    assert crops.shape == (3, 3, 4, 5)
    for crop, (top, left) in zip(crops, [(0, 0), (6, 7), (3, 2)], strict=True):
        assert torch.equal(crop, prior[:, top : top + 4, left : left + 5])
    assert crops[1, 2, 0, 0].item() == 2 * 120 + 6 * 12 + 7  # class 2, row 6, column 7


def test_crop_prior_is_uniform_where_a_crop_overhangs_a_smaller_image() -> None:
    prior = torch.rand(4, 3, 5, generator=torch.Generator().manual_seed(0))  # images of 5x3 (w x h), crops of 4x4
    crops = crop_prior(prior, torch.tensor([[0, 1, 4, 4]]), (4, 4))
    assert torch.equal(crops[0, :, :3, :], prior[:, :, 1:5])
    assert torch.all(crops[0, :, 3, :] == 0.25)  # the padded row: 1/C


def test_camix_mask_reads_the_prior_where_each_target_crop_lies() -> None:
    source, target = batch(3)
    ctx = context(mix="camix", noise_passes=2)
    g = torch.Generator().manual_seed(4)
    ctx.prior = torch.rand(19, H, 3 * W, generator=g) ** 4  # a prior that differs from place to place
    view = teacher_view(ctx, target["image"], False)
    masks = {}
    for left in (0, 2 * W):
        boxes = torch.tensor([[0, left, H, W], [0, left // 2, H, W]])  # per image: its own crop position
        ctx.generator.manual_seed(5)
        masks[left] = contextual(ctx, view, source, dict(target, box=boxes))
        expected = torch.stack([ctx.prior[:, :, left : left + W], ctx.prior[:, :, left // 2 : left // 2 + W]])
        ctx.generator.manual_seed(5)
        reference = Fn.contextual_mask(view.prob, expected, ctx.relations, ctx.generator)
        assert torch.equal(masks[left], reference)
    assert not torch.equal(masks[0], masks[2 * W])
