"""The registry of dataset layouts: ``data.*.name`` -> how its samples and label files are found, its splits, and
which splits carry labels. Every other module asks :data:`LAYOUTS` (or :func:`layout_of`) instead of comparing
dataset names. Layouts on disk: docs/datasets.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from camix.config import DataConfig, DatasetConfig
from camix.data import acdc, bdd100k, cityscapes, folder, gta5, synthia
from camix.data.transforms import Sample
from camix.errors import ConfigError
from camix.labels import CLASS_NAMES
from camix.validation import ConfigKeyError


@dataclass(frozen=True)
class Layout:
    """One dataset layout.

    Attributes:
        find_samples: the image/label pairs of one split (labels may be missing: callers decide).
        find_labels: every label file of one split -> the image it belongs to (present or not).
        splits: the splits ``camix data check`` walks by default; ``("all",)`` for a dataset without splits.
        unlabelled: splits that have no labels (never required, never read).
        strict_sizes: a label whose size differs from its image is refused even when ``size`` resizes both
            (GTA5 and SYNTHIA keep the released loaders' resizing with a warning: two dozen GTA5 pairs differ).
    """

    find_samples: Callable[[DatasetConfig], list[Sample]]
    find_labels: Callable[[DatasetConfig], dict[Path, Path]]
    splits: tuple[str, ...]
    unlabelled: tuple[str, ...] = ()
    strict_sizes: bool = True


LAYOUTS: dict[str, Layout] = {
    "gta5": Layout(gta5.find_samples, gta5.find_labels, ("all",), strict_sizes=False),
    "synthia": Layout(synthia.find_samples, synthia.find_labels, ("all",), strict_sizes=False),
    "cityscapes": Layout(cityscapes.find_samples, cityscapes.find_labels, ("train", "val")),
    "acdc": Layout(acdc.find_samples, acdc.find_labels, ("train", "val"), unlabelled=("test",)),
    "dark_zurich": Layout(acdc.find_dz_samples, acdc.find_dz_labels, ("train", "val"), unlabelled=("train", "test")),
    "bdd100k": Layout(bdd100k.find_samples, bdd100k.find_labels, ("train", "val"), unlabelled=("test",)),
    "folder": Layout(folder.find_samples, folder.find_labels, ("train", "val")),
}


def layout_of(name: str) -> Layout:
    """The layout registered as ``name``; ConfigError naming the valid ones otherwise."""
    if name not in LAYOUTS:
        raise ConfigError(f"unknown dataset '{name}' (valid names: {', '.join(LAYOUTS)})")
    return LAYOUTS[name]


def splits_of(cfg: DatasetConfig) -> tuple[str, ...]:
    """The splits of the dataset ``cfg`` describes (a folder dataset without ``{split}`` in its folders has one)."""
    if cfg.name == "folder" and "{split}" not in cfg.image_dir + cfg.label_dir:
        return ("all",)
    return layout_of(cfg.name).splits


def has_labels(cfg: DatasetConfig) -> bool:
    """Whether the split ``cfg`` describes carries labels (ACDC/BDD100K test and Dark Zurich train/test do not)."""
    return cfg.split not in layout_of(cfg.name).unlabelled


def class_names_of(cfg: DatasetConfig) -> tuple[str, ...]:
    """The class names of a dataset's labels: a folder dataset's classes file, else the 19 Cityscapes classes."""
    if cfg.name == "folder":
        return folder.classes_of(cfg).names
    return CLASS_NAMES


def classes_of_config(data: DataConfig) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]] | None:
    """(names, palette) of a run whose labels are a folder dataset's classes (its source, else its val set); None for
    the 19 Cityscapes classes."""
    for dataset in (data.source, data.val):
        if dataset.name == "folder":
            found = folder.classes_of(dataset)
            return found.names, found.palette
    return None


def check_class_count(data: DataConfig, num_classes: int) -> tuple[str, ...]:
    """A run on a folder dataset has as many classes as its classes file names, and its labelled datasets agree;
    returns the class names of the run's labels (a folder dataset's, else the 19 Cityscapes classes).

    Raises:
        ConfigKeyError: naming ``model.num_classes`` and the file, with the count to set.
    """
    labelled = [(key, d) for key, d in (("source", data.source), ("val", data.val)) if d.name == "folder"]
    counts = {key: folder.classes_of(d) for key, d in labelled}
    for key, classes in counts.items():
        if len(classes.names) != num_classes:
            raise ConfigKeyError(
                f"config key 'model.num_classes': {num_classes}, but data.{key}.classes ({classes.path}) names "
                f"{len(classes.names)} classes; set model.num_classes={len(classes.names)}",
                "model.num_classes",
                f"data.{key}.classes",
            )
    mixed = len(labelled) == 1  # one of source and val is a folder dataset, the other has Cityscapes' classes
    if mixed or len({c.names for c in counts.values()}) > 1:
        raise ConfigKeyError(
            "config key 'data.val': the source and val datasets must have the same classes (the same classes file, or "
            "both Cityscapes')",
            "data.val",
            "data.source",
        )
    return next(iter(counts.values())).names if counts else CLASS_NAMES
