"""The training run's endless batch streams: the source (uniform or Rare Class Sampling) and the target.

Each stream is a function of (seed, rank, position) (:mod:`camix.data.sampling`, :mod:`camix.data.rcs`), so a
resumed run starts it at the batch it stopped at and sees the very same images and crops.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from camix.config import DataConfig
from camix.data.datasets import build_dataset
from camix.data.rcs import class_pixels_cache, load_or_count_class_pixels, rare_class_loader
from camix.data.sampling import infinite_loader
from camix.errors import ConfigError
from camix.runtime import Dist

TARGET_SEED_OFFSET = 7_654_321  # the target stream's seed is the run's seed plus this: two independent orders


@dataclass
class TrainStreams:
    """The endless source and target batch iterators, and the target images' resized size (width, height)."""

    source: Iterator[dict[str, Any]]
    target: Iterator[dict[str, Any]] | None
    target_size: tuple[int, int] | None


def image_size(dataset: Any) -> tuple[int, int]:
    """(width, height) of a dataset's resized images, read from its first item without touching the RNG."""
    with torch.random.fork_rng(devices=[]):
        size = dataset[0]["size"]
    return int(size[0]), int(size[1])


def train_streams(
    data: DataConfig,
    *,
    seed: int,
    with_target: bool,
    info: Dist,
    start_batch: int,
    run_dir: Path,
    pin_memory: bool = False,
    progress: bool = True,
) -> TrainStreams:
    """The source and (``with_target``) target streams of ``data``, starting at batch ``start_batch`` of this rank.

    Rare Class Sampling (``data.rcs``) counts the source's class pixels once and caches them in the source root
    (else in ``run_dir``).
    """
    common: dict[str, Any] = {
        "batch_size": data.batch_size,
        "workers": data.workers,
        "rank": info.rank,
        "start_batch": start_batch,
        "pin_memory": pin_memory,
    }
    source_ds = build_dataset(data.source, crop=data.crop, train=True)
    if data.rcs is not None:  # DAFormer's Rare Class Sampling of the source images
        cache = class_pixels_cache(data.source, run_dir)
        pixels = load_or_count_class_pixels(data.source, cache, progress=progress and info.is_main)
        source = rare_class_loader(source_ds, pixels, data.rcs, seed=seed, **common)
    else:
        source = infinite_loader(source_ds, seed=seed, world_size=info.world_size, **common)
    if not with_target:
        return TrainStreams(source, None, None)
    if data.target is None:
        raise ConfigError("this method needs an unlabelled target dataset: set data.target")
    target_ds = build_dataset(data.target, crop=data.crop, train=True, labelled=False)  # the target is unlabelled
    target = infinite_loader(target_ds, seed=seed + TARGET_SEED_OFFSET, world_size=info.world_size, **common)
    return TrainStreams(source, target, image_size(target_ds))
