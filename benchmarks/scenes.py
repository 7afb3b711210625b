"""Random street-scene-like batches for ``benchmarks/train_step.py`` (timing only; not used by the library).

Labels are made of a sky, a skyline, a road with sidewalks and a handful of objects and poles, so that ClassMix
and the contextual mask see realistic class counts; images are Caffe-normalised BGR whose colours follow the
labels; the spatial prior is computed from more such label maps (``camix.functional.spatial_prior``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from camix import functional as Fn
from camix.data.labels import CAFFE_MEAN_BGR, IGNORE_INDEX


def _painter(label: Tensor) -> Callable[[int, float, float, float, float], None]:
    height, width = label.shape

    def paint(cls: int, top: float, left: float, h: float, w: float) -> None:
        """Fill a box given in fractions of the image (clamped, at least one pixel)."""
        t, lf = max(0, int(top * height)), max(0, int(left * width))
        b, r = min(height, max(t + 1, int((top + h) * height))), min(width, max(lf + 1, int((left + w) * width)))
        label[t:b, lf:r] = cls

    return paint


def scene_label(height: int, width: int, gen: torch.Generator) -> Tensor:
    """A street-scene-like trainId map: sky, a skyline of buildings/vegetation, road, sidewalks, objects."""
    r = iter(torch.rand(64, generator=gen).tolist())  # host floats from a CPU generator (setup only)
    y, x = torch.linspace(0, 1, height).view(-1, 1), torch.linspace(0, 1, width).view(1, -1)
    horizon, centre, blocks = 0.35 + 0.15 * next(r), 0.4 + 0.2 * next(r), 4 + int(5 * next(r))
    block = (x * blocks).long().clamp(max=blocks - 1)
    tops = horizon - 0.05 - 0.3 * torch.rand(blocks, generator=gen)
    kinds = torch.where(torch.rand(blocks, generator=gen) < 0.3, 8, 2)  # vegetation or building
    label = torch.where(y >= tops[block], kinds[block], torch.full((height, width), 10))  # 10: sky
    depth = ((y - horizon) / (1 - horizon)).clamp(min=0)
    ground = torch.where((x - centre).abs() < 0.08 + 0.5 * depth, 0, 1)  # road, sidewalk
    ground = torch.where((x - centre).abs() < 0.15 + 0.8 * depth, ground, 9 if next(r) < 0.5 else 8)
    label = torch.where(y >= horizon, ground, label)
    paint = _painter(label)
    if next(r) < 0.6:  # a wall or a fence along one side
        paint(3 if next(r) < 0.5 else 4, horizon - 0.06, 0.0 if next(r) < 0.5 else 0.6, 0.08, 0.4)
    for _ in range(1 + int(3 * next(r))):  # cars on the road, sized by depth
        d = 0.15 + 0.85 * next(r)
        size = 0.06 + 0.25 * d
        paint(13, horizon + d * (1 - horizon) - 0.6 * size, centre + (next(r) - 0.5) * d - size / 2, 0.6 * size, size)
    for _ in range(int(3 * next(r))):  # persons on the sidewalks
        d, side = 0.2 + 0.8 * next(r), -1 if next(r) < 0.5 else 1
        h = 0.1 + 0.3 * d
        paint(11, horizon + d * (1 - horizon) - h, centre + side * (0.12 + 0.6 * d), h, 0.25 * h)
    for _ in range(1 + int(2 * next(r))):  # poles carrying a sign or a light
        px, h = next(r), 0.2 + 0.2 * next(r)
        paint(5, horizon - h, px, h + 0.1, 0.012)
        paint(7 if next(r) < 0.6 else 6, horizon - h - 0.04, px - 0.02, 0.05, 0.05)
    if next(r) < 0.5:  # a rider on a bicycle or a motorcycle
        rx = centre + 0.3 * (next(r) - 0.5)
        paint(12, horizon + 0.05, rx, 0.12, 0.04)
        paint(18 if next(r) < 0.5 else 17, horizon + 0.15, rx - 0.02, 0.07, 0.08)
    if next(r) < 0.4:  # a truck, bus or train
        paint(14 + int(3 * next(r)), horizon - 0.12, centre - 0.35 * next(r), 0.2, 0.3)
    if next(r) < 0.5:  # unlabelled ego-vehicle band
        label = torch.where(y > 0.93, IGNORE_INDEX, label)
    return label


def scene_image(label: Tensor, palette: Tensor, gen: torch.Generator, noise: float) -> Tensor:
    """Caffe-normalised BGR image whose colours follow the labels (palette row 19 serves the ignore label)."""
    index = torch.where(label == IGNORE_INDEX, 19, label)
    image = palette[index].permute(2, 0, 1) * (0.8 + 0.4 * torch.rand(1, generator=gen))
    image = image + noise * torch.randn(image.shape, generator=gen)
    return image.clamp(0, 255) - torch.tensor(CAFFE_MEAN_BGR).view(3, 1, 1)


@dataclass
class Pool:
    """A few ready batches on the device, cycled through, and the spatial prior at the target image size."""

    sources: list[dict[str, Tensor]]
    targets: list[dict[str, Tensor]]
    prior: Tensor

    def batch(self, i: int, channels_last: bool) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Batch ``i`` (cycled); images converted to channels_last as ``camix.data.batch.to_device`` does."""
        source, target = dict(self.sources[i % len(self.sources)]), dict(self.targets[i % len(self.targets)])
        if channels_last:
            source["image"] = source["image"].contiguous(memory_format=torch.channels_last)
            target["image"] = target["image"].contiguous(memory_format=torch.channels_last)
        return source, target


def make_pool(
    batch: int, crop: tuple[int, int], target_size: tuple[int, int], device: torch.device, count: int = 4
) -> Pool:
    """``count`` batches of ``batch`` source (image, label) and target (image, box) crops; ``crop`` is (h, w)."""
    gen = torch.Generator().manual_seed(0)
    palette = 255 * torch.rand(20, 3, generator=gen)
    target_palette = (0.6 * palette + 60 + 30 * torch.rand(20, 3, generator=gen)).clamp(0, 255)
    (h, w), (th, tw) = crop, target_size
    sources, targets = [], []
    for _ in range(count):
        labels = torch.stack([scene_label(h, w, gen) for _ in range(batch)])
        images = torch.stack([scene_image(lab, palette, gen, 8.0) for lab in labels])
        target_images = torch.stack([scene_image(scene_label(h, w, gen), target_palette, gen, 20.0) for _ in labels])
        tops = torch.randint(0, th - h + 1, (batch,), generator=gen)
        lefts = torch.randint(0, tw - w + 1, (batch,), generator=gen)
        boxes = torch.stack([tops, lefts, torch.full_like(tops, h), torch.full_like(tops, w)], dim=1)
        sources.append({"image": images.to(device), "label": labels.to(device)})
        targets.append({"image": target_images.to(device), "box": boxes.to(device)})  # on the device, as the trainer
    maps = [scene_label(max(8, th // 8), max(8, tw // 8), gen) for _ in range(32)]
    small = Fn.spatial_prior(maps, 19, (max(8, th // 8), max(8, tw // 8)), smoothing=1.0)
    prior = F.interpolate(small[None], size=(th, tw), mode="bilinear", align_corners=False)[0]
    return Pool(sources, targets, prior.to(device))
