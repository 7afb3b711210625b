"""Format-exact fixtures of the ACDC, Dark Zurich, BDD100K and folder layouts (file names as the real datasets
name them), written in tmp_path; label content: the bands of :mod:`_realdata`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _realdata import BAND_LABEL_IDS, BAND_TRAIN_IDS, band_labels, noise_image, save
from PIL import Image

# ACDC: (condition, split, sequence, frame); the real files are GOPR0475_frame_000247_rgb_anon.png and the like
ACDC_FRAMES = (
    ("fog", "train", "GOPR0475", "000247"),
    ("fog", "val", "GOPR0476", "000855"),
    ("night", "train", "GOPR0351", "000159"),
    ("night", "val", "GOPR0355", "000357"),
    ("rain", "train", "GOPR0572", "000145"),
    ("snow", "train", "GOPR0122", "000460"),
    ("snow", "test", "GP010122", "000001"),
)


def band_train_ids(width: int, height: int) -> np.ndarray:
    """The trainIds of every fixture's labels (column 0 ignored)."""
    return band_labels(width, height, BAND_TRAIN_IDS, void=255).astype(np.int64)


def write_anon_pair(image_dir: Path, label_dir: Path | None, stem: str, size: tuple[int, int], seed: int) -> None:
    """``stem_rgb_anon.png`` and, with a label folder, its ``_gt_labelTrainIds``/``_gt_labelIds``/``_gt_labelColor``
    siblings (the colour file is never read)."""
    save(image_dir / f"{stem}_rgb_anon.png", noise_image(*size, seed=seed))
    if label_dir is None:
        return
    save(label_dir / f"{stem}_gt_labelTrainIds.png", band_labels(*size, BAND_TRAIN_IDS, void=255))
    save(label_dir / f"{stem}_gt_labelIds.png", band_labels(*size, BAND_LABEL_IDS))
    save(label_dir / f"{stem}_gt_labelColor.png", noise_image(*size, seed=seed + 1))


def make_acdc(root: Path, size: tuple[int, int] = (32, 18)) -> Path:
    """An ACDC tree: four conditions, train/val labelled, a test split without labels."""
    for i, (condition, split, sequence, frame) in enumerate(ACDC_FRAMES):
        image_dir = root / "rgb_anon" / condition / split / sequence
        label_dir = None if split == "test" else root / "gt" / condition / split / sequence
        write_anon_pair(image_dir, label_dir, f"{sequence}_frame_{frame}", size, seed=30 + i)
    return root


def make_dark_zurich(root: Path, size: tuple[int, int] = (32, 18)) -> Path:
    """A Dark Zurich tree: unlabelled train day/twilight/night, two labelled val night images."""
    for i, (time, sequence) in enumerate((("day", "GOPR0351"), ("twilight", "GOPR0347"), ("night", "GOPR0348"))):
        for frame in ("000003", "000004"):
            image_dir = root / "rgb_anon" / "train" / time / sequence
            write_anon_pair(image_dir, None, f"{sequence}_frame_{frame}", size, seed=40 + i)
    for i, frame in enumerate(("000321", "000322")):
        image_dir = root / "rgb_anon" / "val" / "night" / "GOPR0356"
        label_dir = root / "gt" / "val" / "night" / "GOPR0356"
        write_anon_pair(image_dir, label_dir, f"GOPR0356_frame_{frame}", size, seed=50 + i)
    return root


BDD_NAMES = ("0004a4c0-d4dff0ad", "00054602-3bf57337")


def make_bdd100k(root: Path, size: tuple[int, int] = (32, 18)) -> Path:
    """BDD100K's 10k segmentation images (JPEG) and train-id masks, train and val."""
    for split in ("train", "val"):
        for i, name in enumerate(BDD_NAMES):
            path = root / "images" / "10k" / split / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noise_image(*size, seed=60 + i)).save(path, quality=95)
            save(root / "labels" / "sem_seg" / "masks" / split / f"{name}.png", band_labels(*size, BAND_TRAIN_IDS, 255))
    return root


# a folder dataset of three classes: raw ids 10 (sky), 20 (ground), 30 (robot), 0 = ignore
FOLDER_IDS = "names: [sky, ground, robot]\nids: {0: 255, 10: 0, 20: 1, 30: 2}\n"
FOLDER_COLOURS = 'names: [sky, ground, robot]\ncolors: {"0,0,0": 255, "70,130,180": 0, "#804080": 1, "255,0,0": 2}\n'
RAW_BANDS = (10, 20, 30, 20)  # top to bottom; column 0 is 0 (ignored)
COLOUR_OF = {0: (0, 0, 0), 10: (70, 130, 180), 20: (128, 64, 128), 30: (255, 0, 0)}
FOLDER_CLASSES = (0, 1, 2, 1)  # the class index of each band


def folder_class_ids(width: int, height: int) -> np.ndarray:
    """The class indices of every folder fixture label (column 0 ignored)."""
    return band_labels(width, height, FOLDER_CLASSES, void=255).astype(np.int64)


def make_folder(root: Path, colours: bool = False, size: tuple[int, int] = (24, 16), count: int = 2) -> Path:
    """``root/images/{train,val}/cam0/frame_K.jpg`` + ``root/labels/{train,val}/cam0/frame_K_mask.png`` and the
    classes file ``root/classes.yaml`` (raw ids, or colours with ``colours``)."""
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.yaml").write_text(FOLDER_COLOURS if colours else FOLDER_IDS)
    raw = band_labels(*size, RAW_BANDS)
    label = np.stack([np.asarray(COLOUR_OF[int(v)], np.uint8) for v in raw.ravel()]).reshape(*raw.shape, 3)
    for split in ("train", "val"):
        for i in range(count):
            image = root / "images" / split / "cam0" / f"frame_{i}.jpg"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(noise_image(*size, seed=70 + i)).save(image, quality=95)
            save(root / "labels" / split / "cam0" / f"frame_{i}_mask.png", label if colours else raw)
    return root


# ----- full size, for the smoke runs (slow tests) -----------------------------------------------------------------
_FULL_IDS = np.array([7, 8, 11, 17, 19, 20, 21, 23, 24, 25, 26, 28, 32, 33], np.uint8)  # Cityscapes labelIds


def _smooth_image(width: int, height: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 255 // width + 20 * seed) % 256, y * 255 // height, ((x + y) // 4 + seed) % 256], -1).astype(
        np.uint8
    )


def _block_labels(width: int, height: int, seed: int) -> np.ndarray:
    blocks = np.random.default_rng(seed).choice(_FULL_IDS, size=(height // 64 + 1, width // 64 + 1))
    return blocks.repeat(64, 0).repeat(64, 1)[:height, :width].astype(np.uint8)


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)


def make_full_size(root: Path) -> Path:
    """GTA5 (4 pairs, 1914x1052, palette labels), Cityscapes (4 train + 2 val, 2048x1024) and ACDC (one train and
    one val image per condition, 1920x1080) at the real datasets' sizes and names."""
    to_train = np.full(256, 255, np.uint8)
    to_train[[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]] = np.arange(19)
    for i in range(4):
        _write(root / "gta" / "images" / f"{i + 1:05d}.png", _smooth_image(1914, 1052, i))
        label = Image.fromarray(_block_labels(1914, 1052, i)).convert("P")
        label.putpalette([v for k in range(256) for v in (k, 255 - k, k // 2)])
        (root / "gta" / "labels").mkdir(parents=True, exist_ok=True)
        label.save(root / "gta" / "labels" / f"{i + 1:05d}.png")
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            stem = f"aachen_000000_{i:06d}"
            _write(root / f"cityscapes/leftImg8bit/{split}/aachen/{stem}_leftImg8bit.png", _smooth_image(2048, 1024, i))
            _write(root / f"cityscapes/gtFine/{split}/aachen/{stem}_gtFine_labelIds.png", _block_labels(2048, 1024, i))
    for c, condition in enumerate(ACDC_CONDITIONS):
        for split, frame in (("train", "000247"), ("val", "000855")):
            sequence = f"GOPR047{c}"
            stem = f"{sequence}_frame_{frame}"
            image = _smooth_image(1920, 1080, c)
            _write(root / f"acdc/rgb_anon/{condition}/{split}/{sequence}/{stem}_rgb_anon.png", image)
            labels = to_train[_block_labels(1920, 1080, c)]
            _write(root / f"acdc/gt/{condition}/{split}/{sequence}/{stem}_gt_labelTrainIds.png", labels)
    return root


ACDC_CONDITIONS = ("fog", "night", "rain", "snow")
