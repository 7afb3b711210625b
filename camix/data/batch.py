"""The training batch: what the data loaders yield and a method's step reads.

A batch is a :class:`Batch` (a typed dict, as the loaders collate it): the crops' images, their labels and the
crop boxes. :func:`to_device` moves all three to the training device in one place; the step reads nothing from
the host, the boxes included (the spatial prior is cropped on the device, ``camix.mixes.crop_prior``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import torch
from torch import Tensor


class Batch(TypedDict):
    """A batch of ``B`` crops (``camix.data.datasets``: one item per crop, collated)."""

    image: Tensor  # [B,3,H,W] float32, BGR minus the Caffe mean (0-255 scale)
    label: Tensor  # [B,H,W] int64 trainIds, 255 = ignore (a target batch's labels are never read in training)
    box: Tensor  # [B,4] int64 (top, left, height, width) of each crop in the resized image


def to_device(batch: Mapping[str, Any], device: torch.device, *, channels_last: bool = False) -> Batch:
    """The batch's image, label and box on ``device`` (non-blocking copies); the image in channels_last if asked.

    Other fields of a collated item (``name``, ``size``) stay behind: the step does not read them.
    """
    image = batch["image"].to(device, non_blocking=True)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    label = batch["label"].to(device, non_blocking=True)
    return Batch(image=image, label=label, box=batch["box"].to(device, non_blocking=True))
