"""The resumable sampler: a resumed stream equals the uninterrupted one; ranks get disjoint slices."""

from __future__ import annotations

import itertools

import torch
from torch.utils.data import Dataset

from camix.data.sampling import ResumableSampler, SeededDataset, infinite_loader


def take(sampler: ResumableSampler, n: int) -> list[tuple[int, int]]:
    return list(itertools.islice(iter(sampler), n))


def test_resume_continues_the_same_stream() -> None:
    full = take(ResumableSampler(10, seed=3), 25)
    resumed = take(ResumableSampler(10, seed=3, start=13), 12)
    assert resumed == full[13:]


def test_each_epoch_is_a_permutation_and_epochs_differ() -> None:
    stream = [i for i, _ in take(ResumableSampler(10, seed=0), 20)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream[:10] != stream[10:]


def test_ranks_take_disjoint_slices_of_each_epoch() -> None:
    rank0 = [i for i, _ in take(ResumableSampler(10, seed=1, rank=0, world_size=2), 5)]
    rank1 = [i for i, _ in take(ResumableSampler(10, seed=1, rank=1, world_size=2), 5)]
    assert sorted(rank0 + rank1) == list(range(10))


class RandomItem(Dataset[dict[str, torch.Tensor]]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"index": torch.tensor(index), "draw": torch.randint(0, 10**9, (1,))}


def test_seeded_items_do_not_depend_on_workers_or_global_rng() -> None:
    def first_batches(workers: int) -> list[torch.Tensor]:
        torch.manual_seed(123 + workers)  # the global RNG must not matter
        loader = infinite_loader(RandomItem(), batch_size=2, workers=workers, seed=5)
        return [next(loader)["draw"] for _ in range(3)]

    for a, b in zip(first_batches(0), first_batches(2), strict=True):
        assert torch.equal(a, b)
    before = torch.get_rng_state()
    SeededDataset(RandomItem())[(0, 42)]
    assert torch.equal(before, torch.get_rng_state())
