"""GTA5 (Richter et al. 2016): ``root/images/00001.png`` + ``root/labels/00001.png`` (Cityscapes labelIds).

About two dozen of the real GTA5 images differ in size from their label map; training resizes both to
1280x720 (with a warning) and ``camix data check`` reports them.
"""

from __future__ import annotations

from pathlib import Path

from camix.config import DatasetConfig
from camix.data.transforms import (
    LABEL_IDS,
    Sample,
    dataset_root,
    glob_images,
    pair_by_path,
    require_dir,
    select_images,
)

LAYOUT = "ROOT/images/00001.png + ROOT/labels/00001.png (8-bit Cityscapes labelIds)"


def find_samples(cfg: DatasetConfig) -> list[Sample]:
    """The image/label pairs of a GTA5 folder, sorted by name (after ``list_file`` and ``limit``).

    Label files are not required to exist here: loaders and checks decide what a missing one means.
    """
    root = dataset_root(cfg.root, LAYOUT)
    image_dir = require_dir(root / "images", LAYOUT)
    label_dir = require_dir(root / "labels", LAYOUT)
    images = select_images(glob_images(image_dir, "*.png", LAYOUT), image_dir, cfg.list_file, cfg.limit)
    return pair_by_path(images, image_dir, label_dir, root, LABEL_IDS)


def find_labels(cfg: DatasetConfig) -> dict[Path, Path]:
    """Every label file -> the image it belongs to (same name under ``images/``), present or not."""
    root = dataset_root(cfg.root, LAYOUT)
    label_dir = require_dir(root / "labels", LAYOUT)
    return {label: root / "images" / label.name for label in sorted(label_dir.glob("*.png"))}
