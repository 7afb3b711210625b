"""SYNTHIA-RAND-CITYSCAPES: ``root/RGB/0000000.png`` + ``root/GT/LABELS/0000000.png``.

The original labels are 16-bit, 3-channel PNGs with the SYNTHIA class id in the first (R) channel (the
instance id lives in G). PIL opens such files as 8-bit RGB by keeping only the **high** byte of every
sample, which turns every class id into 0, so this module decodes them itself: it parses the PNG chunks
and lets PIL's zlib/unfiltering decoder produce the low and high bytes separately (fast, C code), with
an independent pure-numpy reference decoder in the tests (tests/data/_realdata.py).

The 8-bit ``root/synthia_mapped_to_cityscapes/0000000.png`` variant used by BDL/DACS holds the same
SYNTHIA ids and is used when ``GT/LABELS`` is absent. Ids map to trainIds through ``SYNTHIA_TO_TRAIN_ID``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from camix.config import DatasetConfig
from camix.data.transforms import (
    LabelFormat,
    Sample,
    dataset_root,
    glob_images,
    make_lut,
    pair_by_path,
    require_dir,
    select_images,
)
from camix.errors import DataError
from camix.labels import SYNTHIA_TO_TRAIN_ID

LAYOUT = (
    "ROOT/RGB/0000000.png + ROOT/GT/LABELS/0000000.png (16-bit RGB, class id in R) "
    "or ROOT/synthia_mapped_to_cityscapes/0000000.png (8-bit SYNTHIA ids)"
)
LABEL_DIRS = (Path("GT") / "LABELS", Path("synthia_mapped_to_cityscapes"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUM_SYNTHIA_IDS = 23  # SYNTHIA-RAND-CITYSCAPES class ids 0 (void) .. 22 (lanemarking)


def find_samples(cfg: DatasetConfig) -> list[Sample]:
    """The image/label pairs of a SYNTHIA folder, sorted by name (after ``list_file`` and ``limit``)."""
    root = dataset_root(cfg.root, LAYOUT)
    image_dir = require_dir(root / "RGB", LAYOUT)
    label_dir = next((root / d for d in LABEL_DIRS if (root / d).is_dir()), None)
    if label_dir is None:
        require_dir(root / LABEL_DIRS[0], LAYOUT)  # raises, naming what the root holds
        raise AssertionError  # pragma: no cover
    images = select_images(glob_images(image_dir, "*.png", LAYOUT), image_dir, cfg.list_file, cfg.limit)
    return pair_by_path(images, image_dir, label_dir, root, SYNTHIA_IDS)


def find_labels(cfg: DatasetConfig) -> dict[Path, Path]:
    """Every label file -> the image it belongs to (same name under ``RGB/``), present or not."""
    root = dataset_root(cfg.root, LAYOUT)
    label_dir = next((root / d for d in LABEL_DIRS if (root / d).is_dir()), None)
    if label_dir is None:
        return {}
    return {label: root / "RGB" / label.name for label in sorted(label_dir.glob("*.png"))}


def read_synthia_label(path: Path) -> np.ndarray:
    """Decode a SYNTHIA label file into its class ids (first channel), uint16 or uint8 ``[H, W]``.

    Accepts 16-bit RGB PNGs (the original GT/LABELS), and 8-bit L/P/RGB or 16-bit grayscale files.

    Raises:
        DataError: missing, truncated or undecodable files.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    try:
        if data[:8] == PNG_SIGNATURE and _ihdr(data)[2:4] == (16, 2):
            return decode_png_rgb16(data)[:, :, 0]
        return _read_with_pil(path)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, zlib.error, struct.error) as exc:
        raise DataError(f"{path}: cannot decode label map ({exc}); re-extract or replace the file") from None


def _read_with_pil(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        array = np.asarray(img)
    return array[:, :, 0] if array.ndim == 3 else array


SYNTHIA_IDS = LabelFormat("SYNTHIA ids", read_synthia_label, make_lut(SYNTHIA_TO_TRAIN_ID, range(NUM_SYNTHIA_IDS)))
"""SYNTHIA class ids 0..22 -> trainIds (no terrain, truck or train)."""


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk after the PNG signature, up to IEND."""
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        payload = data[pos + 8 : pos + 8 + length]
        if len(payload) != length:
            raise ValueError(f"truncated PNG chunk {kind!r}")
        chunks.append((kind, payload))
        pos += 12 + length
        if kind == b"IEND":
            return chunks
    raise ValueError("truncated PNG (no IEND chunk)")


def _ihdr(data: bytes) -> tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace) from the IHDR chunk at the start of a PNG."""
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        raise ValueError("PNG without a valid IHDR chunk")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace


def decode_png_rgb16(data: bytes) -> np.ndarray:
    """Decode a 16-bit RGB PNG (bytes) into uint16 ``[H, W, 3]`` with PIL's zlib/unfiltering decoder."""
    width, height, _, _, interlace = _ihdr(data)
    stream = b"".join(payload for kind, payload in _chunks(data) if kind == b"IDAT")
    low = np.asarray(Image.frombytes("RGB", (width, height), stream, "zip", "RGB;16L", interlace))
    high = np.asarray(Image.frombytes("RGB", (width, height), stream, "zip", "RGB;16B", interlace))
    return (high.astype(np.uint16) << 8) | low
