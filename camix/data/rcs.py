"""Rare Class Sampling of the source images (DAFormer, Hoyer et al., CVPR 2022, Sec. 3.3), resumable and rank-aware.

Per-image class pixel counts are taken once from the label files at their native resolution (as DAFormer's
dataset conversion does) and cached as JSON. Each draw picks a class ``c`` with the probabilities of
:func:`camix.functional.rcs_class_probabilities`, then uniformly an image holding at least ``min_pixels`` pixels
of ``c``; its crop is redrawn (up to :data:`CROP_TRIES` times) until it keeps ``min_pixels * min_crop_ratio``
pixels of ``c``. Classes that no image holds ``min_pixels`` of are never drawn (their probability is shared
out among the others). Like :class:`camix.data.sampling.ResumableSampler`, draw ``p`` depends only on
``(seed, rank, p)``, so a resumed run sees the same images and crops.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from camix.config import DatasetConfig, RareClassConfig
from camix.data.datasets import ItemError, find_samples, require_labels, shared_cache_dir
from camix.data.layouts import class_names_of
from camix.data.sampling import SeededDataset, batches, sample_seed
from camix.data.transforms import Sample, map_labels
from camix.errors import DataError
from camix.functional import rcs_class_probabilities
from camix.io import atomic_write_text
from camix.labels import NUM_CLASSES

CROP_TRIES = 10  # DAFormer's number of crops tried per drawn image


class _NativeCounts(Dataset[np.ndarray]):
    """Per-class pixel counts of each label map at its native resolution (ignored pixels not counted)."""

    def __init__(self, samples: list[Sample], num_classes: int = NUM_CLASSES) -> None:
        self.samples, self.num_classes = samples, num_classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> np.ndarray:
        sample = self.samples[index]
        try:
            label = map_labels(sample.label_format.read(sample.label), sample.label_format, sample.label)
        except DataError as exc:
            raise ItemError(str(exc)) from None
        return np.bincount(label.ravel(), minlength=256)[: self.num_classes].astype(np.int64)


def count_class_pixels(cfg: DatasetConfig, *, progress: bool = True, workers: int = 0) -> tuple[list[str], np.ndarray]:
    """The image names of ``cfg`` and their per-class pixel counts ``[N, C]`` (native resolution; C = 19, or a
    folder dataset's class count)."""
    samples = find_samples(cfg)
    require_labels(samples)
    loader = DataLoader(_NativeCounts(samples, len(class_names_of(cfg))), batch_size=None, num_workers=workers)
    rows = [np.asarray(row) for row in tqdm(loader, desc=f"class stats {cfg.name}", unit="img", disable=not progress)]
    return [s.name for s in samples], np.stack(rows)


def class_pixels_cache(cfg: DatasetConfig, run_dir: Path) -> Path:
    """Where the class statistics of ``cfg`` are cached: in the dataset root when writable, else the run dir."""
    classes = [cfg.classes] if cfg.classes else []  # a folder dataset's classes file decides the counts too
    key = json.dumps([cfg.name, cfg.root, cfg.list_file, cfg.limit, *classes], sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return (shared_cache_dir(cfg.root) or run_dir) / f"class_pixels_{cfg.name}_{digest}.json"


def load_or_count_class_pixels(cfg: DatasetConfig, cache: Path, *, progress: bool = True) -> np.ndarray:
    """The ``[N, 19]`` counts of ``cfg``'s images, read from ``cache`` when it lists the same images, else counted."""
    names = [s.name for s in find_samples(cfg)]
    if cache.is_file():
        try:
            record = json.loads(cache.read_text(encoding="utf-8"))
            if record.get("names") == names:
                return np.asarray(record["pixels"], dtype=np.int64).reshape(len(names), len(class_names_of(cfg)))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a stale or torn cache is recounted
    names, pixels = count_class_pixels(cfg, progress=progress)
    atomic_write_text(cache, json.dumps({"dataset": cfg.name, "names": names, "pixels": pixels.tolist()}) + "\n")
    return pixels


class RareClassSampler(Sampler[tuple[int, int, int]]):
    """An endless stream of ``(image index, crop seed, class)`` draws; draw ``p`` is a function of (seed, rank, p).

    Args:
        pixels: ``[N, C]`` per-image class pixel counts.
        rcs: temperature and ``min_pixels``.
        seed: the run seed; rank: this process's rank (its own stream); start: draws already consumed.
    """

    def __init__(self, pixels: np.ndarray, rcs: RareClassConfig, *, seed: int, rank: int = 0, start: int = 0) -> None:

        counts = torch.from_numpy(np.asarray(pixels, dtype=np.int64))
        probs = rcs_class_probabilities(counts.sum(0), rcs.temperature)
        eligible = counts >= rcs.min_pixels
        self.images = [torch.nonzero(eligible[:, c]).flatten() for c in range(counts.shape[1])]
        drawable = torch.tensor([len(images) > 0 for images in self.images])
        if not bool(drawable.any()):
            raise DataError(
                f"rare class sampling: no source image holds {rcs.min_pixels} pixels of any class; "
                "lower data.rcs.min_pixels"
            )
        probs = probs * drawable
        self.probs = probs / probs.sum()
        self.seed, self.rank, self.start = seed, rank, start

    def draw(self, position: int) -> tuple[int, int, int]:
        """Draw number ``position`` of this rank: (image index, seed of its crop, the class it was drawn for)."""
        seed = sample_seed(self.seed, self.rank, 0, position)
        generator = torch.Generator().manual_seed(seed)
        cls = int(torch.multinomial(self.probs, 1, generator=generator))
        images = self.images[cls]
        index = int(images[int(torch.randint(len(images), (), generator=generator))])
        return index, (seed + 1) % (2**63 - 1), cls

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        position = self.start
        while True:
            yield self.draw(position)
            position += 1


def rare_class_loader(
    dataset: Dataset[dict[str, Any]],
    pixels: np.ndarray,
    rcs: RareClassConfig,
    *,
    batch_size: int,
    workers: int,
    seed: int,
    rank: int = 0,
    start_batch: int = 0,
    pin_memory: bool = False,
) -> Iterator[dict[str, Any]]:
    """An endless iterator of source batches drawn by Rare Class Sampling (the counterpart of ``infinite_loader``)."""
    sampler = RareClassSampler(pixels, rcs, seed=seed, rank=rank, start=start_batch * batch_size)
    keep = round(rcs.min_pixels * rcs.min_crop_ratio)  # 0: take the first crop
    return batches(SeededDataset(dataset, keep_pixels=keep), sampler, batch_size, workers, pin_memory)
