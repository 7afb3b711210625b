"""Contextual mask generation (paper Sec. 3.1, Eq. 1): spatial prior, modulated pseudo-label, contextual mask."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from camix.functional.classes import (
    Relations,
    close_relations_batched,
    label_bins,
    mask_from_selection,
    presence_matrix,
    relations_matrix,
    select_half_batched,
)
from camix.labels import IGNORE_INDEX


def spatial_prior(
    label_maps: Iterable[Tensor],
    num_classes: int,
    size: tuple[int, int],
    *,
    ignore_index: int = IGNORE_INDEX,
    smoothing: float = 0.0,
) -> Tensor:
    """Spatial prior Q of Sec. 3.1: per-pixel class frequencies over the source labels.

    ``Q[c, i, j] = (n_c(i, j) + s) / (Σ_c' n_c'(i, j) + C·s)`` where ``n_c(i, j)`` counts the label maps with
    class ``c`` at pixel ``(i, j)`` (ignored pixels are not counted) and ``s`` is ``smoothing``. A pixel that
    no label map covers gets the uniform ``1 / C``. Label maps of another size are resized to ``size`` by
    nearest-neighbour sampling first. Not a per-iteration function: run it once over the source set.

    Args:
        label_maps: ``[H', W']`` or ``[B, H', W']`` integer label maps (any mix of sizes).
        num_classes: ``C``.
        size: ``(H, W)`` of the prior.
        ignore_index: label that is not counted; other labels outside ``[0, C)`` are not counted either.
        smoothing: additive (Laplace) smoothing ``s >= 0``.

    Returns:
        ``[C, H, W]`` float32, summing to 1 over ``C`` at every pixel, on the label maps' device.

    Raises:
        ValueError: ``label_maps`` is empty.
    """
    counts: Tensor | None = None
    for labels in label_maps:
        batch = _resize_labels(labels if labels.dim() == 3 else labels.unsqueeze(0), size)
        if counts is None:
            counts = torch.zeros(num_classes + 1, size[0] * size[1], dtype=torch.float64, device=batch.device)
        bins = label_bins(batch, num_classes, ignore_index).flatten(1)
        counts.scatter_add_(0, bins, torch.ones_like(bins, dtype=torch.float64))
    if counts is None:
        raise ValueError("spatial_prior needs at least one label map")
    counts = counts[:num_classes] + smoothing
    total = counts.sum(dim=0, keepdim=True)
    prior = torch.where(total > 0, counts / total.clamp(min=1e-300), 1.0 / num_classes)
    return prior.view(num_classes, *size).to(torch.float32)


def _resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    labels = labels.long()
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    resized = F.interpolate(labels.unsqueeze(1).to(torch.float32), size=size, mode="nearest")
    return resized.squeeze(1).long()


def modulated_pseudo_label(teacher_prob: Tensor, prior: Tensor | None) -> Tensor:
    """Spatially modulated pseudo-label of Sec. 3.1: ``Ŷ_T = argmax_c (Q ⊙ f_θ'(X_T))``.

    Args:
        teacher_prob: ``[B, C, H, W]`` teacher softmax probabilities.
        prior: ``[C, H, W]`` or ``[B, C, H, W]`` spatial prior Q (resized bilinearly if its ``H, W`` differ),
            or None for the plain argmax (no spatial prior, the "SP" ablation of Table 4).

    Returns:
        ``[B, H, W]`` int64.
    """
    if prior is None:
        return teacher_prob.max(dim=1).indices  # max(dim).indices is ~2x faster than argmax on CPU
    if prior.dim() == 3:
        prior = prior.unsqueeze(0)
    prior = prior.to(device=teacher_prob.device, dtype=teacher_prob.dtype)
    if prior.shape[-2:] != teacher_prob.shape[-2:]:
        prior = F.interpolate(prior, size=teacher_prob.shape[-2:], mode="bilinear", align_corners=False)
    return (teacher_prob * prior).max(dim=1).indices


def contextual_mask(
    teacher_prob: Tensor, prior: Tensor | None, relations: Relations | Tensor, generator: torch.Generator
) -> Tensor:
    """Contextual mask M of Sec. 3.1 / Eq. 1, per image, with fixed-shape tensor ops only (no host sync).

    The four steps: (1) modulated pseudo-label ``Ŷ_T`` (:func:`modulated_pseudo_label`); (2) select
    ``ceil(n / 2)`` of its ``n`` present classes uniformly at random; (3) close the selection under the context
    relations, adding only present classes; (4) ``M = 1[Ŷ_T ∈ c]``. Equivalent to :func:`select_classes`,
    :func:`expand_with_relations` and :func:`class_mask` applied image by image.

    Args:
        teacher_prob: ``[B, C, H, W]`` teacher softmax probabilities.
        prior: ``[C, H, W]`` / ``[B, C, H, W]`` spatial prior, or None (no "SP").
        relations: class id -> related ids (empty mapping: no "CR"), or a ``[C, C]`` bool adjacency matrix.
        generator: the only source of randomness; on ``teacher_prob``'s device.

    Returns:
        ``[B, H, W]`` bool, True on the pixels to copy from the target image.
    """
    labels = modulated_pseudo_label(teacher_prob, prior)
    num_classes = teacher_prob.shape[1]
    present = presence_matrix(labels, num_classes)  # argmax labels are valid bins: no label_bins pass needed
    selected = select_half_batched(present, generator)
    if isinstance(relations, Tensor):
        adjacency, steps = relations.to(teacher_prob.device), None
    else:
        adjacency = relations_matrix(relations, num_classes, teacher_prob.device)
        steps = sum(1 for related in relations.values() if related)
    if steps != 0:
        adjacency = F.pad(adjacency, (0, 1, 0, 1))  # the "other" column pulls and is pulled by nothing
        selected = close_relations_batched(selected, present, adjacency, steps)
    return mask_from_selection(selected, labels)
