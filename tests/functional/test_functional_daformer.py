"""DAFormer's strategies: warm-up schedule, Rare Class Sampling, feature distance, ignored rows (hand-computed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from camix import functional as Fn
from camix.config import RareClassConfig
from camix.data.rcs import RareClassSampler

IGNORE = 255


@pytest.mark.parametrize(
    ("iteration", "expected"),
    [
        (0, 6e-5 * 1e-6),  # warm-up starts at warmup_ratio x the poly value
        (750, 6e-5 * (1 - 750 / 40000) * (1 - 0.5 * (1 - 1e-6))),  # half way: ~half of 5.8875e-5
        (1500, 6e-5 * (1 - 1500 / 40000)),  # warm-up over: 5.775e-5
        (20000, 3e-5),  # poly with power 1 is linear
        (40000, 0.0),
    ],
)
def test_daformer_warmup_then_linear_decay(iteration: int, expected: float) -> None:
    lr = Fn.warmup_poly_lr(iteration, 40000, 6e-5, power=1.0, warmup=1500, warmup_ratio=1e-6)
    assert lr == pytest.approx(expected, rel=1e-9, abs=1e-20)


def test_warmup_golden_values() -> None:
    schedule = [Fn.warmup_poly_lr(t, 40000, 6e-5, 1.0, 1500, 1e-6) for t in (0, 750, 1500, 20000, 40000)]
    assert schedule == pytest.approx([6e-11, 2.94375294375e-05, 5.775e-05, 3e-05, 0.0], rel=1e-9, abs=1e-20)


def test_without_warmup_it_is_the_plain_poly_schedule() -> None:
    assert Fn.warmup_poly_lr(100, 1000, 2.5e-4, 0.9) == pytest.approx(2.5e-4 * 0.9**0.9)


def test_rcs_probabilities_from_frequencies_by_hand() -> None:
    # frequencies 0.7, 0.2, 0.1, absent; (1 - f) / T with T = 0.1 -> 3, 8, 9
    probs = Fn.rcs_class_probabilities(torch.tensor([700, 200, 100, 0]), temperature=0.1)
    e3, e8, e9 = math.exp(3), math.exp(8), math.exp(9)
    expected = [e3 / (e3 + e8 + e9), e8 / (e3 + e8 + e9), e9 / (e3 + e8 + e9), 0.0]
    assert probs.tolist() == pytest.approx(expected, rel=1e-12)
    assert probs.tolist() == pytest.approx([0.0018088, 0.2684550, 0.7297362, 0.0], abs=1e-7)


def test_rcs_at_daformer_temperature_favours_the_rarest_class() -> None:
    probs = Fn.rcs_class_probabilities(torch.tensor([980, 15, 5]), temperature=0.01)
    # (1 - f) / T = 2, 98.5, 99.5: the rarest wins by e^1 over the next, the common class ~ e^-96.5
    assert probs[2] / probs[1] == pytest.approx(math.e)
    assert float(probs[0]) < 1e-40
    with pytest.raises(ValueError, match="temperature"):
        Fn.rcs_class_probabilities(torch.tensor([1, 2]), temperature=0.0)


def test_rare_class_sampler_draws_eligible_images_reproducibly() -> None:
    # 3 images x 3 classes; class 2 never reaches min_pixels = 10, so it is never drawn
    pixels = np.array([[100, 0, 5], [50, 20, 0], [0, 40, 8]])
    rcs = RareClassConfig(temperature=0.1, min_pixels=10)
    sampler = RareClassSampler(pixels, rcs, seed=3)
    draws = [sampler.draw(p) for p in range(400)]
    classes = np.array([c for _, _, c in draws])
    assert set(classes.tolist()) == {0, 1}
    for index, _, cls in draws:
        assert pixels[index, cls] >= 10  # the image holds the class it was drawn for
    # frequencies 150/258 and 60/258 (class 2's 13 pixels count in f but it is not drawable)
    f = np.array([150, 60, 13]) / 223
    p = np.exp((1 - f[:2]) / 0.1) / np.exp((1 - f[:2]) / 0.1).sum()
    assert (classes == 1).mean() == pytest.approx(p[1], abs=0.05)
    again = RareClassSampler(pixels, rcs, seed=3, start=250)
    assert [next(iter(again)) for _ in range(1)] == [draws[250]]  # a resumed stream continues exactly


def test_downscale_label_ratio_by_hand() -> None:
    label = torch.tensor(
        [
            [6, 6, 13, 13],
            [6, 6, 13, 0],
            [1, 1, IGNORE, IGNORE],
            [2, 3, IGNORE, IGNORE],
        ]
    ).unsqueeze(0)
    small = Fn.downscale_label_ratio(label, (2, 2), min_ratio=0.75, num_classes=19)
    # top-left all 6; top-right 13 covers 3/4 = 0.75 (kept); bottom-left 1 covers 1/2 (< 0.75); bottom-right ignored
    assert small.tolist() == [[[6, 13], [IGNORE, IGNORE]]]
    strict = Fn.downscale_label_ratio(label, (2, 2), min_ratio=0.8, num_classes=19)
    assert strict.tolist() == [[[6, IGNORE], [IGNORE, IGNORE]]]


def test_feature_distance_is_zero_without_thing_classes() -> None:
    features = torch.randn(2, 8, 2, 2, requires_grad=True)
    imagenet = torch.randn(2, 8, 2, 2)
    label = torch.zeros(2, 8, 8, dtype=torch.long)  # all road: no thing class
    loss = Fn.thing_feature_distance(features, imagenet, label)
    assert loss.item() == 0.0
    loss.backward()
    assert features.grad is not None and torch.equal(features.grad, torch.zeros_like(features))


def test_feature_distance_averages_l2_over_thing_cells_by_hand() -> None:
    features = torch.zeros(1, 2, 2, 2)
    imagenet = torch.zeros(1, 2, 2, 2)
    imagenet[0, :, 0, 0] = torch.tensor([3.0, 4.0])  # distance 5 at a car cell
    imagenet[0, :, 0, 1] = torch.tensor([6.0, 8.0])  # distance 10 at a person cell
    imagenet[0, :, 1, 0] = torch.tensor([1.0, 0.0])  # distance 1 at a road cell: not counted
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    label[0, :2, :2] = 13  # car
    label[0, :2, 2:] = 11  # person
    loss = Fn.thing_feature_distance(features, imagenet, label, min_ratio=0.75)
    assert loss.item() == pytest.approx((5 + 10) / 2)
    label[0, 0, 2] = 0  # the person cell: 3/4 person still passes 0.75 ...
    assert Fn.thing_feature_distance(features, imagenet, label).item() == pytest.approx(7.5)
    label[0, 1, 2] = 0  # ... 2/4 does not: only the car cell remains
    assert Fn.thing_feature_distance(features, imagenet, label).item() == pytest.approx(5.0)


def test_ignore_rows_zeroes_top_and_bottom_rows_only() -> None:
    weight = torch.full((2, 20, 3), 0.7)
    out = Fn.ignore_rows(weight, top=2, bottom=3)
    assert torch.equal(out[:, :2], torch.zeros(2, 2, 3)) and torch.equal(out[:, 17:], torch.zeros(2, 3, 3))
    assert torch.equal(out[:, 2:17], torch.full((2, 15, 3), 0.7))
    assert torch.equal(weight, torch.full((2, 20, 3), 0.7))  # the input is not modified
    assert torch.equal(Fn.ignore_rows(weight), weight)
    rows = Fn.ignore_rows(torch.ones(1, 512, 512), top=15, bottom=120)[0, :, 0]
    assert int(rows.sum()) == 512 - 135 and rows[14] == 0 and rows[15] == 1 and rows[391] == 1 and rows[392] == 0
