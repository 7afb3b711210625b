"""Shared loading pieces for the real datasets: decoding, label lookup tables, resizing, cropping.

Conventions (docs/datasets.md):

* Images become float32 ``Tensor[3, H, W]`` in **BGR** order minus the Caffe mean, 0-255 scale, no std division.
* Label maps are decoded to raw ids and mapped to trainIds 0..18 (255 = ignore) through 256-entry numpy
  lookup tables, so no Python loop ever touches a pixel.
* Images are resized **bicubic** with PIL (antialiased when shrinking; what DACS/AdaptSegNet do for the
  source images), labels **nearest** by index arithmetic in numpy. Nearest indexing is exact and
  separable, so cropping a label after resizing costs only the crop's pixels.
* A crop box is ``(top, left, height, width)`` in the resized image. When the resized image is smaller than
  the crop in one dimension, that offset is 0 and the crop is padded at the bottom/right (image 0 after
  mean subtraction, label 255); :func:`crop_to_box` applies a box (with the same padding) to any other
  map, e.g. the spatial prior.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from camix.errors import DataError
from camix.labels import CAFFE_MEAN_BGR, IGNORE_INDEX, LABEL_ID_TO_TRAIN_ID, NUM_CLASSES

Box = tuple[int, int, int, int]  # (top, left, height, width)
SizeWH = tuple[int, int]  # (width, height)

UNKNOWN_ID = 254
"""Marks raw label ids that a lookup table does not know (never a trainId; loaders raise on it)."""

CHECK_HINT = "run `camix data check` to list every problem"
_MEAN_BGR = np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)


def make_lut(mapping: np.ndarray, known_ids: Iterable[int]) -> np.ndarray:
    """A uint8[256] lookup table: ``mapping`` for ``known_ids``, :data:`UNKNOWN_ID` for every other id."""
    lut = np.full(256, UNKNOWN_ID, dtype=np.uint8)
    known = np.asarray(list(known_ids), dtype=np.int64)
    lut[known] = mapping[known]
    return lut


@dataclass(frozen=True, eq=False)
class LabelFormat:
    """How one kind of label file is read and mapped to trainIds.

    Attributes:
        name: a short description used in messages (``"Cityscapes labelIds"``).
        read: decodes a file into a 2-D integer array of raw ids (uint8 or uint16).
        lut: uint8[256] raw id -> trainId, :data:`UNKNOWN_ID` for ids the format does not define.
    """

    name: str
    read: Callable[[Path], np.ndarray]
    lut: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Sample:
    """One image/label pair: absolute paths and the image path relative to the dataset root."""

    image: Path
    label: Path
    name: str
    label_format: LabelFormat


IMAGE_MODES = ("RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr")
"""PIL modes that ``convert("RGB")`` maps correctly to 8-bit RGB. Others (16-bit ``I;16``, 32-bit ``I``, float
``F``) would be clipped to 0..255 (a 16-bit photo turns almost all white), so they are refused."""


def check_image_mode(path: Path, mode: str) -> None:
    """Raise a DataError for an image mode that camix would not read correctly."""
    if mode not in IMAGE_MODES:
        raise DataError(
            f"{path}: image mode {mode} (16-bit, 32-bit or float pixels) is not supported; convert it to 8-bit "
            f"RGB (e.g. `convert in.png -depth 8 out.png`), and {CHECK_HINT}"
        )


def open_image(path: Path) -> Image.Image:
    """Decode an image file completely into an RGB PIL image.

    Raises:
        DataError: the file is missing, truncated, not an image, or in a mode not in :data:`IMAGE_MODES`.
    """
    try:
        with Image.open(path) as img:
            check_image_mode(path, img.mode)
            img.load()
            return img if img.mode == "RGB" else img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc}); re-extract or replace the file") from None


def image_size(path: Path) -> SizeWH:
    """The (width, height) of an image file from its header (no decoding); DataError for modes camix cannot read."""
    try:
        with Image.open(path) as img:
            check_image_mode(path, img.mode)
            return img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read image header ({exc}); re-extract or replace the file") from None


def label_size(path: Path) -> SizeWH:
    """The (width, height) of a label file from its header (no decoding); DataError when it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read label header ({exc}); re-extract or replace the file") from None


def read_single_channel(path: Path) -> np.ndarray:
    """Decode an 8-bit single-channel label PNG (mode ``L`` or palette ``P``) into its raw ids.

    Raises:
        DataError: the file is missing, undecodable or has colour channels (a colour-coded label map).
    """
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "P"):
                raise DataError(
                    f"{path}: label map has mode {img.mode}, expected 8-bit single-channel ids "
                    "(is this a colour-coded label image?)"
                )
            return np.asarray(img)
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode label map ({exc}); re-extract or replace the file") from None


LABEL_IDS = LabelFormat("Cityscapes labelIds", read_single_channel, make_lut(LABEL_ID_TO_TRAIN_ID, [*range(34), 255]))
"""GTA5 labels and Cityscapes ``*_gtFine_labelIds.png``: ids 0..33 (255 tolerated as ignore)."""

TRAIN_IDS = LabelFormat(
    "Cityscapes labelTrainIds",
    read_single_channel,
    make_lut(np.arange(256, dtype=np.uint8), [*range(NUM_CLASSES), IGNORE_INDEX]),
)
"""Cityscapes ``*_gtFine_labelTrainIds.png``: already trainIds 0..18 and 255."""


def map_labels(raw: np.ndarray, fmt: LabelFormat, path: Path) -> np.ndarray:
    """Map raw ids to trainIds (uint8) through the format's lookup table.

    Raises:
        DataError: the map holds ids the format does not define.
    """
    if raw.dtype != np.uint8:
        if raw.size and int(raw.max()) > 255:
            raise _unknown_ids(path, fmt, np.unique(raw[raw > 255])[:8])
        raw = raw.astype(np.uint8)
    mapped = fmt.lut[raw]
    if (mapped == UNKNOWN_ID).any():
        raise _unknown_ids(path, fmt, np.unique(raw[mapped == UNKNOWN_ID])[:8])
    return mapped


def _unknown_ids(path: Path, fmt: LabelFormat, ids: np.ndarray) -> DataError:
    listed = ", ".join(str(int(i)) for i in ids)
    return DataError(
        f"{path}: unknown label ids {listed} for {fmt.name}; fix or leave out this file (see `list_file`), "
        f"and {CHECK_HINT}"
    )


def target_size(native: SizeWH, size: SizeWH | None, scale: float) -> SizeWH:
    """The resized (width, height): ``size`` when given, else ``native * scale`` rounded."""
    if size is not None:
        return (int(size[0]), int(size[1]))
    return (max(1, round(native[0] * scale)), max(1, round(native[1] * scale)))


def resize_image(img: Image.Image, size: SizeWH) -> Image.Image:
    """Bicubic resize to (width, height); a no-op when the size already matches."""
    width, height = size
    return img if img.size == (width, height) else img.resize((width, height), Image.Resampling.BICUBIC)


def random_box(size: SizeWH, crop: SizeWH) -> Box:
    """A crop box drawn uniformly inside an image of ``size`` with the global torch RNG.

    Args:
        size: (width, height) of the resized image.
        crop: (width, height) of the crop. A dimension larger than the image gets offset 0 (padded later).
    """
    (width, height), (cw, ch) = size, crop
    top = int(torch.randint(0, height - ch + 1, ()).item()) if height > ch else 0
    left = int(torch.randint(0, width - cw + 1, ()).item()) if width > cw else 0
    return (top, left, ch, cw)


def center_box(size: SizeWH, crop: SizeWH) -> Box:
    """The deterministic central crop box (used when ``train=False``)."""
    (width, height), (cw, ch) = size, crop
    return (max(0, (height - ch) // 2), max(0, (width - cw) // 2), ch, cw)


def full_box(size: SizeWH) -> Box:
    """The box covering a whole image of (width, height)."""
    return (0, 0, size[1], size[0])


def _nearest_index(src: int, dst: int, start: int, count: int) -> np.ndarray:
    """Source indices of output pixels ``start .. start+count`` when resizing ``src`` pixels to ``dst`` (nearest)."""
    out = np.arange(start, min(start + count, dst), dtype=np.int64)
    return np.minimum(((out * 2 + 1) * src) // (2 * dst), src - 1)


def resize_crop_label(label: np.ndarray, size: SizeWH, box: Box) -> np.ndarray:
    """Nearest-resize a label map to (width, height) and cut ``box`` out of it (padding with 255).

    Equivalent to resizing the whole map and slicing, but only the crop's pixels are computed.
    """
    top, left, height, width = box
    rows = _nearest_index(label.shape[0], size[1], top, height)
    cols = _nearest_index(label.shape[1], size[0], left, width)
    out = label[rows[:, None], cols[None, :]]
    if out.shape != (height, width):
        out = np.pad(out, ((0, height - out.shape[0]), (0, width - out.shape[1])), constant_values=IGNORE_INDEX)
    return out


def to_caffe_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 RGB ``[H, W, 3]`` -> float32 ``Tensor[3, H, W]``, BGR, Caffe mean subtracted."""
    bgr = rgb[:, :, ::-1].astype(np.float32) - _MEAN_BGR
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))


def crop_to_box(tensor: torch.Tensor, box: Box, fill: float = 0.0) -> torch.Tensor:
    """Cut ``box`` out of the last two dims of ``tensor``, padding bottom/right with ``fill`` where it overhangs.

    Use it to crop the spatial prior (resized to the image size) exactly like the image and label.
    """
    top, left, height, width = box
    out = tensor[..., top : top + height, left : left + width]
    pad_h, pad_w = height - out.shape[-2], width - out.shape[-1]
    if pad_h or pad_w:
        out = F.pad(out, (0, pad_w, 0, pad_h), value=fill)
    return out


def image_crop_tensor(img: Image.Image, box: Box) -> torch.Tensor:
    """Cut ``box`` out of a (resized) RGB image and convert it; overhanging pixels become 0 (the mean)."""
    top, left, height, width = box
    rgb = np.asarray(img)[top : top + height, left : left + width]
    return crop_to_box(to_caffe_tensor(rgb), (0, 0, height, width))


def require_dir(path: Path, layout: str) -> Path:
    """Return ``path`` if it is a folder, else raise a DataError naming it, what is there and the expected layout."""
    if path.is_dir():
        return path
    parent = path.parent
    if not parent.is_dir():
        where = f"{parent} does not exist either"
    else:
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in parent.iterdir())[:12]
        where = f"{parent} holds: {', '.join(found) or 'nothing'}"
    raise DataError(f"{path}: folder not found ({where}); expected layout: {layout}")


def select_images(images: list[Path], image_dir: Path, list_file: str | None, limit: int | None) -> list[Path]:
    """Apply an optional list file (names relative to ``image_dir``) and an optional ``limit`` to sorted images.

    Raises:
        DataError: the list file is missing or names an image that does not exist.
    """
    if list_file is not None:
        images = _read_list(Path(list_file), image_dir)
    if limit is not None:
        if limit < 1:
            raise DataError(f"limit must be at least 1, got {limit}")
        images = images[:limit]
    return images


def _read_list(list_file: Path, image_dir: Path) -> list[Path]:
    if not list_file.is_file():
        raise DataError(f"{list_file}: list file not found (one image name per line, relative to {image_dir})")
    images = []
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        path = image_dir / name
        if not path.is_file():
            raise DataError(f"{list_file}:{number}: image {path} not found (names are relative to {image_dir})")
        images.append(path)
    if not images:
        raise DataError(f"{list_file}: list file names no images")
    return images


def pair_by_path(
    images: list[Path], image_dir: Path, label_dir: Path, root: Path, label_format: LabelFormat
) -> list[Sample]:
    """One :class:`Sample` per image, its label at the same relative path under ``label_dir`` (GTA5, SYNTHIA)."""
    return [
        Sample(
            image=path,
            label=label_dir / path.relative_to(image_dir),
            name=str(path.relative_to(root)),
            label_format=label_format,
        )
        for path in images
    ]


def glob_images(image_dir: Path, pattern: str, layout: str) -> list[Path]:
    """Sorted files matching ``pattern`` under ``image_dir``; DataError when there are none."""
    images = sorted(image_dir.glob(pattern))
    if not images:
        raise DataError(f"{image_dir}: no images matching '{pattern}' found; expected layout: {layout}")
    return images


def dataset_root(root: str, layout: str) -> Path:
    """The dataset root folder; DataError when it is not given or does not exist."""
    if not root:
        raise DataError(f"no dataset root given; set the dataset's `root` (expected layout: {layout})")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: dataset root not found or not a folder; expected layout: {layout}")
    return path
