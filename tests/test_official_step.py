"""One post-warm-up CAMix step under the ``official`` switches against the released loop's arithmetic.

The reference below restates, from the description of the authors' released training loop (docs/fidelity.md),
what one iteration computes; it uses torch primitives only, none of camix's functions. The only thing it takes
from camix's step is the random contextual mask M, which it first checks for the properties Eq. 1 requires.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from camix.config import MethodConfig, load_config
from camix.methods import build_context, mean_teacher
from camix.models import build_model

B, H, W, C = 2, 40, 56, 19
ITERATION, RAMP = 7, 20


def official_method() -> MethodConfig:
    cfg = load_config("configs/synthcity/camix_official.yaml").method
    overrides = {"warmup_iterations": 3, "threshold_ramp": RAMP, "augment": cfg.augment}
    return MethodConfig(**{**cfg.__dict__, **overrides})


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=(H, W), mode="bilinear", align_corners=True)


def inputs() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    label = torch.randint(0, C, (B, H // 8, W // 8), generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    label[:, :4] = 255  # some ignored source pixels
    source = {"image": torch.randn(B, 3, H, W, generator=g) * 60, "label": label}
    target = {"image": torch.randn(B, 3, H, W, generator=g) * 60 + 10, "box": torch.tensor([[0, 0, H, W]] * B)}
    prior = torch.rand(C, H, W, generator=g) ** 4  # uneven, so that it changes the modulated argmax
    return source, target, prior


def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    student = build_model("deeplabv2_tiny", C).train()
    teacher = copy.deepcopy(student).requires_grad_(False).train()
    with torch.no_grad():  # a sharper teacher: some pixels above DACS's 0.968, some below
        for conv in teacher.layer5.conv2d_list:  # type: ignore[union-attr]
            conv.weight.mul_(400.0)
    return student, teacher


def check_contextual_mask(mask: torch.Tensor, modulated: torch.Tensor) -> None:
    """M is a union of whole classes of the modulated label, at least half of them, closed under the relations."""
    relations = {6: (5,), 7: (5,), 5: (6, 7), 12: (17, 18)}
    for b in range(B):
        present = modulated[b].unique().tolist()
        chosen = set()
        for c in present:
            inside = mask[b][modulated[b] == c]
            assert inside.all() or not inside.any()
            if inside.all():
                chosen.add(c)
        assert len(chosen) >= math.ceil(len(present) / 2)
        for c in chosen:
            assert all(r in chosen for r in relations.get(c, ()) if r in present)


def released_step(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    source: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    prior: torch.Tensor,
    mask: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The released loop's arithmetic for one CAMix iteration after the warm-up (no jitter, blur or flip)."""
    images, labels, images_remain = source["image"], source["label"], target["image"]
    pred = upsample(student(images))
    loss_l = F.cross_entropy(pred, labels, ignore_index=255)  # mean over the non-ignored pixels
    with torch.no_grad():
        pseudo_label = torch.softmax(upsample(teacher(images_remain)), dim=1)
        max_probs, targets_u_w = torch.max(pseudo_label, dim=1)
        modulated = torch.mul(prior.unsqueeze(0), pseudo_label).max(1).indices
        check_contextual_mask(mask, modulated)
        # the threshold, then 8 "noisy" copies: clamp(noise, min=0.2, max=-0.2) is -0.2 everywhere
        h = (0.75 + 0.25 * math.exp(-5 * (1 - ITERATION / RAMP) ** 2)) * math.log(C)
        all_images = images_remain.repeat((8, 1, 1, 1))
        all_images = all_images + torch.clamp(torch.randn_like(all_images) * 0.1, 0.2, -0.2)
        all_preds = F.softmax(teacher(all_images), dim=1)  # logits' resolution, one batch of 16
        all_preds = all_preds.reshape(8, B, C, *all_preds.shape[2:])
        averages = all_preds.mean(dim=0)
        u_t = -(averages * averages.log()).sum(dim=1, keepdim=True)
        u_mask_t = upsample((u_t < h).float())[:, 0]
        u_mask_s = torch.ones_like(u_mask_t)
    m = mask.float()
    inputs_u_s = m[:, None] * images_remain + (1 - m[:, None]) * images
    logits_u_s = upsample(student(inputs_u_s))
    targets_u = (m * targets_u_w + (1 - m) * labels).long()
    unlabeled_weight = torch.sum(max_probs.ge(0.968).long() == 1).item() / targets_u.numel()
    pixel_wise_weight = m * (unlabeled_weight * torch.ones(max_probs.shape)) + (1 - m) * 1.0
    u_mask_mix = m * u_mask_t + (1 - m) * u_mask_s
    ce = F.cross_entropy(logits_u_s, targets_u, ignore_index=255, reduction="none")
    loss_u = torch.mean(ce * pixel_wise_weight) * u_mask_mix
    total = u_mask_mix.sum()
    loss_u = loss_u.sum() if total == 0 else loss_u.sum() / total
    return {
        "seg": loss_l,
        "con": loss_u,
        "label": targets_u,
        "image": inputs_u_s,
        "significance": u_mask_mix,
        "confident": torch.tensor(unlabeled_weight),
    }


def test_official_camix_step_matches_the_released_arithmetic() -> None:
    source, target, prior = inputs()
    student, teacher = models()
    cfg = official_method()
    ctx = build_context(
        cfg,
        student=student,
        teacher=teacher,
        num_classes=C,
        generator=torch.Generator().manual_seed(5),
        total_iterations=1000,
        augment=lambda x: x,  # jitter and blur are tested on their own (tests/test_augment.py)
        prior=prior,
        iteration=ITERATION,
    )
    out = mean_teacher(ctx, source, target)
    ref = released_step(student, teacher, source, target, prior, out.mixed.mask)
    assert 0.05 < ref["confident"].item() < 0.95  # the confidence weight is on and not trivial
    assert 0 < out.mixed.mask.float().mean() < 1
    torch.testing.assert_close(out.mixed.image, ref["image"], rtol=0, atol=1e-4)
    assert torch.equal(out.mixed.label, ref["label"])
    torch.testing.assert_close(out.mixed.significance, ref["significance"], rtol=0, atol=1e-5)
    assert abs(out.losses["seg"].item() - ref["seg"].item()) < 1e-5
    assert abs(out.losses["con"].item() - ref["con"].item()) < 1e-5
    # the batch fraction, not one per image: the two images' fractions differ
    assert torch.allclose(out.mixed.weight[out.mixed.mask], ref["confident"].float())


def test_every_official_config_selects_the_released_behaviour() -> None:
    """The three camix_official configs agree on every switch of docs/fidelity.md."""
    for name in ("gta2cs", "syn2cs", "synthcity"):
        cfg = load_config(f"configs/{name}/camix_official.yaml")
        m = cfg.method
        assert cfg.optim.duplicate_backbone_params and m.official_src and m.official_noise and m.official_mse
        assert m.classmix_count_ignore and not m.confidence_per_image and m.significance_resolution == "logits"
        assert m.augment.per_batch and m.augment.random_order and m.augment.jitter_strength == 0.25
        assert m.threshold_form == "code" and m.warmup_iterations > 0 and m.mix == "camix"
        assert cfg.model.aspp_branches == 2 and m.teacher_train_mode
    assert load_config("configs/syn2cs/camix_official.yaml").train.best_metrics == ("miou16", "miou13")
    assert load_config("configs/gta2cs/camix_official.yaml").train.eval_every == 2000
    assert load_config("configs/gta2cs/idacs.yaml").method.warmup_iterations == 110000  # like for like with CAMix
