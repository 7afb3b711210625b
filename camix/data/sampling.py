"""Resumable, rank-aware sampling: the data a run sees depends only on (seed, rank, position).

The sampler yields ``(index, sample_seed)`` pairs forever; :class:`SeededDataset` seeds the random crop of
each sample with its ``sample_seed``. So the exact stream of crops is independent of the number of
DataLoader workers, and a resumed run that starts the sampler at ``start = iteration * batch_size``
sees exactly the samples an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def sample_seed(seed: int, rank: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one sample draw, from the run seed, the rank, the epoch and the position in it."""
    mixed = (seed * 1_000_003 + rank * 7_777_777 + epoch * 65_537) * 2_654_435_761 + position
    return mixed % (2**63 - 1)


class ResumableSampler(Sampler[tuple[int, int]]):
    """An infinite shuffled sampler; each rank takes its own slice of every epoch's permutation.

    Args:
        size: number of samples in the dataset.
        seed: run seed (the permutation of epoch e is drawn from ``seed`` and ``e``).
        rank: this process's rank; world_size: number of processes.
        start: how many samples this rank has already consumed (``iteration * batch_size``).
        shuffle: False keeps the dataset order (each epoch the same).
    """

    def __init__(
        self, size: int, *, seed: int, rank: int = 0, world_size: int = 1, start: int = 0, shuffle: bool = True
    ) -> None:
        if size <= 0:
            raise ValueError("ResumableSampler needs a non-empty dataset")
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.start, self.shuffle = start, shuffle
        self.per_rank = max(1, size // world_size)

    def _epoch_indices(self, epoch: int) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        mine = order[self.rank :: self.world_size]
        if len(mine) < self.per_rank:  # fewer samples than ranks: wrap around
            mine = order.repeat(self.per_rank)[self.rank :: self.world_size]
        return mine[: self.per_rank]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            indices = self._epoch_indices(epoch).tolist()
            for position in range(offset, self.per_rank):
                yield indices[position], sample_seed(self.seed, self.rank, epoch, position)
            epoch, offset = epoch + 1, 0


class SeededDataset(Dataset[dict[str, Any]]):
    """Wraps a dataset so that item ``(index, seed)`` draws its random crop from ``seed`` alone.

    Item ``(index, seed, cls)`` (Rare Class Sampling, :mod:`camix.data.rcs`) asks the base dataset for a crop that
    keeps at least ``keep_pixels`` pixels of class ``cls`` (its ``load_keeping`` method).
    """

    def __init__(self, base: Dataset[dict[str, Any]], keep_pixels: int = 0) -> None:
        self.base, self.keep_pixels = base, keep_pixels

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, ...]) -> dict[str, Any]:
        index, seed, *keep = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if keep and self.keep_pixels > 0:
                return self.base.load_keeping(index, keep[0], self.keep_pixels)  # type: ignore[attr-defined]
            return self.base[index]


def infinite_loader(
    dataset: Dataset[dict[str, Any]],
    *,
    batch_size: int,
    workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    start_batch: int = 0,
    pin_memory: bool = False,
) -> Iterator[dict[str, Any]]:
    """An endless iterator of training batches that starts at batch ``start_batch`` of this rank's stream."""
    size = len(dataset)  # type: ignore[arg-type]
    sampler = ResumableSampler(size, seed=seed, rank=rank, world_size=world_size, start=start_batch * batch_size)
    return batches(SeededDataset(dataset), sampler, batch_size, workers, pin_memory)


def batches(
    dataset: Dataset[dict[str, Any]],
    sampler: Sampler[Any],
    batch_size: int,
    workers: int,
    pin_memory: bool = False,
) -> Iterator[dict[str, Any]]:
    """The iterator of full batches of ``dataset`` in the (endless) order of ``sampler``."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )
    return iter(loader)
