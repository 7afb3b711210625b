"""The fast training iteration: no host synchronisation, one batched teacher forward, bf16 numerics.

No GPU here, so the ``meta`` device stands in for one. Meta tensors hold no data: ``nonzero``, ``unique`` and
boolean-mask indexing raise, and mixing a meta tensor with a (non-scalar) CPU tensor raises as mixing CUDA and
CPU does. :class:`SyncCounter` counts the other two kinds of host synchronisation a GPU would suffer: reading a
device value (``.item()``, ``.tolist()``, ``bool(t)``, ``.cpu()``...) and a blocking host-to-device copy (on
CUDA ``tensor.to(device)`` from the host waits for the stream). The whole batch is on the device, the crop boxes
included, as ``camix.data.batch.to_device`` puts it there.
"""

from __future__ import annotations

import collections
import traceback
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from camix import functional as Fn
from camix import mixes
from camix.augment import StrongAugment
from camix.config import AugmentConfig, Config, load_config
from camix.data.labels import CAFFE_MEAN_BGR
from camix.methods import build_context, method_of
from camix.optim import build_optimizer, poly_lr_
from camix.runtime import Dist
from camix.step import optimisation_step
from camix.step_context import StepContext, StepFn, upsampled_logits
from camix.train_setup import Networks, autocast_factory, build_networks

ATEN = torch.ops.aten
READS = (ATEN._local_scalar_dense.default, ATEN.is_nonzero.default)


class SyncCounter(TorchDispatchMode):
    """Counts, by call site, the operations that would make the host wait for a GPU (the meta device here).

    A read of a meta value is answered with a dummy (1) and a device-to-host copy with zeros, so that counting
    goes on past it; a host-to-device copy counts when it is blocking and moves more than a scalar, and so does a
    device tensor made from Python data (:class:`DataUploads`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.sites: collections.Counter[str] = collections.Counter()
        self.uploads = DataUploads(self)

    def __enter__(self) -> SyncCounter:
        self.uploads.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)
        finally:
            self.uploads.__exit__(*exc)

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


class DataUploads(TorchFunctionMode):
    """Notes, in its :class:`SyncCounter`, every device tensor made from Python data (``torch.tensor``,
    ``torch.as_tensor``, ``Tensor.new_tensor`` of a list or number): on CUDA that is a copy from pageable host
    memory, which waits for the stream (``torch.cuda.set_sync_debug_mode`` reports it), and it never reaches the
    dispatcher as a copy."""

    CONSTRUCTORS = (torch.tensor, torch.as_tensor, torch.Tensor.new_tensor)

    def __init__(self, counter: SyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in self.CONSTRUCTORS and isinstance(out, torch.Tensor) and out.device.type != "cpu":
            data = args[1] if func is torch.Tensor.new_tensor else args[0]
            if not isinstance(data, torch.Tensor):
                self.counter.note("host data uploaded")
        return out


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
METHODS = ("source_only", "dacs", "camix")


# ------------------------------------------------------------------------------------- synthetic batches
def street_label(size: int, gen: torch.Generator) -> torch.Tensor:
    """A ``size`` x ``size`` street-like trainId map: sky, buildings, vegetation, road, sidewalk, a car, a pole."""
    r = torch.rand(6, generator=gen)
    y = torch.linspace(0, 1, size).view(-1, 1).expand(size, size)
    x = torch.linspace(0, 1, size).view(1, -1).expand(size, size)
    horizon = 0.4 + 0.2 * r[0]
    label = torch.full((size, size), 10)  # sky
    label[y > horizon - 0.15 - 0.1 * r[1]] = 2  # buildings
    label[(y > horizon - 0.1) & (x < 0.1 + 0.2 * r[2])] = 8  # vegetation
    label[y > horizon] = 1  # sidewalk
    label[(y > horizon) & ((x - 0.5).abs() < 0.1 + 0.5 * (y - horizon))] = 0  # road
    label[((y - horizon - 0.25).abs() < 0.08) & ((x - 0.3 - 0.4 * r[3]).abs() < 0.12)] = 13  # car
    label[((x - 0.1 - 0.8 * r[4]).abs() < 0.03) & (y > horizon - 0.3) & (y < horizon + 0.1)] = 5  # pole
    return label


def street_image(label: torch.Tensor, palette: torch.Tensor, noise: float, gen: torch.Generator) -> torch.Tensor:
    """A Caffe-normalised BGR image whose colours follow the labels."""
    image = palette[label].permute(2, 0, 1) + noise * torch.randn((3, *label.shape), generator=gen)
    return image.clamp(0, 255) - torch.tensor(CAFFE_MEAN_BGR).view(3, 1, 1)


@dataclass
class Batches:
    """Source (image, label) and target (image, box) batches and the spatial prior at the target image size."""

    sources: list[dict[str, torch.Tensor]]
    targets: list[dict[str, torch.Tensor]]
    prior: torch.Tensor

    def batch(self, i: int, channels_last: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Batch ``i`` (cycled), images channels_last when the run's ``train.channels_last`` says so."""
        source, target = dict(self.sources[i % len(self.sources)]), dict(self.targets[i % len(self.targets)])
        if channels_last:
            source["image"] = source["image"].contiguous(memory_format=torch.channels_last)
            target["image"] = target["image"].contiguous(memory_format=torch.channels_last)
        return source, target


def street_batches(batch: int, crop: int, target_size: int, device: torch.device, count: int = 1) -> Batches:
    """``count`` batches of ``batch`` square ``crop`` source and target crops, the crop boxes (int64) included, on
    ``device``, as the trainer moves them."""
    gen = torch.Generator().manual_seed(0)
    palette = 255 * torch.rand(19, 3, generator=gen)
    target_palette = (0.6 * palette + 60 + 30 * torch.rand(19, 3, generator=gen)).clamp(0, 255)
    sources, targets = [], []
    for _ in range(count):
        labels = torch.stack([street_label(crop, gen) for _ in range(batch)])
        images = torch.stack([street_image(label, palette, 8.0, gen) for label in labels])
        target_images = torch.stack([street_image(street_label(crop, gen), target_palette, 20.0, gen) for _ in labels])
        corners = torch.randint(0, target_size - crop + 1, (batch, 2), generator=gen)
        boxes = torch.cat([corners, torch.full((batch, 2), crop)], dim=1)  # (top, left, height, width)
        sources.append({"image": images.to(device), "label": labels.to(device)})
        targets.append({"image": target_images.to(device), "box": boxes.to(device)})
    maps = [street_label(target_size, gen) for _ in range(8)]
    prior = Fn.spatial_prior(maps, 19, (target_size, target_size), smoothing=1.0)
    return Batches(sources, targets, prior.to(device))


# ------------------------------------------------------------------------ the library's set-up and step
@dataclass
class Setup:
    """What ``Trainer`` builds for one method, from the same builders."""

    cfg: Config
    nets: Networks
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    ctx: StepContext
    step: StepFn


def build(method: str, data: Batches, device: torch.device, *overrides: str, noise_passes: int = 8) -> Setup:
    """The packaged GTA5 -> Cityscapes config of ``method`` (tiny model, no warm-up, random initial weights)."""
    crop = data.sources[0]["label"].shape[-1]
    fixed = ["model.name=deeplabv2_tiny", "model.pretrained=null", "optim.duplicate_backbone_params=false"]
    fixed += ["method.warmup_iterations=0", f"method.noise_passes={noise_passes}", f"data.crop={crop}x{crop}"]
    cfg = load_config(f"configs/gta2cs/{method}.yaml", [*fixed, *overrides])
    torch.manual_seed(cfg.seed)
    nets = build_networks(cfg, device, Dist())
    ctx = build_context(
        cfg.method,
        student=nets.student,
        teacher=nets.teacher_forward,
        num_classes=cfg.model.num_classes,
        generator=torch.Generator(device=CPU if device == META else device).manual_seed(cfg.seed),  # meta: no RNG
        total_iterations=cfg.train.iterations,
        crop=cfg.data.crop,
        prior=data.prior,
        autocast=autocast_factory(device, cfg.train.amp),
        imagenet=nets.imagenet,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16")
    optimizer = build_optimizer(nets.model, cfg.optim, cfg.train.amp)
    return Setup(cfg, nets, optimizer, scaler, ctx, method_of(cfg.method).step)


def iterate(setup: Setup, data: Batches, i: int) -> dict[str, torch.Tensor]:
    """One iteration of the training loop once the batch is on the device (poly lr, step, backward, SGD, EMA)."""
    cfg = setup.cfg
    poly_lr_(setup.optimizer, cfg.optim.lr, cfg.optim.power, i, cfg.train.iterations)
    source, target = data.batch(i, cfg.train.channels_last)
    setup.ctx.iteration = i
    out, _ = optimisation_step(
        setup.ctx,
        setup.step,
        source,
        target if method_of(cfg.method).target else None,
        setup.optimizer,
        setup.scaler,
        teacher=setup.nets.teacher,
        model=setup.nets.model,
        ema_alpha_max=cfg.method.ema_alpha,
    )
    return {name: value.detach() for name, value in out.losses.items()}


FP32 = ("train.amp=none", "train.channels_last=false")
CHANNELS_LAST = ("train.amp=none", "train.channels_last=true")
FAST = ("train.amp=bf16", "train.channels_last=true")


@pytest.fixture(scope="module")
def meta_data() -> Batches:
    return street_batches(2, 32, 64, META)


@pytest.mark.parametrize("method", METHODS)
def test_fast_iteration_has_no_host_sync(meta_data: Batches, method: str) -> None:
    """Step function, masks, class selection, augmentation, losses, backward, SGD and EMA never wait for the device."""
    setup = build(method, meta_data, META, *CHANNELS_LAST, noise_passes=2)
    iterate(setup, meta_data, 0)
    with SyncCounter() as counter:
        losses = iterate(setup, meta_data, 1)
    assert not counter.sites, dict(counter.sites)
    assert set(losses) == ({"seg"} if method == "source_only" else {"seg", "con"})
    assert all(value.device == META for value in losses.values())
    assert all(p.device == META for p in setup.nets.model.parameters())


def test_sync_counter_sees_reads_and_blocking_copies() -> None:
    x = torch.ones(3, device=META)
    with SyncCounter() as counter:
        x.sum().item()
        bool(x.any())
        x.cpu()
        torch.ones(3).to(META)
        torch.ones(3).to(META, non_blocking=True)
        x.mul(2.0)
        x.new_tensor([1.0, 2.0, 3.0])
        torch.tensor([1.0], device=META)
        torch.as_tensor(x)  # already on the device: no upload
    kinds = sorted(site.split(" at ")[0] for site in counter.sites.elements())
    expected = ["blocking host-to-device copy", "device-to-host copy", "host data uploaded", "host data uploaded"]
    assert kinds == [*expected, "read", "read"]


def test_strong_augment_is_sync_free() -> None:
    generator = torch.Generator().manual_seed(0)  # meta has no RNG: the CPU stands in for the GPU's generator
    augment = StrongAugment(AugmentConfig(jitter_p=1.0, blur_p=1.0), 32, 32, generator)
    with SyncCounter() as counter:
        augment(torch.zeros(2, 3, 32, 32, device=META))
    assert not counter.sites, dict(counter.sites)


def test_hrda_window_average_is_sync_free() -> None:
    """The sliding windows' average (HRDA's fused inference, each teacher pass) neither reads nor uploads."""
    boxes = Fn.slide_boxes(8, 12, (4, 4), (2, 4))
    with SyncCounter() as counter:
        out = Fn.slide_average(torch.ones(len(boxes), 2, 3, 4, 4, device=META), boxes, (8, 12))
    assert not counter.sites, dict(counter.sites)
    assert out.shape == (2, 3, 8, 12) and out.device == META


def test_meta_stand_in_catches_a_host_sync(meta_data: Batches, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: the prior cropped by reading the boxes back to the host (``.tolist()``, as camix once did)
    makes the camix step fail on the stand-in device."""

    def host_crop(prior: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return torch.stack([prior[:, t : t + h, left : left + w] for t, left, h, w in boxes.tolist()])

    with pytest.raises((RuntimeError, NotImplementedError)):
        host_crop(meta_data.prior, meta_data.targets[0]["box"], (32, 32))
    setup = build("camix", meta_data, META, *FP32, noise_passes=2)
    setup.ctx.iteration = 0
    source, target = meta_data.batch(0, channels_last=False)
    with SyncCounter() as counter:
        setup.step(setup.ctx, source, target)  # the library's crop: no read
    assert not counter.sites, dict(counter.sites)
    monkeypatch.setattr(mixes, "crop_prior", host_crop)
    with pytest.raises((RuntimeError, NotImplementedError)):
        setup.step(setup.ctx, source, target)


def test_teacher_runs_clean_and_noisy_passes_in_one_channels_last_forward() -> None:
    data = street_batches(2, 32, 64, CPU)
    setup = build("camix", data, CPU, *CHANNELS_LAST, noise_passes=3)
    calls: list[tuple[int, bool]] = []
    assert setup.nets.teacher is not None
    setup.nets.teacher.register_forward_pre_hook(
        lambda _m, inputs: calls.append(
            (inputs[0].shape[0], inputs[0].is_contiguous(memory_format=torch.channels_last))
        )
    )
    iterate(setup, data, 0)
    assert calls == [(2 * (1 + 3), True)]
    assert weight(setup.nets.model, "conv1.weight").is_contiguous(memory_format=torch.channels_last)


def test_optimisation_step_updates_the_teacher_by_ema() -> None:
    """At iteration 0 the EMA decay is 0: after one step the teacher equals the updated student."""
    data = street_batches(2, 32, 64, CPU)
    setup = build("dacs", data, CPU, *FP32)
    name = "layer5.conv2d_list.0.weight"
    before = weight(setup.nets.model, name).detach().clone()
    iterate(setup, data, 0)
    assert setup.nets.teacher is not None
    after = weight(setup.nets.model, name)
    assert not torch.equal(before, after)
    assert torch.equal(weight(setup.nets.teacher, name), after)


def confident_share(model: torch.nn.Module, data: Batches) -> float:
    """Share of the first target batch's pixels with max-prob >= 0.968 (what DACS's confidence weight counts)."""
    with torch.no_grad():
        prob = upsampled_logits(model, data.targets[0]["image"]).softmax(1)
    return float((prob.max(1).values >= 0.968).float().mean())


def warm_start(data: Batches, most: int = 40) -> tuple[dict[str, torch.Tensor], float]:
    """Weights after fp32 source-only iterations at 10x the paper's lr, until 30% of target pixels are confident.

    A random network is never confident, so DACS's confidence weight and with it the consistency loss would be
    0 on both paths; a warm start makes the comparison bite.
    """
    setup = build("source_only", data, CPU, *FP32)
    done, confident = 0, 0.0
    while done < most and confident < 0.3:
        poly_lr_(setup.optimizer, 10 * setup.cfg.optim.lr, 0.9, 0, 1)
        source, _ = data.batch(done, channels_last=False)
        optimisation_step(setup.ctx, setup.step, source, None, setup.optimizer, setup.scaler)
        done += 1
        if done % 10 == 0:
            confident = confident_share(setup.nets.model, data)
    return {k: v.clone() for k, v in setup.nets.model.state_dict().items()}, confident


def losses_from(method: str, path: tuple[str, ...], state: dict[str, torch.Tensor], data: Batches) -> torch.Tensor:
    """[iterations, terms] losses of 10 iterations from ``state`` with fixed seeds; the last column the total."""
    setup = build(method, data, CPU, *path)
    setup.nets.model.load_state_dict(state)
    assert setup.nets.teacher is not None
    setup.nets.teacher.load_state_dict(state)
    torch.manual_seed(1234)  # kornia draws its augmentation parameters from the global (host) generator
    setup.ctx.generator.manual_seed(1234)
    rows = [iterate(setup, data, i) for i in range(10)]
    assert all(list(row) == ["seg", "con"] for row in rows)
    values = torch.stack([torch.stack([row["seg"].float(), row["con"].float()]) for row in rows]).double()
    return torch.cat([values, values.sum(1, keepdim=True)], dim=1)


def test_bf16_channels_last_losses_stay_within_2_percent_of_fp32() -> None:
    """Ten iterations from the same state, same data and seeds: every loss term of bf16 autocast + channels_last
    within 2% of fp32 (eager, contiguous)."""
    data = street_batches(2, 128, 256, CPU, count=4)
    state, confident = warm_start(data)
    assert confident > 0.1
    worst = {}
    for method in ("dacs", "camix"):
        ref, fast = losses_from(method, FP32, state, data), losses_from(method, FAST, state, data)
        assert ref[:, 1].min() > 0, "the warm start must make the teacher confident"
        assert ref.min() > 0  # every relative difference is defined
        assert not torch.equal(ref, fast)  # the paths differ: the comparison is not of one path with itself
        for k, term in enumerate(("seg", "con", "total")):
            worst[f"{method}/{term}"] = float(((fast[:, k] - ref[:, k]).abs() / ref[:, k].abs()).max())
    assert max(worst.values()) <= 0.02, worst


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
