"""Class selection and context relations (paper Sec. 3.1, Eq. 1).

Two paths compute the same thing:

* the *reference* path (:func:`select_classes`, :func:`expand_with_relations`, :func:`class_mask`) works on
  variable-length 1-D tensors of class ids; it is the readable definition and may synchronise with the host;
* the *batched* path (:func:`presence_matrix`, :func:`select_half_batched`, :func:`close_relations_batched`,
  :func:`mask_from_selection`) works on fixed-shape ``[B, K + 1]`` boolean class sets, never synchronises, and
  is what :func:`~camix.functional.contextual_mask` and :func:`~camix.functional.classmix_mask` use.

In the batched path, column ``K`` of a class set is the *other* bin: the ignore label and any label outside
``[0, K)`` fall into it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from camix.labels import IGNORE_INDEX

Relations = Mapping[int, Sequence[int]]

# The authors' released rules, read as a closure: lights and signs pull poles, poles pull lights and signs,
# riders pull motorcycles and bicycles (trainIds: 5 pole, 6 light, 7 sign, 12 rider, 17 motorcycle, 18 bicycle).
DEFAULT_RELATIONS: dict[int, tuple[int, ...]] = {6: (5,), 7: (5,), 5: (6, 7), 12: (17, 18)}

# The groups the authors tried and disabled, on top of the defaults: road <-> sidewalk, wall/fence -> building,
# vegetation <-> terrain (trainIds: 0 road, 1 sidewalk, 2 building, 3 wall, 4 fence, 8 vegetation, 9 terrain).
EXTENDED_RELATIONS: dict[int, tuple[int, ...]] = {
    **DEFAULT_RELATIONS,
    0: (1,),
    1: (0,),
    3: (2,),
    4: (2,),
    8: (9,),
    9: (8,),
}

RELATION_PRESETS: dict[str, dict[int, tuple[int, ...]]] = {
    "default": DEFAULT_RELATIONS,
    "none": {},
    "extended": EXTENDED_RELATIONS,
}
"""The named relation sets of the configuration (``relations: default | none | extended``)."""


# ----------------------------------------------------------------------------------------------- reference path
def select_classes(present: Tensor, generator: torch.Generator) -> Tensor:
    """Pick half of the present classes uniformly at random (Sec. 3.1, "randomly select half of the classes").

    Args:
        present: ``[n]`` int64, distinct class ids.
        generator: the only source of randomness; on ``present``'s device.

    Returns:
        ``[ceil(n / 2)]`` int64, distinct ids drawn uniformly without replacement from ``present``, sorted.
    """
    k = math.ceil(present.numel() / 2)
    order = torch.randperm(present.numel(), generator=generator, device=present.device)
    return present[order[:k]].sort().values


def expand_with_relations(selected: Tensor, present: Tensor, relations: Relations) -> Tensor:
    """Close a class set under the context relations, staying inside the present classes (Sec. 3.1, meta-classes).

    Keeps adding ``relations[c] ∩ present`` for every class ``c`` in the set until nothing changes.

    Args:
        selected: ``[k]`` int64 class ids (normally a subset of ``present``).
        present: ``[n]`` int64 class ids found in the pseudo-label.
        relations: class id -> related class ids (e.g. :data:`DEFAULT_RELATIONS`).

    Returns:
        ``[m]`` int64, sorted distinct ids, ``m >= k``, on ``selected``'s device.
    """
    available = set(present.tolist())
    closed = set(selected.tolist())
    frontier = list(closed)
    while frontier:
        c = frontier.pop()
        for r in relations.get(c, ()):
            if r in available and r not in closed:
                closed.add(r)
                frontier.append(r)
    return torch.tensor(sorted(closed), dtype=torch.int64, device=selected.device)


def class_mask(label_map: Tensor, classes: Tensor) -> Tensor:
    """Binary contextual mask of Eq. 1: ``M = 1[Y(i, j) ∈ c]``.

    Args:
        label_map: ``[..., H, W]`` int64 labels.
        classes: ``[k]`` int64 class ids.

    Returns:
        ``[..., H, W]`` bool, True where the label is one of ``classes``.
    """
    return torch.isin(label_map, classes.to(label_map.device, label_map.dtype))


def relations_matrix(relations: Relations, num_classes: int, device: torch.device | str | None = None) -> Tensor:
    """Adjacency matrix of the relations: ``R[c, r]`` is True when ``r ∈ relations[c]``.

    Built from comparisons with Python scalars, so making it on a GPU needs no host-to-device copy.

    Args:
        relations: class id -> related class ids, all in ``[0, num_classes)``.
        num_classes: ``C``.
        device: where to build it.

    Returns:
        ``[C, C]`` bool.

    Raises:
        ValueError: a class id is outside ``[0, num_classes)``.
    """
    ids = torch.arange(num_classes, device=device)
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.bool, device=device)
    for c, related in relations.items():
        for r in related:
            if not (0 <= c < num_classes and 0 <= r < num_classes):
                raise ValueError(f"relation {c} -> {r} names a class outside [0, {num_classes})")
            matrix |= (ids[:, None] == c) & (ids[None, :] == r)  # scalar kernel arguments: no host-to-device copy
    return matrix


# ------------------------------------------------------------------------------------------------- batched path
def label_bins(label_map: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Map labels to class-set columns in ``[0, K]``: a class in ``[0, K)`` to itself, anything else to ``K``.

    ``K`` is the *other* column: it receives ``ignore_index`` and every label outside ``[0, K)``.

    Args:
        label_map: ``[B, H, W]`` integer labels.
        num_classes: ``K``.
        ignore_index: the ignore label.

    Returns:
        ``[B, H, W]`` int64 in ``[0, K]``.
    """
    bins = label_map.long().clamp(-1, num_classes).remainder_(num_classes + 1)  # < 0 and >= K -> K
    if 0 <= ignore_index < num_classes:
        bins = bins.masked_fill_(label_map == ignore_index, num_classes)
    return bins


def presence_matrix(bins: Tensor, num_classes: int, *, count_other: bool = False) -> Tensor:
    """Which classes occur in each image, as a fixed-shape boolean matrix (no host synchronisation).

    Args:
        bins: ``[B, H, W]`` int64 in ``[0, K]`` (:func:`label_bins`; class ids ``< K`` can be passed directly).
        num_classes: ``K``.
        count_other: keep the *other* column ``K`` as a candidate class (the released ClassMix counts 255 as a
            class).

    Returns:
        ``[B, K + 1]`` bool; column ``K`` is False unless ``count_other``.
    """
    present = torch.zeros(bins.shape[0], num_classes + 1, dtype=torch.bool, device=bins.device)
    present.scatter_(1, bins.flatten(1), True)
    if not count_other:
        present[:, num_classes] = False
    return present


def select_half_batched(present: Tensor, generator: torch.Generator) -> Tensor:
    """Per row, select ``ceil(n / 2)`` of the ``n`` True columns uniformly at random (batched select_classes).

    Every present class gets a uniform random key, absent ones +inf; the classes whose key ranks below
    ``ceil(n / 2)`` are kept. The ``k`` smallest of i.i.d. uniform keys are a uniformly random ``k``-subset.

    Args:
        present: ``[B, K]`` bool.
        generator: on ``present``'s device.

    Returns:
        ``[B, K]`` bool, a subset of ``present`` with ``ceil(n_b / 2)`` True entries in row ``b``.
    """
    keys = torch.rand(present.shape, generator=generator, device=present.device)
    keys = keys.masked_fill(~present, math.inf)
    rank = keys.argsort(dim=1).argsort(dim=1)
    half = (present.sum(dim=1, keepdim=True) + 1) // 2
    return rank < half


def close_relations_batched(selected: Tensor, present: Tensor, relations: Tensor, steps: int | None = None) -> Tensor:
    """Batched :func:`expand_with_relations` on fixed-shape class sets.

    Repeats ``selected |= (selected @ R) & present`` a fixed number of times. ``steps`` must be at least the
    number of classes with outgoing relations (a shortest chain of pulls visits each such class once);
    the default, ``C``, is always enough.

    Args:
        selected: ``[B, C]`` bool.
        present: ``[B, C]`` bool.
        relations: ``[C, C]`` bool adjacency (:func:`relations_matrix`).
        steps: number of propagation steps.

    Returns:
        ``[B, C]`` bool, the closure of ``selected`` inside ``present``.
    """
    adjacency = relations.to(torch.float32)
    closed = selected
    for _ in range(relations.shape[0] if steps is None else steps):
        pulled = (closed.to(torch.float32) @ adjacency) > 0
        closed = closed | (pulled & present)
    return closed


def mask_from_selection(selected: Tensor, bins: Tensor) -> Tensor:
    """Eq. 1 as a gather: ``M[b, i, j] = selected[b, Y[b, i, j]]``.

    Args:
        selected: ``[B, K + 1]`` bool class sets, column ``K`` being the *other* column (see :func:`label_bins`).
        bins: ``[B, H, W]`` int64 in ``[0, K]`` (:func:`label_bins`, or class ids ``< K`` directly).

    Returns:
        ``[B, H, W]`` bool.
    """
    return selected.gather(1, bins.flatten(1)).view_as(bins)
