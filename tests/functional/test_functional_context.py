"""Spatial prior, modulated pseudo-label and the contextual mask (paper Sec. 3.1, Eq. 1)."""

from __future__ import annotations

import math

import pytest
import torch

import camix.functional as F


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def one_hot_prob(labels: torch.Tensor, num_classes: int = 19) -> torch.Tensor:
    """Teacher probabilities whose argmax is ``labels``: 0.9 on the label, the rest shared."""
    onehot = torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()
    return onehot * 0.9 + (1 - onehot) * (0.1 / (num_classes - 1))


# -------------------------------------------------------------------------------------------------- spatial_prior
def test_spatial_prior_golden() -> None:
    a = torch.zeros(4, 4, dtype=torch.int64)
    b = torch.zeros(4, 4, dtype=torch.int64)
    a[0, 0], b[0, 0] = 1, 2  # pixel (0,0): one 1 and one 2 -> Q = (0, 1/2, 1/2)
    a[3, 3] = 255  # pixel (3,3): only b counts, class 0 -> Q = (1, 0, 0)
    a[1, 1] = b[1, 1] = 255  # pixel (1,1): nothing counted -> uniform (1/3, 1/3, 1/3)
    prior = F.spatial_prior([a, b], 3, (4, 4))
    assert prior.shape == (3, 4, 4) and prior.dtype == torch.float32
    assert prior[:, 0, 0].tolist() == [0.0, 0.5, 0.5]
    assert prior[:, 3, 3].tolist() == [1.0, 0.0, 0.0]
    assert torch.allclose(prior[:, 1, 1], torch.full((3,), 1 / 3))
    assert prior[:, 2, 2].tolist() == [1.0, 0.0, 0.0]  # two 0s
    # smoothing s = 1 at (0,0): counts (0, 1, 1) + 1 = (1, 2, 2), total 2 + 3·1 = 5 -> (0.2, 0.4, 0.4)
    smoothed = F.spatial_prior([a, b], 3, (4, 4), smoothing=1.0)
    assert torch.allclose(smoothed[:, 0, 0], torch.tensor([0.2, 0.4, 0.4]))
    assert torch.allclose(smoothed.sum(0), torch.ones(4, 4))


def test_spatial_prior_batches_equal_single_maps_and_resize_is_nearest() -> None:
    labels = torch.randint(0, 5, (3, 4, 4), generator=gen(1))
    assert torch.equal(F.spatial_prior([labels], 5, (4, 4)), F.spatial_prior(list(labels), 5, (4, 4)))
    big = labels.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # 8x8, every pixel doubled
    assert torch.equal(F.spatial_prior([big], 5, (4, 4)), F.spatial_prior([labels], 5, (4, 4)))
    assert torch.allclose(F.spatial_prior([big], 5, (3, 5)).sum(0), torch.ones(3, 5))
    with pytest.raises(ValueError):
        F.spatial_prior([], 5, (4, 4))


# ----------------------------------------------------------------------------------------- modulated_pseudo_label
def test_modulated_pseudo_label_golden() -> None:
    prob = torch.tensor([0.6, 0.4]).view(1, 2, 1, 1).expand(1, 2, 4, 4)  # the teacher says class 0 everywhere
    prior = torch.empty(2, 4, 4)
    prior[:, :2] = torch.tensor([0.2, 0.8]).view(2, 1, 1)  # top: 0.6·0.2 = 0.12 < 0.4·0.8 = 0.32 -> class 1
    prior[:, 2:] = torch.tensor([0.9, 0.1]).view(2, 1, 1)  # bottom: 0.6·0.9 = 0.54 > 0.4·0.1 = 0.04 -> class 0
    expected = torch.tensor([[1] * 4, [1] * 4, [0] * 4, [0] * 4]).unsqueeze(0)
    out = F.modulated_pseudo_label(prob, prior)
    assert out.dtype == torch.int64 and torch.equal(out, expected)
    assert torch.equal(F.modulated_pseudo_label(prob, prior.unsqueeze(0)), expected)  # [B, C, H, W] prior
    assert torch.equal(F.modulated_pseudo_label(prob, None), torch.zeros(1, 4, 4, dtype=torch.int64))


def test_modulated_pseudo_label_resizes_a_prior_of_another_size() -> None:
    prob = torch.tensor([0.6, 0.4]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    prior = torch.tensor([0.2, 0.8]).view(2, 1, 1).expand(2, 2, 2)  # constant: bilinear resize keeps it
    assert torch.equal(F.modulated_pseudo_label(prob, prior), torch.ones(1, 4, 4, dtype=torch.int64))


# ------------------------------------------------------------------------------------------------ contextual_mask
def test_contextual_mask_golden_single_class_takes_everything() -> None:
    # one present class -> ceil(1/2) = 1 class chosen -> every pixel
    prob = one_hot_prob(torch.full((1, 4, 4), 3))
    mask = F.contextual_mask(prob, None, F.DEFAULT_RELATIONS, gen())
    assert mask.dtype == torch.bool and mask.shape == (1, 4, 4) and mask.all()


def test_contextual_mask_golden_two_classes_takes_one_half() -> None:
    labels = torch.tensor([[[0, 0, 1, 1]] * 4])  # n = 2 -> one class: the left or the right half
    halves = {tuple(F.contextual_mask(one_hot_prob(labels), None, {}, gen(s)).flatten().tolist()) for s in range(20)}
    left = tuple([True, True, False, False] * 4)
    assert halves == {left, tuple(not v for v in left)}


def test_contextual_mask_pole_and_light_always_travel_together() -> None:
    labels = torch.tensor([[[5, 5, 6, 6]] * 4])  # n = 2 -> 1 chosen; 5 pulls 6 and 6 pulls 5 -> always all
    for seed in range(10):
        assert F.contextual_mask(one_hot_prob(labels), None, F.DEFAULT_RELATIONS, gen(seed)).all()
    # without relations it is always exactly one of the two
    assert not any(F.contextual_mask(one_hot_prob(labels), None, {}, gen(s)).all() for s in range(10))


def test_contextual_mask_rider_pulls_motorcycle_never_the_reverse() -> None:
    labels = torch.tensor([[[12, 12, 17, 17]] * 4])  # n = 2 -> 1 chosen
    outcomes = set()
    for seed in range(30):
        mask = F.contextual_mask(one_hot_prob(labels), None, F.DEFAULT_RELATIONS, gen(seed))
        outcomes.add("all" if mask.all() else "17 only" if torch.equal(mask, labels == 17) else "other")
    assert outcomes == {"all", "17 only"}  # rider chosen -> rider + motorcycle; motorcycle chosen -> alone


def test_contextual_mask_uses_the_spatial_prior() -> None:
    prob = torch.empty(1, 2, 4, 4)
    prob[:, :, :, :2] = torch.tensor([0.6, 0.4]).view(1, 2, 1, 1)  # argmax: class 0 on the left
    prob[:, :, :, 2:] = torch.tensor([0.4, 0.6]).view(1, 2, 1, 1)  # class 1 on the right
    prior = torch.tensor([0.1, 0.9]).view(2, 1, 1).expand(2, 4, 4)
    # modulated: left 0.06 vs 0.36, right 0.04 vs 0.54 -> class 1 everywhere -> n = 1 -> the whole image
    assert all(F.contextual_mask(prob, prior, {}, gen(s)).all() for s in range(10))
    # no prior ("iDACS" without SP): two classes -> always exactly one half
    assert all(F.contextual_mask(prob, None, {}, gen(s)).sum() == 8 for s in range(10))


def random_scene(seed: int, batch: int = 6, size: int = 16) -> torch.Tensor:
    g = gen(seed)
    coarse = torch.randint(0, 19, (batch, size // 4, size // 4), generator=g)
    labels = coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)
    return torch.randn(batch, 19, size, size, generator=g) * 0.1 + one_hot_prob(labels) * 4


@pytest.mark.parametrize("relations", [F.DEFAULT_RELATIONS, F.EXTENDED_RELATIONS, {}])
def test_contextual_mask_equals_reference_functions_image_by_image(relations: dict) -> None:
    prob = random_scene(3).softmax(1)
    prior = torch.rand(19, 16, 16, generator=gen(4))
    mask = F.contextual_mask(prob, prior, relations, gen(5))
    # replay the batched selection with the same seed, then take the reference path per image
    labels = F.modulated_pseudo_label(prob, prior)
    present = F.presence_matrix(labels, 19)
    selected = F.select_half_batched(present, gen(5))
    for b in range(prob.shape[0]):
        pres = labels[b].unique()
        sel = selected[b].nonzero().flatten()
        assert sel.numel() == math.ceil(pres.numel() / 2) and set(sel.tolist()) <= set(pres.tolist())
        classes = F.expand_with_relations(sel, pres, relations)
        assert torch.equal(mask[b], F.class_mask(labels[b], classes))


def test_contextual_mask_takes_whole_classes_only() -> None:
    prob = random_scene(6).softmax(1)
    labels = prob.argmax(1)
    mask = F.contextual_mask(prob, None, F.DEFAULT_RELATIONS, gen(1))
    for b in range(prob.shape[0]):
        for c in labels[b].unique():
            region = mask[b][labels[b] == c]
            assert region.all() or not region.any()  # a class is copied entirely or not at all
        n = labels[b].unique().numel()
        chosen = labels[b][mask[b]].unique().numel()
        assert math.ceil(n / 2) <= chosen <= n


def test_contextual_mask_relations_as_matrix_and_seed_determinism() -> None:
    prob = random_scene(7).softmax(1)
    matrix = F.relations_matrix(F.DEFAULT_RELATIONS, 19)
    by_map = F.contextual_mask(prob, None, F.DEFAULT_RELATIONS, gen(9))
    assert torch.equal(by_map, F.contextual_mask(prob, None, matrix, gen(9)))
    assert torch.equal(by_map, F.contextual_mask(prob, None, F.DEFAULT_RELATIONS, gen(9)))
    assert not all(torch.equal(by_map, F.contextual_mask(prob, None, F.DEFAULT_RELATIONS, gen(s))) for s in range(5))
