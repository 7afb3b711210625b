"""The fast training iteration (issue 8): no host synchronisation, one batched teacher forward, bf16 numerics.

No GPU here, so the ``meta`` device stands in for one: meta tensors hold no data, so ``.item()``, ``.tolist()``,
``.cpu()``, ``.numpy()``, ``nonzero``, ``unique``, boolean-mask indexing and Python branches on tensor values
all raise, and mixing a meta tensor with a (non-scalar) CPU tensor raises as mixing CUDA and CPU does. Host
data stays on the CPU as on a GPU machine: the crop boxes from the DataLoader and kornia's augmentation
parameters. An iteration that completes on meta therefore never waits for the device.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import baseline_step
from benchmarks.train_step import (
    METHODS,
    PathOptions,
    baseline_runner,
    build_fast,
    check_numerics,
    fast_iteration,
    make_pool,
    parse_args,
)
from camix.methods import crop_prior

META = torch.device("meta")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def meta_pool():  # type: ignore[no-untyped-def]
    return make_pool(2, (32, 32), (64, 64), META, count=1)


@pytest.mark.parametrize("method", METHODS)
def test_fast_iteration_has_no_host_sync(meta_pool, method: str) -> None:  # type: ignore[no-untyped-def]
    """Step function, masks, class selection, augmentation, loss, backward, SGD and EMA: all on the device."""
    setup = build_fast(method, PathOptions(channels_last=True), "deeplabv2_tiny", meta_pool, META, noise_passes=2)
    losses = fast_iteration(setup, meta_pool, 0)
    assert set(losses) == ({"seg"} if method == "source_only" else {"seg", "con"})
    assert all(value.device == META for value in losses.values())
    assert all(p.device == META for p in setup.model.parameters())


def test_meta_stand_in_catches_a_host_sync(meta_pool) -> None:  # type: ignore[no-untyped-def]
    """Negative control: crop boxes must stay host data; a box on the device would be read back with .tolist()."""
    with pytest.raises((RuntimeError, NotImplementedError)):
        crop_prior(meta_pool.prior, meta_pool.targets[0]["box"].to(META))
    setup = build_fast("camix", PathOptions(), "deeplabv2_tiny", meta_pool, META, noise_passes=2)
    setup.ctx.iteration = 0
    source, target = meta_pool.batch(0, channels_last=False)
    target["box"] = target["box"].to(META)
    with pytest.raises((RuntimeError, NotImplementedError)):
        setup.step(setup.ctx, source, target)


def test_released_code_recreation_synchronises(meta_pool) -> None:  # type: ignore[no-untyped-def]
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
    assert setup.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_optimisation_step_updates_the_teacher_by_ema() -> None:
    """At iteration 0 the EMA decay is 0: after one step the teacher equals the updated student."""
    pool = make_pool(2, (32, 32), (64, 64), CPU, count=1)
    setup = build_fast("dacs", PathOptions(), "deeplabv2_tiny", pool, CPU)
    before = setup.model.layer5.conv2d_list[0].weight.detach().clone()
    fast_iteration(setup, pool, 0)
    assert setup.teacher is not None
    after = setup.model.layer5.conv2d_list[0].weight
    assert not torch.equal(before, after)
    assert torch.equal(setup.teacher.layer5.conv2d_list[0].weight, after)


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
