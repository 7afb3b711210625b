"""Tiny format-exact dataset fixtures for the GTA5, SYNTHIA and Cityscapes loader tests (written in tmp_path)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# labelIds of a GTA5/Cityscapes fixture: rows of sky (23), building (11), car (26), road (7); column 0 unlabeled (0)
BAND_LABEL_IDS = (23, 11, 26, 7)
BAND_TRAIN_IDS = (10, 2, 13, 0)
# SYNTHIA ids: sky (1), building (2), car (8), road (3); column 0 void (0)
BAND_SYNTHIA_IDS = (1, 2, 8, 3)


def band_labels(width: int, height: int, ids: tuple[int, ...], void: int = 0) -> np.ndarray:
    """uint8 [H, W]: horizontal bands of ``ids`` (top to bottom), first column ``void``."""
    rows = np.arange(height) * len(ids) // height
    label = np.asarray(ids, dtype=np.uint8)[rows][:, None].repeat(width, axis=1)
    label[:, 0] = void
    return label


def noise_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3] of smooth-ish random content (gradients plus noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], axis=-1)
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _filter_row(kind: int, row: np.ndarray, up: np.ndarray, bpp: int) -> np.ndarray:
    left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
    upleft = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
    predictor = {0: 0 * row, 1: left, 2: up, 3: (left + up) // 2, 4: _paeth(left, up, upleft)}[kind]
    return ((row - predictor) % 256).astype(np.uint8)


def encode_png_rgb16(array: np.ndarray, filters: tuple[int, ...] = (0, 1, 2, 3, 4)) -> bytes:
    """Our own encoder of a uint16 [H, W, 3] array as a 16-bit RGB PNG, cycling the row filters ``filters``."""
    height, width, _ = array.shape
    rows = array.astype(">u2").view(np.uint8).reshape(height, width * 6).astype(np.int64)
    out, up = [], np.zeros(width * 6, np.int64)
    for r in range(height):
        kind = filters[r % len(filters)]
        out.append(bytes([kind]) + _filter_row(kind, rows[r], up, 6).tobytes())
        up = rows[r]
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    body = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(out)))
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IEND", b"")


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write a uint8 array as PNG (creating folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)
    return path


def make_gta5(root: Path, count: int = 3, size: tuple[int, int] = (40, 24)) -> Path:
    """A GTA5 folder of ``count`` pairs of (width, height) ``size`` with band labels (palette PNGs, like GTA5)."""
    for i in range(count):
        save(root / "images" / f"{i + 1:05d}.png", noise_image(*size, seed=i))
        label = Image.fromarray(band_labels(*size, BAND_LABEL_IDS), mode="L").convert("P")
        label.putpalette([v for k in range(256) for v in (k, 255 - k, k // 2)])
        (root / "labels").mkdir(parents=True, exist_ok=True)
        label.save(root / "labels" / f"{i + 1:05d}.png")
    return root


def make_cityscapes(
    root: Path,
    split: str = "val",
    cities: tuple[str, ...] = ("aachen", "bremen"),
    size: tuple[int, int] = (32, 16),
    train_ids: bool = False,
) -> Path:
    """A Cityscapes split with one image per city and labelIds (or labelTrainIds) band labels."""
    for i, city in enumerate(cities):
        stem = f"{city}_000000_{i:06d}"
        save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", noise_image(*size, seed=10 + i))
        if train_ids:
            label = band_labels(*size, BAND_TRAIN_IDS, void=255)
            save(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", label)
        else:
            save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", band_labels(*size, BAND_LABEL_IDS))
    return root


def make_synthia(root: Path, count: int = 2, size: tuple[int, int] = (20, 12), mapped: bool = False) -> Path:
    """A SYNTHIA folder: 16-bit RGB GT/LABELS (instance ids > 255 in G) or the 8-bit mapped variant."""
    for i in range(count):
        save(root / "RGB" / f"{i:07d}.png", noise_image(*size, seed=20 + i))
        ids = band_labels(*size, BAND_SYNTHIA_IDS)
        if mapped:
            save(root / "synthia_mapped_to_cityscapes" / f"{i:07d}.png", ids)
            continue
        label = np.stack([ids.astype(np.uint16), 1000 + np.zeros_like(ids, np.uint16) + i, 0 * ids], axis=-1)
        path = root / "GT" / "LABELS" / f"{i:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_png_rgb16(label))
    return root


def decode_png_rgb16_numpy(stream: bytes, width: int, height: int) -> np.ndarray:
    """Pure numpy decoder of a non-interlaced 16-bit RGB IDAT stream (PNG filters 0-4) -> uint16 ``[H, W, 3]``."""
    bpp, stride = 6, width * 6
    raw = np.frombuffer(zlib.decompress(stream), dtype=np.uint8)
    if raw.size != height * (stride + 1):
        raise ValueError(f"PNG data holds {raw.size} bytes, expected {height * (stride + 1)}")
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for r in range(height):
        out[r] = _unfilter_row(int(rows[r, 0]), rows[r, 1:], previous, bpp)
        previous = out[r]
    return out.reshape(height, width, 3, 2).astype(np.uint16) @ np.array([256, 1], dtype=np.uint16)


def _unfilter_row(kind: int, line: np.ndarray, up: np.ndarray, bpp: int) -> np.ndarray:
    """Undo one PNG filter on one row (see the PNG specification, section 9)."""
    if kind == 0:
        return line.copy()
    if kind == 1:  # Sub: running sum per byte position within a pixel, modulo 256
        return (np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.int64) % 256).astype(np.uint8).ravel()
    if kind == 2:  # Up
        return line + up
    if kind not in (3, 4):
        raise ValueError(f"unknown PNG filter type {kind}")
    return _unfilter_sequential(kind, line.reshape(-1, bpp).astype(np.int64), up.reshape(-1, bpp).astype(np.int64))


def _unfilter_sequential(kind: int, line: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Average (3) and Paeth (4) depend on the decoded left pixel: one step per pixel, vectorised over bytes."""
    out = np.zeros_like(line)
    left = upleft = np.zeros(line.shape[1], dtype=np.int64)
    for i in range(line.shape[0]):
        if kind == 3:
            predictor = (left + up[i]) // 2
        else:
            p = left + up[i] - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - up[i]), np.abs(p - upleft)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up[i], upleft))
        out[i] = (line[i] + predictor) % 256
        left, upleft = out[i], up[i]
    return out.astype(np.uint8).ravel()
