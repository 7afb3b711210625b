"""The dataset builder: ``build_dataset(cfg, crop=..., train=...)`` for every layout of :mod:`camix.data.layouts`.

Every item is a dict:

* ``"image"``: float32 ``Tensor[3, H, W]``, BGR minus the Caffe mean (0-255 scale, no std division);
* ``"label"``: int64 ``Tensor[H, W]`` of trainIds 0..18 (a folder dataset: its class indices), 255 = ignore; all
  255 for a split without labels (ACDC/BDD100K test, Dark Zurich train and test);
* ``"box"``: int64 ``Tensor[4]`` = (top, left, height, width) of the crop in the resized image (the whole
  image when there is no crop); crop the spatial prior with :func:`camix.data.transforms.crop_to_box`;
* ``"name"``: the image path relative to the dataset root;
* ``"size"``: int64 ``Tensor[2]`` = (width, height) of the resized image before cropping.

Resizing: ``cfg.size`` when set, else the native size times ``cfg.scale``; then a random crop (``train=True``)
or a central crop (``train=False``) of ``crop`` = (width, height). With ``cfg.label_size == "native"`` (for
evaluation, no crop) the label keeps the file's resolution while the image is resized, so items of
different native sizes cannot be batched: use batch size 1 then.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from camix.config import DataConfig, DatasetConfig
from camix.data.layouts import LAYOUTS, has_labels, layout_of
from camix.data.transforms import (
    CHECK_HINT,
    TRAIN_IDS,
    Box,
    Sample,
    SizeWH,
    center_box,
    full_box,
    image_crop_tensor,
    image_size,
    label_size,
    map_labels,
    open_image,
    random_box,
    resize_crop_label,
    resize_image,
    target_size,
)
from camix.errors import ConfigError, DataError
from camix.labels import IGNORE_INDEX
from camix.validation import ConfigKeyError

log = logging.getLogger(__name__)

FINDERS: dict[str, Callable[[DatasetConfig], list[Sample]]] = {name: lay.find_samples for name, lay in LAYOUTS.items()}
"""Dataset name -> function listing its samples (sorted, after ``list_file`` and ``limit``)."""


def find_samples(cfg: DatasetConfig) -> list[Sample]:
    """The samples of the dataset that ``cfg`` describes.

    Raises:
        ConfigError: unknown dataset name.
        DataError: missing, empty or misnamed dataset folders.
    """
    layout = layout_of(cfg.name)
    refuse_partial_synthcity(cfg.root)
    return layout.find_samples(cfg)


def refuse_partial_synthcity(root: str) -> None:
    """Raise a DataError when ``root`` belongs to a SynthCity whose generation was interrupted.

    ``camix data synthcity`` keeps a marker file in its output folder while it writes; the dataset roots are
    that folder's ``gta/`` and ``cityscapes/``, so the marker is looked for in ``root`` and in its parent.
    """
    from camix.data.synthcity.writer import PARTIAL

    folder = Path(root).expanduser()
    for candidate in (folder, folder.parent):
        if (candidate / PARTIAL).exists():
            raise DataError(
                f"{candidate}: SynthCity generation was interrupted (marker {PARTIAL} present), so the dataset is "
                f"incomplete; generate it again with `camix data synthcity --out {candidate}` and the same options"
            )


class ItemError(DataError):
    """A DataError raised while loading one item.

    A DataLoader worker re-raises an exception in the main process as ``type(exc)(message)`` where the message
    is a whole formatted traceback; this class cuts such a message back to the original one line, so that
    ``camix`` can still print a one-line error.
    """

    def __init__(self, message: str) -> None:
        """Args: message: the one-line message, or the traceback text built by a DataLoader worker."""
        if message.startswith("Caught ") and "Original Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = f"{last.split(': ', 1)[-1]} (in a DataLoader worker)"
        super().__init__(message)


class SegmentationDataset(Dataset[dict[str, Any]]):
    """Image/label pairs resized and cropped the DACS way (see the module docstring for the item format)."""

    def __init__(
        self, cfg: DatasetConfig, samples: list[Sample], crop: SizeWH | None, train: bool, labelled: bool = True
    ) -> None:
        """Args: cfg: the dataset settings; samples: its pairs; crop: (width, height) or None; train: random crops;
        labelled: False reads no label file (every label pixel is 255)."""
        self.cfg, self.samples, self.crop, self.train, self.labelled = cfg, samples, crop, train, labelled
        self.strict_sizes = layout_of(cfg.name).strict_sizes
        self._warned_mismatch = False

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self._load(self.samples[index])
        except ItemError:
            raise
        except DataError as exc:
            raise ItemError(str(exc)) from None

    def load_keeping(self, index: int, cls: int, min_pixels: int, tries: int = 10) -> dict[str, Any]:
        """Item ``index`` with its random crop redrawn (up to ``tries`` crops) until it holds ``min_pixels`` pixels
        of class ``cls`` (DAFormer's Rare Class Sampling; the last crop is kept when none does)."""
        try:
            return self._load(self.samples[index], keep=(cls, min_pixels, tries))
        except ItemError:
            raise
        except DataError as exc:
            raise ItemError(str(exc)) from None

    def _load(self, sample: Sample, keep: tuple[int, int, int] | None = None) -> dict[str, Any]:
        image = open_image(sample.image)
        if self.labelled:
            raw = sample.label_format.read(sample.label)
            self._check_sizes(sample, image.size, (raw.shape[1], raw.shape[0]))
        else:  # no label: every pixel ignored (ids that the format maps to 255)
            raw = np.full((image.size[1], image.size[0]), IGNORE_INDEX, dtype=np.uint8)
            sample = Sample(sample.image, sample.label, sample.name, TRAIN_IDS)
        size = target_size(image.size, self.cfg.size, self.cfg.scale)
        box = self._box(size)
        if keep is not None and self.crop is not None and self.train:
            box = self._box_keeping(raw, sample, size, box, keep)
        image_t = image_crop_tensor(resize_image(image, size), box)
        if self.cfg.label_size == "native" and self.crop is None:
            label = map_labels(raw, sample.label_format, sample.label)
        else:
            label = map_labels(resize_crop_label(raw, size, box), sample.label_format, sample.label)
        return {
            "image": image_t,
            "label": torch.from_numpy(label.astype(np.int64)),
            "box": torch.tensor(box, dtype=torch.int64),
            "name": sample.name,
            "size": torch.tensor(size, dtype=torch.int64),
        }

    def _box_keeping(self, raw: np.ndarray, sample: Sample, size: SizeWH, box: Box, keep: tuple[int, int, int]) -> Box:
        cls, min_pixels, tries = keep
        for _ in range(tries - 1):
            crop = map_labels(resize_crop_label(raw, size, box), sample.label_format, sample.label)
            if int((crop == cls).sum()) >= min_pixels:
                break
            box = self._box(size)
        return box

    def _box(self, size: SizeWH) -> Box:
        if self.crop is None:
            return full_box(size)
        return random_box(size, self.crop) if self.train else center_box(size, self.crop)

    def _check_sizes(self, sample: Sample, image_wh: SizeWH, label_wh: SizeWH) -> None:
        if image_wh == label_wh:
            return
        what = (
            f"{sample.image} is {image_wh[0]}x{image_wh[1]} but its label {sample.label} is {label_wh[0]}x{label_wh[1]}"
        )
        if self.strict_sizes:
            raise DataError(f"{what}; fix the pair or leave it out with a list file ({CHECK_HINT})")
        if self.cfg.size is None:
            raise DataError(f"{what}; set the dataset's `size` to resize both, or fix the pair ({CHECK_HINT})")
        if not self._warned_mismatch:
            self._warned_mismatch = True
            log.warning("%s; resizing both to %dx%d (warned once per worker; %s)", what, *self.cfg.size, CHECK_HINT)


def build_dataset(
    cfg: DatasetConfig, *, crop: tuple[int, int] | None = None, train: bool = True, labelled: bool | None = None
) -> Dataset:
    """Build the dataset that ``cfg`` describes.

    Args:
        cfg: name, root, split, resizing, list file and limit.
        crop: (width, height) of the crops; None returns whole (resized) images.
        train: random crop offsets (drawn with the global torch RNG, so DataLoader worker seeding makes them
            reproducible); False gives central crops.
        labelled: read the labels (required to exist); False: labels all 255; None: read them when the split has
            labels (:func:`camix.data.layouts.has_labels`).

    Raises:
        ConfigError: unknown dataset name, or a crop together with ``label_size: native``.
        DataError: missing/empty/misnamed folders or missing label files, naming the path and the layout.
    """
    if crop is not None and cfg.label_size == "native":
        raise ConfigError(f"dataset '{cfg.name}': label_size 'native' cannot be combined with a crop")
    if crop is not None and (crop[0] < 1 or crop[1] < 1):
        raise ConfigError(f"crop must be positive (width, height), got {crop}")
    samples = find_samples(cfg)
    labelled = has_labels(cfg) if labelled is None else labelled
    if labelled:
        require_labels(samples)
    box = tuple(crop) if crop is not None else None
    return SegmentationDataset(cfg, samples, box, train, labelled)  # type: ignore[arg-type]


def shared_cache_dir(root: str) -> Path | None:
    """The folder ``<root>/.camix_cache`` where files derived from the dataset at ``root`` are cached for every run
    on it, or None when it cannot be written (the caller then keeps its file in the run directory)."""
    folder = Path(root).expanduser() / ".camix_cache"
    try:
        folder.mkdir(exist_ok=True)
        probe = folder / f".probe_{os.getpid()}"  # per process: ranks and runs probe at the same time
        probe.touch()
        probe.unlink()
        return folder
    except OSError:
        return None


def require_labels(samples: list[Sample]) -> None:
    """Raise a DataError naming the first missing label file (and how many more are missing)."""
    missing = [s for s in samples if not s.label.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(
            f"{missing[0].label}: label file not found for {missing[0].image}{more}; "
            f"add the labels or leave those images out with a list file ({CHECK_HINT})"
        )


def check_roots(data: DataConfig, *, with_target: bool) -> None:
    """The source, val and (``with_target``) target folders exist with their layout and images, and the labelled
    splits have every label file, at the size of its image where the layout is strict about sizes. Lists files and
    reads image headers only; nothing is decoded.

    Raises:
        ConfigKeyError: an empty ``root``, or a source or val split without labels.
        DataError: a folder that is missing, empty or misnamed, missing labels, or a label whose size differs from
            its image (naming both files).
    """
    for key in ("source", "val", "target"):
        dataset = getattr(data, key)
        if dataset is None or (key == "target" and not with_target):
            continue
        if not dataset.root.strip():
            raise ConfigKeyError(
                f"config key 'data.{key}.root' is empty; set it to the {dataset.name} folder", f"data.{key}.root"
            )
        samples = find_samples(dataset)
        if key == "target":  # the target's labels are never read
            continue
        if not has_labels(dataset):
            raise ConfigKeyError(
                f"config key 'data.{key}.split': {dataset.name} split {dataset.split!r} has no labels; "
                f"data.{key} needs a labelled split",
                f"data.{key}.split",
            )
        require_labels(samples)
        if layout_of(dataset.name).strict_sizes:
            require_matching_sizes(samples)


def require_matching_sizes(samples: list[Sample]) -> None:
    """Raise a DataError naming the first image whose label has another size (image headers only, no decoding)."""
    for sample in samples:
        image_wh, label_wh = image_size(sample.image), label_size(sample.label)
        if image_wh != label_wh:
            raise DataError(
                f"{sample.image} is {image_wh[0]}x{image_wh[1]} but its label {sample.label} is "
                f"{label_wh[0]}x{label_wh[1]}; fix the pair or leave it out with a list file ({CHECK_HINT})"
            )
