"""HRDA in a training step: the student's Prediction, its loss weighting, the detail crop's draw, the debug tiles,
bf16 autocast, and the arithmetic without HRDA unchanged."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from camix.config import load_config
from camix.labels import IGNORE_INDEX
from camix.methods import build_context, cross_entropy, mean_teacher
from camix.models import build_network, set_teacher_mode_
from camix.step_context import Prediction, StepContext, predict, upsampled_logits


def context(*extra: str, hrda: bool = True, amp: bool = False) -> StepContext:
    overrides = ["model.name=daformer_mittiny", "data.crop=[64,64]", "method.name=mean_teacher", "method.mix=camix"]
    overrides += ["method.noise_passes=2", "method.consistency=src"]
    if hrda:
        overrides += ["model.hrda.detail_crop=[32,32]", "model.hrda.attention_channels=8"]
    cfg = load_config(None, [*overrides, *extra])
    torch.manual_seed(0)
    student = build_network(cfg.model)
    teacher = set_teacher_mode_(build_network(cfg.model).requires_grad_(False), True)
    teacher.load_state_dict(student.state_dict())
    autocast = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16) if amp else None
    return build_context(
        cfg.method,
        student=student,
        teacher=teacher,
        num_classes=19,
        generator=torch.Generator().manual_seed(0),
        total_iterations=10,
        crop=cfg.data.crop,
        prior=torch.full((19, 64, 64), 1 / 19),
        hrda=cfg.model.hrda,
        output_stride=4,
        **({"autocast": autocast} if autocast else {}),
    )


def test_prediction_without_hrda_is_the_upsampled_logits_and_its_plain_loss() -> None:
    ctx = context(hrda=False)
    ctx.student.eval()  # no dropout: two forwards agree
    image, label = torch.randn(2, 3, 64, 64), torch.randint(0, 19, (2, 64, 64))
    pred = predict(ctx, image)
    torch.testing.assert_close(pred.logits, upsampled_logits(ctx.student, image), rtol=0, atol=0)
    assert pred.detail is None and pred.tiles(image) == {}
    assert torch.equal(pred.loss(cross_entropy, label), F.cross_entropy(pred.logits, label, ignore_index=IGNORE_INDEX))


def test_hrda_loss_is_the_weighted_fused_and_detail_cross_entropy() -> None:
    """HRDA Sec. 3.3, restated: (1 - lambda_d) CE(fused, y) + lambda_d CE(detail, y cropped at the detail box)."""
    logits, detail = torch.randn(2, 19, 16, 24), torch.randn(2, 19, 8, 8)
    label, weight = torch.randint(0, 19, (2, 16, 24)), torch.rand(2, 16, 24)
    pred = Prediction(logits, detail=detail, box=(8, 4), detail_weight=0.1)

    def weighted(lg: torch.Tensor, lb: torch.Tensor, w: torch.Tensor, scale: float) -> torch.Tensor:
        return (F.cross_entropy(lg, lb, reduction="none") * w).mean() * scale

    got = pred.loss(weighted, label, weight, 2.0)  # the scalar is passed as is, the maps are cropped
    fused = (F.cross_entropy(logits, label, reduction="none") * weight).mean() * 2.0
    crop = (F.cross_entropy(detail, label[:, 8:16, 4:12], reduction="none") * weight[:, 8:16, 4:12]).mean() * 2.0
    torch.testing.assert_close(got, 0.9 * fused + 0.1 * crop)


def test_hrda_prediction_draws_the_detail_on_the_grid_and_shows_its_tiles() -> None:
    ctx = context()
    image = torch.randn(2, 3, 64, 64)
    boxes = set()
    for _ in range(12):
        pred = predict(ctx, image, features=True)
        assert pred.logits.shape == (2, 19, 64, 64) and pred.logits.dtype == torch.float32
        assert pred.detail is not None and pred.detail.shape == (2, 19, 32, 32)
        assert pred.features is not None and pred.attention is not None and pred.attention.shape == (2, 19, 8, 8)
        assert pred.box[0] % 8 == 0 and pred.box[1] % 8 == 0 and max(pred.box) <= 32
        boxes.add(pred.box)
    assert len(boxes) > 3  # drawn from the step's generator
    tiles = pred.tiles(image)
    assert set(tiles) == {"HRDA context (x0.5)", "HRDA detail crop", "HRDA scale attention"}
    assert all(tile.shape[-2:] == (64, 64) for tile in tiles.values())


@pytest.mark.parametrize("amp", [False, True])
def test_a_mixing_step_with_hrda_runs_with_and_without_bf16(amp: bool) -> None:
    ctx = context("method.mic.weight=1", "method.mic.block=8", amp=amp)
    source = {"image": torch.randn(2, 3, 64, 64), "label": torch.randint(0, 19, (2, 64, 64))}
    target = {
        "image": torch.randn(2, 3, 64, 64),
        "label": torch.full((2, 64, 64), IGNORE_INDEX),
        "box": torch.tensor([[0, 0, 64, 64]] * 2),
    }
    out = mean_teacher(ctx, source, target)  # type: ignore[arg-type]
    assert set(out.losses) == {"seg", "con", "mic"}
    assert all(torch.isfinite(value) for value in out.losses.values())
    assert {"HRDA scale attention", "HRDA scale attention (mixed)"} <= set(out.tiles)
    sum(out.losses.values()).backward()  # type: ignore[union-attr]
    attention = [p.grad for n, p in ctx.student.named_parameters() if n.startswith("attention.classifier")]
    assert attention and all(g is not None and torch.isfinite(g).all() for g in attention)
