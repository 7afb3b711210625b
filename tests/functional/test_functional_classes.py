"""Class selection and relation closure: the reference path, the batched path, and their agreement."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch

import camix.functional as F


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ids(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


# ------------------------------------------------------------------------------------------------- select_classes
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 7, 19])
def test_select_classes_picks_ceil_half_distinct_present(n: int) -> None:
    present = torch.arange(n, dtype=torch.int64) * 2 + 1  # odd ids, so an index is never mistaken for a class
    for seed in range(20):
        chosen = F.select_classes(present, gen(seed))
        assert chosen.dtype == torch.int64
        assert chosen.numel() == math.ceil(n / 2)
        assert len(set(chosen.tolist())) == chosen.numel()
        assert set(chosen.tolist()) <= set(present.tolist())
        assert chosen.tolist() == sorted(chosen.tolist())


def test_select_classes_golden_single_class() -> None:
    # n = 1 -> ceil(1/2) = 1: the only class is always chosen
    assert F.select_classes(ids(13), gen(3)).tolist() == [13]


def test_select_classes_is_uniform_over_subsets() -> None:
    # n = 4 -> k = 2: 6 subsets, each with probability 1/6 -> 300 of 1800 draws (std ~ 15.8)
    counts = Counter(tuple(F.select_classes(ids(2, 5, 9, 11), gen(s)).tolist()) for s in range(1800))
    assert len(counts) == 6
    assert all(220 < c < 380 for c in counts.values()), counts


def test_select_classes_same_seed_same_choice() -> None:
    present = torch.arange(19)
    assert torch.equal(F.select_classes(present, gen(7)), F.select_classes(present, gen(7)))


# ------------------------------------------------------------------------------------------ expand_with_relations
@pytest.mark.parametrize(
    ("selected", "present", "expected"),
    [
        ((6,), (5, 6, 7, 11), (5, 6, 7)),  # light pulls pole, pole pulls sign (closure), person untouched
        ((7,), (5, 7), (5, 7)),  # sign pulls pole; light absent
        ((5,), (5, 6, 7), (5, 6, 7)),  # pole pulls lights and signs
        ((5,), (5, 7), (5, 7)),  # ... only those present
        ((12,), (12, 17, 18), (12, 17, 18)),  # rider pulls both two-wheelers
        ((17,), (12, 17, 18), (17,)),  # a motorcycle never pulls a rider ...
        ((18,), (12, 18), (18,)),  # ... nor does a bicycle
        ((13,), (5, 6, 13), (13,)),  # car has no relation
        ((), (5, 6), ()),
    ],
)
def test_expand_with_default_relations(selected: tuple, present: tuple, expected: tuple) -> None:
    out = F.expand_with_relations(ids(*selected), ids(*present), F.DEFAULT_RELATIONS)
    assert out.dtype == torch.int64
    assert out.tolist() == list(expected)


def test_expand_stays_inside_present_along_chains() -> None:
    chain = {0: (1,), 1: (2,), 2: (3,)}
    # 0 -> 1 (present) -> 2 (absent: the chain stops there, so 3 is not reached)
    assert F.expand_with_relations(ids(0), ids(0, 1, 3), chain).tolist() == [0, 1]
    assert F.expand_with_relations(ids(0), ids(0, 1, 2, 3), chain).tolist() == [0, 1, 2, 3]


def test_extended_relations_add_the_disabled_groups() -> None:
    present = ids(0, 1, 2, 3, 4, 8, 9)
    assert F.expand_with_relations(ids(0), present, F.EXTENDED_RELATIONS).tolist() == [0, 1]  # road <-> sidewalk
    assert F.expand_with_relations(ids(4), present, F.EXTENDED_RELATIONS).tolist() == [2, 4]  # fence -> building
    assert F.expand_with_relations(ids(2), present, F.EXTENDED_RELATIONS).tolist() == [2]  # not the reverse
    assert F.expand_with_relations(ids(9), present, F.EXTENDED_RELATIONS).tolist() == [8, 9]  # terrain <-> veg
    assert F.expand_with_relations(ids(0), present, F.DEFAULT_RELATIONS).tolist() == [0]
    assert F.RELATION_PRESETS["none"] == {}


# ---------------------------------------------------------------------------------- class_mask, relations_matrix
def test_class_mask_golden() -> None:
    labels = torch.tensor([[0, 0, 1, 1], [2, 2, 1, 255], [5, 6, 7, 255], [12, 17, 18, 0]])
    expected = torch.tensor(
        [[False, False, True, True], [False, False, True, False], [True, False, True, False], [False] * 4]
    )  # classes {1, 5, 7}: the 1s, the pole (5) and the sign (7); 255 never
    out = F.class_mask(labels, ids(1, 5, 7))
    assert out.dtype == torch.bool
    assert torch.equal(out, expected)
    assert not F.class_mask(labels, ids()).any()


def test_relations_matrix_golden() -> None:
    matrix = F.relations_matrix(F.DEFAULT_RELATIONS, 19, "cpu")
    assert matrix.shape == (19, 19) and matrix.dtype == torch.bool
    pairs = {tuple(p) for p in matrix.nonzero().tolist()}
    assert pairs == {(6, 5), (7, 5), (5, 6), (5, 7), (12, 17), (12, 18)}
    with pytest.raises(ValueError, match="outside"):
        F.relations_matrix({3: (19,)}, 19)


# ---------------------------------------------------------------------------------------------------- batched path
def test_label_bins_golden() -> None:
    # K = 4: 0..3 stay; 4, 255, -1, 100 all go to the "other" column 4; ignore_index 2 (inside [0, K)) too
    labels = torch.tensor([[0, 1, 2, 3], [4, 255, -1, 100]])
    assert F.label_bins(labels, 4, 255).tolist() == [[0, 1, 2, 3], [4, 4, 4, 4]]
    assert F.label_bins(labels, 4, 2).tolist() == [[0, 1, 4, 3], [4, 4, 4, 4]]


def test_presence_matrix_golden() -> None:
    labels = torch.tensor([[[0, 0, 2, 255]] * 4, [[1, 1, 1, 1]] * 4])  # image 0: {0, 2} + ignore; image 1: {1}
    bins = F.label_bins(labels, 3)
    assert F.presence_matrix(bins, 3).tolist() == [[True, False, True, False], [False, True, False, False]]
    assert F.presence_matrix(bins, 3, count_other=True).tolist() == [
        [True, False, True, True],
        [False, True, False, False],
    ]


def test_select_half_batched_picks_ceil_half_of_each_row() -> None:
    present = torch.rand(64, 20, generator=gen(1)) < torch.linspace(0, 1, 64)[:, None]  # 0 .. 20 present classes
    for seed in range(5):
        chosen = F.select_half_batched(present, gen(seed))
        assert not (chosen & ~present).any()
        assert torch.equal(chosen.sum(1), (present.sum(1) + 1) // 2)


def test_select_half_batched_matches_select_classes_in_distribution() -> None:
    # the same question as test_select_classes_is_uniform_over_subsets, asked in one batch of 1800 rows
    present = torch.zeros(1800, 12, dtype=torch.bool)
    present[:, [2, 5, 9, 11]] = True
    chosen = F.select_half_batched(present, gen(0))
    counts = Counter(tuple(row.nonzero().flatten().tolist()) for row in chosen)
    assert set(counts) == set(itertools.combinations((2, 5, 9, 11), 2))
    assert all(220 < c < 380 for c in counts.values()), counts


@pytest.mark.parametrize("relations", [F.DEFAULT_RELATIONS, F.EXTENDED_RELATIONS, "random"])
def test_batched_closure_equals_reference(relations: object) -> None:
    g = gen(2)
    if relations == "random":
        adjacency = torch.rand(19, 19, generator=g) < 0.1
        relations = {c: tuple(adjacency[c].nonzero().flatten().tolist()) for c in range(19)}
    assert isinstance(relations, dict)
    present = torch.rand(200, 19, generator=g) < 0.6
    selected = F.select_half_batched(present, g)
    steps = sum(1 for r in relations.values() if r)
    closed = F.close_relations_batched(selected, present, F.relations_matrix(relations, 19), steps)
    for b in range(present.shape[0]):
        sel, pres = selected[b].nonzero().flatten(), present[b].nonzero().flatten()
        assert closed[b].nonzero().flatten().tolist() == F.expand_with_relations(sel, pres, relations).tolist()


def test_mask_from_selection_golden() -> None:
    labels = torch.tensor([[[0, 1, 2, 255]] * 4])
    bins = F.label_bins(labels, 3)  # [0, 1, 2, 3] per row
    selected = torch.tensor([[False, True, True, False]])  # classes 1 and 2, not the "other" column
    assert F.mask_from_selection(selected, bins).tolist() == [[[False, True, True, False]] * 4]
