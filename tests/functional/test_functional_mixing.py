"""Mixup (Eqs. 2, 4, 8) and the ClassMix, CutMix and CowMix masks."""

from __future__ import annotations

import math

import pytest
import torch

import camix.functional as F


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


CHECKER = (torch.arange(4)[:, None] + torch.arange(4)[None, :]).remainder(2).bool().unsqueeze(0)  # [1, 4, 4]


# ------------------------------------------------------------------------------------------------------------ mix
def test_mix_images_take_a_inside_and_b_outside() -> None:
    a = torch.full((1, 3, 4, 4), 7.0)
    b = torch.arange(48, dtype=torch.float32).view(1, 3, 4, 4)
    out = F.mix(CHECKER, a, b)
    assert out.shape == (1, 3, 4, 4)
    # channel c, pixel (i, j): 7 where (i + j) is odd, else b = 16c + 4i + j
    for c in range(3):
        for i in range(4):
            for j in range(4):
                assert out[0, c, i, j] == (7.0 if (i + j) % 2 else 16 * c + 4 * i + j)


def test_mix_int_labels_stay_int_and_exact() -> None:
    a = torch.full((1, 4, 4), 255, dtype=torch.int64)
    b = torch.arange(16).view(1, 4, 4)
    out = F.mix(CHECKER, a, b)
    assert out.dtype == torch.int64
    assert torch.equal(out, torch.where(CHECKER, 255, b))
    assert torch.equal(F.mix(CHECKER.float(), a, b), out)  # a binary float mask on labels selects too


def test_mix_float_masks_eq8_and_soft_blend() -> None:
    u_t = torch.tensor([[[1.0, 0.0, 1.0, 0.0]] * 4])
    u_m = F.mix(CHECKER, u_t, torch.ones(1, 4, 4))  # Eq. 8: U_T where M = 1, U_S = 1 elsewhere
    # row i, col j: (i + j) odd -> U_T[j] (1, 0, 1, 0 by column) else 1
    expected = torch.tensor([[1.0 if (i + j) % 2 == 0 else float(j % 2 == 0) for j in range(4)] for i in range(4)])
    assert torch.equal(u_m, expected.unsqueeze(0))
    soft = F.mix(torch.full((1, 4, 4), 0.25), torch.full((1, 2, 4, 4), 4.0), torch.zeros(1, 2, 4, 4))
    assert torch.allclose(soft, torch.ones(1, 2, 4, 4))  # 0.25·4 + 0.75·0 = 1


# ---------------------------------------------------------------------------------------------------- classmix_mask
def test_classmix_mask_golden() -> None:
    labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]]])
    # classes {0, 1, 2} (255 is not a class): n = 3 -> ceil(3/2) = 2 classes = 8 pixels, never the 255 corner
    seen = set()
    for seed in range(30):
        mask = F.classmix_mask(labels, gen(seed))
        assert mask.dtype == torch.bool and mask.sum() == 8 and not mask[labels == 255].any()
        seen.add(tuple(labels[mask].unique().tolist()))
    assert seen == {(0, 1), (0, 2), (1, 2)}


def test_classmix_mask_official_counts_the_ignore_label() -> None:
    labels = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]]])
    # released code: {0, 1, 2, 255} -> n = 4 -> 2 "classes"; 255 is chosen half the time and then marked
    with_ignore = 0
    for seed in range(40):
        mask = F.classmix_mask(labels, gen(seed), count_ignore=True)
        assert mask.sum() == 8
        with_ignore += bool(mask[labels == 255].all())
    assert 10 <= with_ignore <= 30  # expected 20 (probability 1/2)


def test_classmix_picks_ceil_half_of_each_images_classes() -> None:
    g = gen(1)
    labels = torch.randint(0, 19, (8, 4, 4), generator=g) * (torch.rand(8, 1, 1, generator=g) < 0.5)  # some 1-class
    labels[0, 0] = 255
    mask = F.classmix_mask(labels, gen(2))
    for b in range(8):
        classes = set(labels[b].unique().tolist()) - {255}
        chosen = set(labels[b][mask[b]].unique().tolist())
        assert len(chosen) == math.ceil(len(classes) / 2) and chosen <= classes
        for c in chosen:
            assert mask[b][labels[b] == c].all()


def test_classmix_num_classes_and_seed() -> None:
    labels = torch.tensor([[[0, 1, 25, 25]] * 4])  # with num_classes=19, 25 is treated as ignored
    assert all(not F.classmix_mask(labels, gen(s), num_classes=19)[labels == 25].any() for s in range(10))
    assert torch.equal(F.classmix_mask(labels, gen(4)), F.classmix_mask(labels, gen(4)))


# ----------------------------------------------------------------------------------------------------- cutmix_mask
def test_cutmix_mask_golden_4x4() -> None:
    # H = W = 4: h = round(r·4), r in [1/2, 1] -> h in {2, 3, 4}; w = round(16 / (2h)) -> (2, 4), (3, 3), (4, 2)
    seen = set()
    for seed in range(40):
        mask = F.cutmix_mask((1, 4, 4), gen(seed))[0]
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        h, w = rows.numel(), cols.numel()
        assert torch.equal(mask.nonzero()[:, 0].unique(), rows)
        assert mask.sum() == h * w  # a solid box
        assert (rows.diff() == 1).all() and (cols.diff() == 1).all()
        seen.add((h, w))
    assert seen == {(2, 4), (3, 3), (4, 2)}


def test_cutmix_mask_covers_half_the_area() -> None:
    mask = F.cutmix_mask((16, 512, 384), gen(3))
    area = mask.flatten(1).float().mean(1)
    assert mask.dtype == torch.bool and mask.shape == (16, 512, 384)
    assert ((area - 0.5).abs() <= 0.5 / 384).all()  # |h·w − HW/2| <= h/2 -> relative error <= 1/W
    assert len({tuple(m.nonzero().min(0).values.tolist()) for m in mask}) > 8  # boxes move


# ----------------------------------------------------------------------------------------------------- cowmix_mask
def test_cowmix_mask_golden_without_smoothing() -> None:
    # sigma = 0: the field is the raw noise; p = 0.5 -> threshold = mean + std·0 = per-sample mean
    noise = torch.randn((2, 1, 4, 4), generator=gen(5)).view(2, 16)
    expected = (noise > noise.mean(1, keepdim=True)).view(2, 4, 4)
    assert torch.equal(F.cowmix_mask((2, 4, 4), gen(5), sigma=0.0, p=0.5), expected)


@pytest.mark.parametrize("p", [0.3, 0.5, 0.7])
def test_cowmix_mask_covers_about_one_minus_p(p: float) -> None:
    mask = F.cowmix_mask((8, 96, 96), gen(6), sigma=4.0, p=p)
    assert mask.dtype == torch.bool
    assert abs(mask.float().mean().item() - (1 - p)) < 0.05


def test_cowmix_mask_ends_smoothness_and_seed() -> None:
    assert F.cowmix_mask((1, 8, 8), gen(), sigma=2.0, p=0.0).all()
    assert not F.cowmix_mask((1, 8, 8), gen(), sigma=2.0, p=1.0).any()

    def edges(sigma: float) -> float:
        m = F.cowmix_mask((4, 64, 64), gen(7), sigma=sigma, p=0.5).float()
        return (m.diff(dim=1).abs().mean() + m.diff(dim=2).abs().mean()).item()

    assert edges(8.0) < edges(2.0) < edges(0.0)  # larger sigma -> blobs, fewer boundary pixels
    a, b = F.cowmix_mask((2, 32, 32), gen(8), sigma=3.0, p=0.5), F.cowmix_mask((2, 32, 32), gen(8), sigma=3.0, p=0.5)
    assert torch.equal(a, b)
