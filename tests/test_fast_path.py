"""The fast training iteration: no host synchronisation, one batched teacher forward, bf16 numerics.

No GPU here, so the ``meta`` device stands in for one. Meta tensors hold no data: ``nonzero``, ``unique`` and
boolean-mask indexing raise, and mixing a meta tensor with a (non-scalar) CPU tensor raises as mixing CUDA and
CPU does. :class:`SyncCounter` counts the other two kinds of host synchronisation a GPU would suffer: reading a
device value (``.item()``, ``.tolist()``, ``bool(t)``, ``.cpu()``...) and a blocking host-to-device copy (on
CUDA ``tensor.to(device)`` from the host waits for the stream). Host data stays on the CPU as on a GPU machine:
the crop boxes from the DataLoader.
"""

from __future__ import annotations

import collections
import traceback
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from benchmarks import baseline_step
from benchmarks.train_step import (
    METHODS,
    PathOptions,
    Pool,
    baseline_runner,
    build_fast,
    check_numerics,
    fast_iteration,
    make_pool,
    parse_args,
)
from camix.augment import StrongAugment
from camix.config import AugmentConfig
from camix.methods import crop_prior

ATEN = torch.ops.aten
READS = (ATEN._local_scalar_dense.default, ATEN.is_nonzero.default)


class SyncCounter(TorchDispatchMode):
    """Counts, by call site, the operations that would make the host wait for a GPU (the meta device here).

    A read of a meta value is answered with a dummy (1) and a device-to-host copy with zeros, so that counting
    goes on past it; a host-to-device copy counts when it is blocking and moves more than a scalar.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sites: collections.Counter[str] = collections.Counter()

    def note(self, kind: str) -> None:
        frames = [f for f in traceback.extract_stack()[:-2] if "/torch/" not in f.filename]
        self.sites[f"{kind} at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}"] += 1

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        if func in READS and tensors[0].is_meta:
            self.note("read")
            return True if func is ATEN.is_nonzero.default else 1
        if func is ATEN._to_copy.default and tensors[0].is_meta and kwargs.get("device") == torch.device("cpu"):
            self.note("device-to-host copy")
            return torch.zeros(tensors[0].shape, dtype=kwargs.get("dtype") or tensors[0].dtype)
        if blocking_upload(func, args, kwargs, tensors):
            self.note("blocking host-to-device copy")
        return func(*args, **kwargs)


def blocking_upload(func: Any, args: Any, kwargs: dict[str, Any], tensors: list[torch.Tensor]) -> bool:
    """A blocking copy of a non-scalar host tensor to the (meta) device."""
    if kwargs.get("non_blocking") or (func is ATEN.copy_.default and len(args) > 2 and args[2]):
        return False
    if func is ATEN._to_copy.default:
        src, dst = tensors[0], kwargs.get("device")
        return not src.is_meta and src.dim() > 0 and dst is not None and torch.device(dst).type == "meta"
    if func is ATEN.copy_.default:
        return tensors[0].is_meta and not tensors[1].is_meta and tensors[1].dim() > 0
    return False


def weight(model: torch.nn.Module, name: str) -> torch.Tensor:
    return dict(model.named_parameters())[name]


META = torch.device("meta")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def meta_pool() -> Pool:
    return make_pool(2, (32, 32), (64, 64), META, count=1)


@pytest.mark.parametrize("method", METHODS)
def test_fast_iteration_has_no_host_sync(meta_pool: Pool, method: str) -> None:
    """Step function, masks, class selection, augmentation, losses, backward, SGD and EMA never wait for the device."""
    setup = build_fast(method, PathOptions(channels_last=True), "deeplabv2_tiny", meta_pool, META, noise_passes=2)
    fast_iteration(setup, meta_pool, 0)
    with SyncCounter() as counter:
        losses = fast_iteration(setup, meta_pool, 1)
    assert not counter.sites, dict(counter.sites)
    assert set(losses) == ({"seg"} if method == "source_only" else {"seg", "con"})
    assert all(value.device == META for value in losses.values())
    assert all(p.device == META for p in setup.model.parameters())


def test_sync_counter_sees_reads_and_blocking_copies() -> None:
    x = torch.ones(3, device=META)
    with SyncCounter() as counter:
        x.sum().item()
        bool(x.any())
        x.cpu()
        torch.ones(3).to(META)
        torch.ones(3).to(META, non_blocking=True)
        x.mul(2.0)
    kinds = sorted(site.split(" at ")[0] for site in counter.sites.elements())
    assert kinds == ["blocking host-to-device copy", "device-to-host copy", "read", "read"]


def test_strong_augment_is_sync_free() -> None:
    generator = torch.Generator().manual_seed(0)  # meta has no RNG: the CPU stands in for the GPU's generator
    augment = StrongAugment(AugmentConfig(jitter_p=1.0, blur_p=1.0), 32, 32, generator)
    with SyncCounter() as counter:
        augment(torch.zeros(2, 3, 32, 32, device=META))
    assert not counter.sites, dict(counter.sites)


def test_meta_stand_in_catches_a_host_sync(meta_pool: Pool) -> None:
    """Negative control: crop boxes must stay host data; a box on the device would be read back with .tolist()."""
    with pytest.raises((RuntimeError, NotImplementedError)):
        crop_prior(meta_pool.prior, meta_pool.targets[0]["box"].to(META))
    setup = build_fast("camix", PathOptions(), "deeplabv2_tiny", meta_pool, META, noise_passes=2)
    setup.ctx.iteration = 0
    source, target = meta_pool.batch(0, channels_last=False)
    target["box"] = target["box"].to(META)
    with pytest.raises((RuntimeError, NotImplementedError)):
        setup.step(setup.ctx, source, target)


def test_released_code_recreation_synchronises(meta_pool: Pool) -> None:
    """The baseline really is the slow, syncing control flow (boolean indexing, .item(), numpy masks)."""
    args = parse_args(["--device", "cpu", "--noise-passes", "2"])
    run = baseline_runner("camix", args, meta_pool, META)
    with pytest.raises((RuntimeError, NotImplementedError, TypeError)):
        run(0)


def test_teacher_runs_clean_and_noisy_passes_in_one_channels_last_forward() -> None:
    pool = make_pool(2, (32, 32), (64, 64), CPU, count=1)
    setup = build_fast("camix", PathOptions(channels_last=True), "deeplabv2_tiny", pool, CPU, noise_passes=3)
    calls: list[tuple[int, bool]] = []
    assert setup.teacher is not None
    setup.teacher.register_forward_pre_hook(
        lambda _m, inputs: calls.append(
            (inputs[0].shape[0], inputs[0].is_contiguous(memory_format=torch.channels_last))
        )
    )
    fast_iteration(setup, pool, 0)
    assert calls == [(2 * (1 + 3), True)]
    assert weight(setup.model, "conv1.weight").is_contiguous(memory_format=torch.channels_last)


def test_optimisation_step_updates_the_teacher_by_ema() -> None:
    """At iteration 0 the EMA decay is 0: after one step the teacher equals the updated student."""
    pool = make_pool(2, (32, 32), (64, 64), CPU, count=1)
    setup = build_fast("dacs", PathOptions(), "deeplabv2_tiny", pool, CPU)
    name = "layer5.conv2d_list.0.weight"
    before = weight(setup.model, name).detach().clone()
    fast_iteration(setup, pool, 0)
    assert setup.teacher is not None
    after = weight(setup.model, name)
    assert not torch.equal(before, after)
    assert torch.equal(weight(setup.teacher, name), after)


def test_bf16_channels_last_losses_stay_within_2_percent_of_fp32() -> None:
    """Issue 8: ten iterations from the same state, same data and seeds, every loss term within 2% of fp32."""
    args = parse_args(
        ["--device", "cpu", "--crop", "128x128", "--methods", "dacs", "camix", "--numerics-pretrain", "40"]
    )
    pool = make_pool(args.batch, args.crop, args.target_size, CPU)
    numerics = check_numerics(args, pool, CPU)
    rows = numerics.rows
    assert numerics.warm.confident > 0.1
    assert {(r.method, r.term) for r in rows} >= {("dacs", "con"), ("camix", "con"), ("camix", "seg")}
    assert all(len(r.ref) == 10 for r in rows)
    consistency = [r for r in rows if r.term == "con"]
    assert all(min(r.ref) > 0 for r in consistency), "the warm start must make the teacher confident"
    worst = {f"{r.method}/{r.term}": r.max_rel_diff for r in rows}
    assert max(worst.values()) <= 0.02, worst


def test_baseline_helpers_pick_half_of_the_classes_with_relations() -> None:
    labels = torch.tensor([[[5, 5, 6, 6], [0, 0, 1, 1], [2, 2, 3, 3], [255, 255, 4, 4]]])
    masks = baseline_step.host_class_masks(labels, {6: (5,), 5: (6,)}, CPU)
    chosen = set(labels[0][masks[0][0] > 0].tolist())
    assert len(chosen) >= 4  # ceil(8 / 2) of the 8 labels (255 counts, as in the released code), then relations
    assert ({5, 6} <= chosen) or not ({5, 6} & chosen)


def test_strong_augment_changes_images_reproducibly_and_only_with_its_probability() -> None:
    images = torch.rand(4, 3, 24, 24) * 200 - 100
    first = StrongAugment(AugmentConfig(), 24, 24, torch.Generator().manual_seed(3))(images)
    again = StrongAugment(AugmentConfig(), 24, 24, torch.Generator().manual_seed(3))(images)
    assert torch.equal(first, again)  # all randomness from the generator
    assert not torch.allclose(first, images)
    off = AugmentConfig(jitter_p=0.0, blur_p=0.0)
    assert torch.equal(StrongAugment(off, 24, 24, torch.Generator())(images), images)
    only_blur = StrongAugment(AugmentConfig(jitter_p=0.0, blur_p=1.0), 24, 24, torch.Generator().manual_seed(0))
    blurred = only_blur(images)
    assert blurred.var() < images.var()  # smoothing lowers the pixel variance
    assert blurred.mean().item() == pytest.approx(images.mean().item(), abs=2.0)


def test_sync_free_blur_equals_kornias_gaussian_blur() -> None:
    from kornia.filters import gaussian_blur2d

    from camix.augment import gaussian_blur

    images = torch.rand(3, 3, 20, 30)
    generator = torch.Generator().manual_seed(1)
    ours = gaussian_blur(images, (5, 7), (0.15, 1.15), 1.0, generator)
    generator.manual_seed(1)
    torch.rand(3, generator=generator)  # the apply draws
    sigmas = (0.15 + torch.rand(3, generator=generator)).view(3, 1).expand(3, 2)  # U(0.15, 1.15)
    assert torch.allclose(ours, gaussian_blur2d(images, (5, 7), sigmas), atol=1e-5)
