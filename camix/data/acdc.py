"""ACDC (Sakaridis et al., ICCV 2021) and Dark Zurich (Sakaridis et al., ICCV 2019): anonymised images
``*_rgb_anon.png`` and labels ``*_gt_labelTrainIds.png`` (``*_gt_labelIds.png`` accepted) in mirrored trees.

* ACDC: ``root/rgb_anon/<condition>/<split>/<sequence>/<name>_rgb_anon.png`` with
  ``root/gt/<condition>/<split>/<sequence>/<name>_gt_labelTrainIds.png``; conditions fog, night, rain, snow (all by
  default, ``conditions`` selects); train and val are labelled, test is not.
* Dark Zurich: ``root/rgb_anon/<split>/<time>/<sequence>/<name>_rgb_anon.png``; train (day, twilight, night) is
  unlabelled, val (night, 50 images) has ``root/gt/val/night/<sequence>/<name>_gt_labelTrainIds.png``; test is
  unlabelled. ``conditions`` selects the times of day (night by default: the target of Cityscapes -> Dark Zurich).

Images are 1920x1080; DAFormer, HRDA and MIC train on them resized to 960x540 (``size: [960, 540]``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from camix.config import DatasetConfig
from camix.data.transforms import LABEL_IDS, TRAIN_IDS, Sample, dataset_root, glob_images, require_dir, select_images
from camix.errors import ConfigError

IMAGE_SUFFIX = "_rgb_anon.png"
LABEL_SUFFIXES = ("_gt_labelTrainIds.png", "_gt_labelIds.png")  # the first present is read
ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
DZ_CONDITIONS = ("day", "twilight", "night")
ACDC_LAYOUT = (
    "ROOT/rgb_anon/CONDITION/SPLIT/SEQUENCE/NAME_rgb_anon.png + "
    "ROOT/gt/CONDITION/SPLIT/SEQUENCE/NAME_gt_labelTrainIds.png (CONDITION: fog, night, rain, snow)"
)
DZ_LAYOUT = (
    "ROOT/rgb_anon/SPLIT/TIME/SEQUENCE/NAME_rgb_anon.png (+ ROOT/gt/val/night/SEQUENCE/NAME_gt_labelTrainIds.png; "
    "TIME: day, twilight, night)"
)

Folders = Callable[[Path, str, str], tuple[Path, Path]]  # (root, split, condition) -> (image folder, label folder)


def conditions_of(cfg: DatasetConfig, known: tuple[str, ...], default: tuple[str, ...]) -> tuple[str, ...]:
    """The selected conditions (``cfg.conditions`` or ``default``); ConfigError for an unknown one."""
    chosen = cfg.conditions or default
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise ConfigError(
            f"config key 'conditions' of dataset {cfg.name}: {unknown[0]!r} is not one of {', '.join(known)}"
        )
    return chosen


def find_anon_samples(cfg: DatasetConfig, conditions: tuple[str, ...], folders: Folders, layout: str) -> list[Sample]:
    """The pairs of every selected condition, sorted by condition then path (after ``list_file``/``limit``; a list
    file names images relative to ``root/rgb_anon``).

    The label is the first of :data:`LABEL_SUFFIXES` present, else the (missing) labelTrainIds path: loaders
    and checks decide what a missing label means (test splits and Dark Zurich's train split have none).
    """
    root = dataset_root(cfg.root, layout)
    require_dir(root / "rgb_anon", layout)
    found: list[Path] = []
    for condition in conditions:
        image_dir = require_dir(folders(root, cfg.split, condition)[0], layout)
        found += glob_images(image_dir, f"**/*{IMAGE_SUFFIX}", layout)
    images = select_images(found, root / "rgb_anon", cfg.list_file, cfg.limit)
    return [_sample(path, root, *_folders_of(path, root, cfg.split, conditions, folders)) for path in images]


def _folders_of(path: Path, root: Path, split: str, conditions: tuple[str, ...], folders: Folders) -> tuple[Path, Path]:
    """The (image folder, label folder) of the condition that ``path`` belongs to."""
    for condition in conditions:
        image_dir, label_dir = folders(root, split, condition)
        if path.is_relative_to(image_dir):
            return image_dir, label_dir
    return path.parent, root / "gt"


def _sample(path: Path, root: Path, image_dir: Path, label_dir: Path) -> Sample:
    relative = path.relative_to(image_dir) if path.is_relative_to(image_dir) else Path(path.name)
    stem = relative.name.removesuffix(IMAGE_SUFFIX)
    candidates = [label_dir / relative.parent / f"{stem}{suffix}" for suffix in LABEL_SUFFIXES]
    label = next((c for c in candidates if c.is_file()), candidates[0])
    label_format = LABEL_IDS if label.name.endswith("_gt_labelIds.png") else TRAIN_IDS
    return Sample(image=path, label=label, name=str(path.relative_to(root)), label_format=label_format)


def find_anon_labels(
    cfg: DatasetConfig, conditions: tuple[str, ...], folders: Folders, layout: str
) -> dict[Path, Path]:
    """Every label file (labelTrainIds, or labelIds where no labelTrainIds sits beside it) -> its image."""
    root = dataset_root(cfg.root, layout)
    found: dict[Path, Path] = {}
    seen: set[Path] = set()
    for condition in conditions:
        image_dir, label_dir = folders(root, cfg.split, condition)
        for suffix in LABEL_SUFFIXES:
            for label in sorted(label_dir.rglob(f"*{suffix}")) if label_dir.is_dir() else []:
                relative = label.relative_to(label_dir)
                image = image_dir / relative.parent / f"{relative.name.removesuffix(suffix)}{IMAGE_SUFFIX}"
                if image not in seen:
                    found[label] = image
                    seen.add(image)
    return found


def _acdc_folders(root: Path, split: str, condition: str) -> tuple[Path, Path]:
    return root / "rgb_anon" / condition / split, root / "gt" / condition / split


def _dz_folders(root: Path, split: str, condition: str) -> tuple[Path, Path]:
    return root / "rgb_anon" / split / condition, root / "gt" / split / condition


def find_samples(cfg: DatasetConfig) -> list[Sample]:
    """ACDC's pairs of one split over the selected conditions."""
    conditions = conditions_of(cfg, ACDC_CONDITIONS, ACDC_CONDITIONS)
    return find_anon_samples(cfg, conditions, _acdc_folders, ACDC_LAYOUT)


def find_labels(cfg: DatasetConfig) -> dict[Path, Path]:
    """ACDC's label files of one split -> their images."""
    conditions = conditions_of(cfg, ACDC_CONDITIONS, ACDC_CONDITIONS)
    return find_anon_labels(cfg, conditions, _acdc_folders, ACDC_LAYOUT)


def find_dz_samples(cfg: DatasetConfig) -> list[Sample]:
    """Dark Zurich's pairs of one split over the selected times of day."""
    conditions = conditions_of(cfg, DZ_CONDITIONS, ("night",))
    return find_anon_samples(cfg, conditions, _dz_folders, DZ_LAYOUT)


def find_dz_labels(cfg: DatasetConfig) -> dict[Path, Path]:
    """Dark Zurich's label files of one split -> their images."""
    conditions = conditions_of(cfg, DZ_CONDITIONS, ("night",))
    return find_anon_labels(cfg, conditions, _dz_folders, DZ_LAYOUT)
