"""Cityscapes: ``root/leftImg8bit/{split}/<city>/<name>_leftImg8bit.png`` with
``root/gtFine/{split}/<city>/<name>_gtFine_labelIds.png`` (``*_gtFine_labelTrainIds.png`` accepted too).

Training uses ``scale`` (1.0 keeps 2048x1024, 0.5 is DACS's 1024x512); validation configs set
``size: [1024, 512]``. With ``label_size: native`` the validation labels stay at 2048x1024.
"""

from __future__ import annotations

from pathlib import Path

from camix.config import DatasetConfig
from camix.data.transforms import LABEL_IDS, TRAIN_IDS, Sample, dataset_root, glob_images, require_dir, select_images

LAYOUT = (
    "ROOT/leftImg8bit/SPLIT/CITY/NAME_leftImg8bit.png + ROOT/gtFine/SPLIT/CITY/NAME_gtFine_labelIds.png "
    "(or NAME_gtFine_labelTrainIds.png)"
)
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIXES = ("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png")


def find_samples(cfg: DatasetConfig) -> list[Sample]:
    """The image/label pairs of one Cityscapes split, sorted by city and name (after ``list_file``/``limit``).

    A label is ``*_gtFine_labelIds.png`` when present, else ``*_gtFine_labelTrainIds.png`` when present, else
    the (missing) labelIds path: loaders and checks decide what a missing label means.
    """
    root = dataset_root(cfg.root, LAYOUT)
    image_dir = require_dir(root / "leftImg8bit" / cfg.split, LAYOUT)
    label_dir = require_dir(root / "gtFine" / cfg.split, LAYOUT)
    found = glob_images(image_dir, f"*/*{IMAGE_SUFFIX}", LAYOUT)
    images = select_images(found, image_dir, cfg.list_file, cfg.limit)
    return [_sample(path, root, image_dir, label_dir) for path in images]


def _sample(path: Path, root: Path, image_dir: Path, label_dir: Path) -> Sample:
    relative = path.relative_to(image_dir)
    stem = relative.name.removesuffix(IMAGE_SUFFIX).removesuffix(".png")
    label_ids = label_dir / relative.parent / f"{stem}_gtFine_labelIds.png"
    train_ids = label_dir / relative.parent / f"{stem}_gtFine_labelTrainIds.png"
    if not label_ids.is_file() and train_ids.is_file():
        return Sample(image=path, label=train_ids, name=str(path.relative_to(root)), label_format=TRAIN_IDS)
    return Sample(image=path, label=label_ids, name=str(path.relative_to(root)), label_format=LABEL_IDS)


def find_labels(cfg: DatasetConfig) -> dict[Path, Path]:
    """Every label file of one split (labelIds and labelTrainIds) -> the image it belongs to, present or not."""
    root = dataset_root(cfg.root, LAYOUT)
    label_dir = require_dir(root / "gtFine" / cfg.split, LAYOUT)
    image_dir = root / "leftImg8bit" / cfg.split
    found = {}
    for suffix in LABEL_SUFFIXES:
        for label in sorted(label_dir.glob(f"*/*{suffix}")):
            relative = label.relative_to(label_dir)
            found[label] = image_dir / relative.parent / f"{relative.name.removesuffix(suffix)}{IMAGE_SUFFIX}"
    return found
