"""The spatial prior Q (paper Sec. 3.1) of a source dataset: compute, save, load, cache.

The released CAMix code ships Q as an opaque file; camix computes it from the source labels with
:func:`camix.functional.spatial_prior`. Every label map is resized (nearest) to the prior size first.
CAMix modulates the *target* predictions with Q, so compute it at the size the target training images are
resized to (Cityscapes 2048x1024 at ``scale: 1.0``, 1024x512 at 0.5) and crop it with each target item's
``box`` (:func:`camix.data.transforms.crop_to_box`).

A training run asks for its prior with one call, :func:`run_prior`: the file ``data.prior`` names, or the prior
computed from the source labels and cached in the source root under a name that changes with the labels.

File format (``torch.save``, written atomically): ``{"prior": float32 Tensor[C, H, W], "size": (W, H),
"dataset": name, "root": str, "num_images": n}``; per-class pixel statistics go to a JSON file beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from camix.config import DataConfig, DatasetConfig
from camix.config_tree import to_dict
from camix.data.datasets import ItemError, find_samples, require_labels, shared_cache_dir
from camix.data.layouts import class_names_of, has_labels
from camix.data.transforms import Sample, SizeWH, full_box, map_labels, resize_crop_label
from camix.errors import DataError
from camix.functional import spatial_prior
from camix.io import atomic_torch_save, atomic_write_text
from camix.labels import IGNORE_INDEX
from camix.runtime import Dist, all_gather_objects, barrier
from camix.validation import ConfigKeyError

LOG = logging.getLogger("camix.data.prior")


class _PriorLabels(Dataset[torch.Tensor]):
    """Label maps of a dataset as int64 trainIds, resized (nearest) to the prior size."""

    def __init__(self, samples: list[Sample], size: SizeWH) -> None:
        self.samples, self.size = samples, size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> torch.Tensor:
        sample = self.samples[index]
        try:
            raw = sample.label_format.read(sample.label)
            resized = resize_crop_label(raw, self.size, full_box(self.size))
            return torch.from_numpy(map_labels(resized, sample.label_format, sample.label).astype(np.int64))
        except DataError as exc:
            raise ItemError(str(exc)) from None  # stays one line when raised in a DataLoader worker


def compute_prior(
    cfg: DatasetConfig, size_wh: SizeWH, *, progress: bool = True, workers: int = 0, smoothing: float = 0.0
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The spatial prior of the labels of ``cfg`` (all of them, or ``cfg.list_file``/``cfg.limit``).

    Args:
        cfg: the (source) dataset; its ``size``/``scale``/``crop`` settings are not used.
        size_wh: (width, height) of the prior.
        progress: show a tqdm progress bar.
        workers: DataLoader worker processes decoding the label files.
        smoothing: additive smoothing passed to ``spatial_prior``.

    Returns:
        ``(prior, stats)``: float32 ``Tensor[C, H, W]`` (19 classes, or a folder dataset's) summing to 1 over
        classes at every pixel, and
        per-class pixel statistics (counted at the prior size) as a JSON-ready dict.

    Raises:
        DataError: missing folders or label files, undecodable labels, unknown label ids.
    """

    width, height = size_wh
    names = class_names_of(cfg)
    count = len(names)
    if not has_labels(cfg):
        raise DataError(f"{cfg.root}: {cfg.name} split {cfg.split!r} has no labels; use a labelled split")
    samples = find_samples(cfg)
    require_labels(samples)
    loader = DataLoader(_PriorLabels(samples, (width, height)), batch_size=None, num_workers=workers)
    counts = np.zeros(count + 1, dtype=np.int64)  # last bin: ignored pixels
    images = np.zeros(count, dtype=np.int64)

    def labels() -> Any:
        for label in tqdm(loader, desc=f"prior {cfg.name}", unit="img", disable=not progress):
            per_class = torch.bincount(label.flatten().clamp(max=count), minlength=count + 1).numpy()
            counts[:] += per_class
            images[:] += per_class[:count] > 0
            yield label

    prior = spatial_prior(labels(), count, (height, width), ignore_index=IGNORE_INDEX, smoothing=smoothing)
    stats = _stats(cfg, size_wh, len(samples), counts, images, names)
    stats["smoothing"] = smoothing
    return prior, stats


def _stats(
    cfg: DatasetConfig, size_wh: SizeWH, num_images: int, counts: np.ndarray, images: np.ndarray, names: tuple[str, ...]
) -> dict:
    count = len(names)
    labelled = int(counts[:count].sum())
    classes = [
        {
            "train_id": c,
            "name": names[c],
            "pixels": int(counts[c]),
            "fraction": int(counts[c]) / labelled if labelled else 0.0,
            "images": int(images[c]),
        }
        for c in range(count)
    ]
    return {
        "dataset": cfg.name,
        "root": cfg.root,
        "size": list(size_wh),
        "num_images": num_images,
        "note": "pixels are counted on the label maps resized (nearest) to the prior size",
        "labelled_pixels": labelled,
        "ignored_pixels": int(counts[count]),
        "classes": classes,
    }


def stats_path(path: str | Path) -> Path:
    """Where the JSON statistics of a prior file go: the same name with suffix ``.json``."""
    return Path(path).with_suffix(".json")


def save_prior(path: str | Path, prior: torch.Tensor, meta: dict[str, Any]) -> None:
    """Write a prior file atomically: ``{"prior": float32 Tensor[C,H,W], "size", "dataset", "root", "num_images"}``.

    Args:
        path: the output file.
        prior: ``Tensor[C, H, W]``.
        meta: ``size`` (W, H), ``dataset``, ``root``, ``num_images``, and optionally the per-class statistics of
            :func:`compute_prior`, either as ``meta`` itself (``meta = stats``) or under ``meta["stats"]``;
            the statistics go to the JSON file beside ``path`` (:func:`stats_path`), also atomically. A
            ``fingerprint`` (:func:`label_fingerprint`) is kept in the file.
    """
    stats = meta.get("stats") if isinstance(meta.get("stats"), dict) else (meta if "classes" in meta else None)
    merged = {**(stats or {}), **{k: v for k, v in meta.items() if k != "stats"}}
    record = {k: merged[k] for k in ("dataset", "root", "num_images", "smoothing", "fingerprint") if k in merged}
    record["size"] = tuple(int(v) for v in merged.get("size", (prior.shape[-1], prior.shape[-2])))
    atomic_torch_save({"prior": prior.detach().to("cpu", torch.float32).contiguous(), **record}, path)
    if stats is not None:
        atomic_write_text(stats_path(path), json.dumps(stats, indent=2) + "\n")


def load_prior(path: str | Path) -> torch.Tensor:
    """Read the float32 ``Tensor[C, H, W]`` of a prior file.

    Raises:
        DataError: the file is missing, not a prior file or corrupt (naming it).
    """
    record = load_prior_record(path)
    return record["prior"]


def load_prior_record(path: str | Path) -> dict[str, Any]:
    """The whole prior file (``prior`` plus its metadata); DataError on missing/corrupt files."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: spatial prior file not found; make one with `camix data prior`")
    try:
        record = torch.load(file, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0].split(". ")[0] if str(exc) else type(exc).__name__
        raise DataError(f"{file}: cannot read spatial prior ({reason}); delete it and run `camix data prior`") from None
    prior = record.get("prior") if isinstance(record, dict) else None
    if not isinstance(prior, torch.Tensor) or prior.dim() != 3 or not torch.isfinite(prior).all():
        raise DataError(f"{file}: not a spatial prior file (expected a dict with 'prior': Tensor[C, H, W])")
    return record


def label_fingerprint(cfg: DatasetConfig) -> str:
    """A hash of the label files of ``cfg``: their paths (relative to the root), sizes and modification times.

    It changes when the dataset is regenerated, extended, cut down or edited, so caches keyed on it never
    serve a prior computed from other labels. Stats every label file (no decoding).
    """
    root = Path(cfg.root).expanduser()
    digest = hashlib.sha1()
    for sample in find_samples(cfg):
        try:
            stat = sample.label.stat()
            entry = f"{sample.label.relative_to(root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n"
        except (OSError, ValueError):
            entry = f"{sample.label}\tmissing\n"
        digest.update(os.fsencode(entry))
    return digest.hexdigest()[:16]


def cached_prior(
    cfg: DatasetConfig,
    size_wh: SizeWH,
    path: str | Path,
    *,
    progress: bool = True,
    smoothing: float = 0.0,
    fingerprint: str | None = None,
) -> torch.Tensor:
    """Load the prior at ``path`` when it was computed from these very label files at ``size_wh``, else compute it.

    A file of the same dataset and size but other label files (:func:`label_fingerprint`) or another
    ``smoothing`` is recomputed. ``fingerprint`` saves stating the label files again when the caller has it.
    """
    file = Path(path)
    fingerprint = label_fingerprint(cfg) if fingerprint is None else fingerprint
    if file.is_file():
        record = load_prior_record(file)
        same = record.get("dataset") == cfg.name and tuple(record.get("size", ())) == tuple(size_wh)
        if same and record.get("fingerprint") == fingerprint and record.get("smoothing", 0.0) == smoothing:
            return record["prior"]
    prior, stats = compute_prior(cfg, size_wh, progress=progress, smoothing=smoothing)
    save_prior(file, prior, {"stats": stats, "fingerprint": fingerprint})
    return prior


def check_prior_file(path: str, num_classes: int, target: DatasetConfig | None) -> None:
    """The ``data.prior`` file (it exists) holds ``num_classes`` maps, at the target images' size when
    ``target.size`` fixes it.

    Raises:
        ConfigKeyError: naming ``data.prior`` (and the key it disagrees with).
    """
    try:
        shape = tuple(load_prior_record(path)["prior"].shape)
    except DataError as exc:
        raise ConfigKeyError(f"config key 'data.prior': {exc}", "data.prior") from None
    if shape[0] != num_classes:
        raise ConfigKeyError(
            f"config key 'data.prior': {path} holds {shape[0]} class maps but model.num_classes={num_classes}; "
            "rebuild it with `camix data prior`",
            "data.prior",
            "model.num_classes",
        )
    if target is not None and target.size is not None and shape[1:] != (target.size[1], target.size[0]):
        raise ConfigKeyError(
            f"config key 'data.prior': {path} is {shape[2]}x{shape[1]} (WxH) but the target images are resized to "
            f"data.target.size={target.size[0]}x{target.size[1]}; rebuild it with `camix data prior --size "
            f"{target.size[0]}x{target.size[1]}`",
            "data.prior",
            "data.target.size",
        )


def prior_cache_path(data: DataConfig, size: SizeWH, num_classes: int, run_dir: Path, fingerprint: str) -> Path:
    """Where the spatial prior of ``data.source`` at ``size`` is cached: in the source root, else the run dir.

    The name holds a hash of the source config, the size, the class count, ``data.prior_smoothing`` and the
    source's :func:`label_fingerprint` (every label file's name, size and modification time), so a regenerated
    or edited dataset gets a new prior.
    """
    key = json.dumps([to_dict(data.source), list(size), num_classes, data.prior_smoothing, fingerprint], sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return (shared_cache_dir(data.source.root) or run_dir) / f"prior_{data.source.name}_{size[0]}x{size[1]}_{digest}.pt"


def run_prior(
    data: DataConfig, size: SizeWH, num_classes: int, run_dir: Path, info: Dist, *, progress: bool = True
) -> torch.Tensor:
    """The spatial prior Q ``[C,H,W]`` a training run uses, at the target images' size ``size`` (width, height).

    ``data.prior`` when given; else computed from the source labels and cached (:func:`prior_cache_path`,
    :func:`cached_prior`): rank 0 decides the path and builds (or verifies) the file, every other rank waits and
    reads it; ``progress`` shows a progress bar while it is computed. DataError when the prior's shape is not
    (``num_classes``, height, width).
    """
    if data.prior:
        prior = load_prior(data.prior)
    else:
        fingerprint = label_fingerprint(data.source) if info.is_main else ""
        # rank 0 decides where the cache is, so that every rank reads the file it writes
        mine = prior_cache_path(data, size, num_classes, run_dir, fingerprint) if info.is_main else None
        path = all_gather_objects(mine, info)[0]
        if info.is_main:
            if not path.is_file():
                LOG.info("computing the spatial prior of %s at %dx%d -> %s", data.source.root, *size, path)
            prior = cached_prior(
                data.source, size, path, progress=progress, smoothing=data.prior_smoothing, fingerprint=fingerprint
            )
        barrier(info)
        if not info.is_main:
            prior = load_prior(path)
    expected = (num_classes, size[1], size[0])
    if tuple(prior.shape) != expected:
        raise DataError(
            f"spatial prior {data.prior} has shape {tuple(prior.shape)}, expected {expected} "
            f"(classes, target height, target width); rebuild it with camix data prior"
        )
    return prior.float()
