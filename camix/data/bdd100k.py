"""BDD100K semantic segmentation (Yu et al., CVPR 2020), an evaluation set with Cityscapes' 19 classes:
``root/images/10k/{train,val}/<name>.jpg`` with ``root/labels/sem_seg/masks/{train,val}/<name>.png`` (train ids
0..18, 255 = ignore). Images are 1280x720; the test split has images only.
"""

from __future__ import annotations

from pathlib import Path

from camix.config import DatasetConfig
from camix.data.transforms import TRAIN_IDS, Sample, dataset_root, glob_images, require_dir, select_images

LAYOUT = "ROOT/images/10k/SPLIT/NAME.jpg + ROOT/labels/sem_seg/masks/SPLIT/NAME.png (train ids 0..18, 255 ignore)"


def find_samples(cfg: DatasetConfig) -> list[Sample]:
    """The image/label pairs of one split, sorted by name (after ``list_file`` and ``limit``)."""
    root = dataset_root(cfg.root, LAYOUT)
    image_dir = require_dir(root / "images" / "10k" / cfg.split, LAYOUT)
    label_dir = root / "labels" / "sem_seg" / "masks" / cfg.split
    images = select_images(glob_images(image_dir, "*.jpg", LAYOUT), image_dir, cfg.list_file, cfg.limit)
    return [
        Sample(image=p, label=label_dir / f"{p.stem}.png", name=str(p.relative_to(root)), label_format=TRAIN_IDS)
        for p in images
    ]


def find_labels(cfg: DatasetConfig) -> dict[Path, Path]:
    """Every mask of one split -> the image it belongs to."""
    root = dataset_root(cfg.root, LAYOUT)
    label_dir = root / "labels" / "sem_seg" / "masks" / cfg.split
    image_dir = root / "images" / "10k" / cfg.split
    labels = sorted(label_dir.glob("*.png")) if label_dir.is_dir() else []
    return {label: image_dir / f"{label.stem}.jpg" for label in labels}
