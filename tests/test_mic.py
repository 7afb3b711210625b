"""MIC as a plug-in: one step restated from the reference's recipe without camix's functions, and its wiring."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from camix.config import MethodConfig, MicConfig, load_config
from camix.errors import ConfigError
from camix.methods import build_context, check_method_config, mean_teacher
from camix.mic import masked_consistency
from camix.models import build_model

B, H, W = 2, 40, 72


def context(mix: str = "classmix", weight: float = 1.0, seed: int = 5):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    student = build_model("deeplabv2_tiny", 19)
    teacher = copy.deepcopy(student).requires_grad_(False)
    mic = MicConfig(weight=weight, ratio=0.6, block=16)
    cfg = MethodConfig(name="mean_teacher", mix=mix, mic=mic, confidence_weight="none")  # an untrained teacher
    return build_context(
        cfg,
        student=student,
        teacher=teacher,
        num_classes=19,
        generator=torch.Generator().manual_seed(seed),
        total_iterations=10,
        crop=(W, H),
        prior=torch.full((19, H, W), 1 / 19),
    )


def test_one_mic_step_equals_the_reference_recipe_restated() -> None:
    """Augment the target (here a known stand-in), hide blocks of it (rand > r on a round(H/b) x round(W/b) grid,
    nearest upsampling), predict it, weighted CE against the pseudo-label of the unmasked image, times lambda."""
    ctx = context(weight=0.7)
    ctx.mic_augment = lambda x: 0.9 * x + 3.0  # MIC's colour augmentation, replaced by a known map
    image = torch.randn(B, 3, H, W) * 50
    pseudo = torch.randint(0, 19, (B, H, W))
    weight = torch.rand(B, H, W)
    loss, masked = masked_consistency(ctx, image, pseudo, weight)

    draws = torch.rand((B, 1, round(H / 16), round(W / 16)), generator=torch.Generator().manual_seed(5))
    rows = torch.arange(H) * draws.shape[2] // H
    cols = torch.arange(W) * draws.shape[3] // W
    keep = (draws > 0.6)[:, 0][:, rows[:, None], cols[None, :]]
    expected_image = (0.9 * image + 3.0) * keep[:, None].float()
    logits = ctx.student(expected_image)
    logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=True)
    ce = F.cross_entropy(logits, pseudo, reduction="none")
    expected = 0.7 * (ce * weight).mean()

    assert torch.allclose(masked, expected_image, atol=1e-5)
    assert masked[~keep[:, None].expand_as(masked)].abs().max() == 0  # hidden pixels are the mean colour
    assert abs(loss.item() - expected.item()) < 1e-5


@pytest.mark.parametrize("mix", ["classmix", "camix"])
def test_the_step_adds_the_term_scaled_by_its_weight_and_shows_the_masked_image(mix: str) -> None:
    g = torch.Generator().manual_seed(3)
    source = {"image": torch.randn(B, 3, H, W, generator=g) * 40, "label": torch.randint(0, 19, (B, H, W))}
    target = {"image": torch.randn(B, 3, H, W, generator=g) * 40, "box": torch.tensor([[0, 0, H, W]] * B)}
    off = mean_teacher(context(mix, weight=0.0), source, target)
    one = mean_teacher(context(mix, weight=1.0), source, target)
    two = mean_teacher(context(mix, weight=2.0), source, target)
    assert "mic" not in off.losses and "MIC masked target" not in off.tiles
    assert torch.isfinite(one.losses["mic"]) and one.losses["mic"].item() > 0
    assert torch.allclose(two.losses["mic"], 2 * one.losses["mic"], rtol=1e-5)  # same draws, twice the weight
    assert torch.equal(one.losses["con"], off.losses["con"])  # MIC draws after the host step: nothing else moves
    assert one.tiles["MIC masked target"].shape == (3, H, W)
    one.losses["mic"].backward()


def test_mic_needs_a_teacher() -> None:
    cfg = load_config(None, ["method.mic.weight=1"])
    with pytest.raises(ConfigError, match=r"'method.mic.weight': 1, but method.name=source_only has no teacher"):
        check_method_config(cfg)
    with pytest.raises(ConfigError, match=r"'method.mic.ratio': 1.0 is out of range"):
        load_config(None, ["method.mic.ratio=1.0"])
    with pytest.raises(ConfigError, match=r"'method.mic.block': 0 is out of range"):
        load_config(None, ["method.mic.block=0"])


def test_mic_under_bf16_autocast_stays_within_2_percent_of_fp32() -> None:
    """The fast path's bf16 autocast: the same draws give the masked-consistency loss within 2 % of fp32."""
    g = torch.Generator().manual_seed(4)
    source = {"image": torch.randn(B, 3, H, W, generator=g) * 40, "label": torch.randint(0, 19, (B, H, W))}
    target = {"image": torch.randn(B, 3, H, W, generator=g) * 40, "box": torch.tensor([[0, 0, H, W]] * B)}
    fp32 = mean_teacher(context("camix"), source, target).losses["mic"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = mean_teacher(context("camix"), source, target).losses["mic"]
    assert fp32.item() > 0 and bf16.dtype == torch.float32  # the loss is reduced in fp32 under autocast
    assert abs(bf16.item() - fp32.item()) <= 0.02 * fp32.item()
    bf16.backward()
