"""Your own data: an image folder and a label folder paired by name, and a classes file.

Layout (``image_dir``/``label_dir`` are relative to ``root``; ``{split}`` is replaced by the split)::

    ROOT/images/train/a/0001.png  +  ROOT/labels/train/a/0001.png      (image_suffix ".png", label_suffix ".png")

An image ``NAME<image_suffix>`` (searched recursively) pairs with the label ``NAME<label_suffix>`` at the same
relative path under the label folder. The classes file (YAML) names the classes in index order and maps the raw
label values to them, either 8-bit ids or RGB colours (255 = ignore)::

    names: [road, building, vegetation, car]
    ids: {0: 255, 1: 0, 2: 1, 3: 2, 4: 3}          # raw id -> class index; or instead:
    colors: {"128,64,128": 0, "70,70,70": 1, "107,142,35": 2, "0,0,142": 3, "0,0,0": 255}
    palette: [[128, 64, 128], [70, 70, 70], [107, 142, 35], [0, 0, 142]]   # optional: colours of predictions

A label value the file does not map is an error naming the file and the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from camix.config import DatasetConfig
from camix.data.transforms import (
    CHECK_HINT,
    UNKNOWN_ID,
    LabelFormat,
    Sample,
    dataset_root,
    glob_images,
    read_single_channel,
    require_dir,
    select_images,
)
from camix.errors import ConfigError, DataError
from camix.labels import IGNORE_INDEX, PALETTE

LAYOUT = "ROOT/<image_dir>/NAME<image_suffix> + ROOT/<label_dir>/NAME<label_suffix> ({split} = the split)"
_COLOUR = re.compile(r"^\s*(\d{1,3})\s*[, ]\s*(\d{1,3})\s*[, ]\s*(\d{1,3})\s*$|^#([0-9a-fA-F]{6})$")


@dataclass(frozen=True, eq=False)
class ClassesFile:
    """A folder dataset's classes: names (index order), colours of predictions, and how labels map to indices."""

    path: Path
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    label_format: LabelFormat


def parse_colour(text: Any, where: str) -> tuple[int, int, int]:
    """``"128,64,128"``, ``"128 64 128"``, ``"#804080"`` or ``[128, 64, 128]`` -> (r, g, b)."""
    if isinstance(text, (list, tuple)) and len(text) == 3 and all(isinstance(v, int) for v in text):
        values = tuple(int(v) for v in text)
    else:
        match = _COLOUR.match(str(text))
        if not match:
            raise ConfigError(f'{where}: {text!r} is not a colour; write it as "R,G,B" (0-255) or "#rrggbb"')
        hexa = match.group(4)
        values = tuple(int(hexa[i : i + 2], 16) for i in (0, 2, 4)) if hexa else tuple(map(int, match.groups()[:3]))
    if not all(0 <= v <= 255 for v in values):
        raise ConfigError(f"{where}: {text!r} is not a colour; each of R, G, B must be in 0..255")
    return values  # type: ignore[return-value]


@cache
def load_classes(path: str) -> ClassesFile:
    """Read and check a classes file (cached per path).

    Raises:
        ConfigError: a missing or unreadable file, a missing ``names``, neither or both of ``ids`` and ``colors``,
            a class index outside ``[0, len(names))`` (255 = ignore), or more than 254 colours; naming the file.
    """
    file = Path(path).expanduser()
    try:
        tree = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: classes file not found (set the dataset's `classes`; docs/datasets.md)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{file}: cannot read the classes file ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, dict) or not isinstance(tree.get("names"), list) or len(tree["names"]) < 2:
        raise ConfigError(f"{file}: a classes file needs `names: [...]` with at least two class names")
    names = tuple(str(n) for n in tree["names"])
    if len(set(names)) != len(names) or len(names) > 254:
        raise ConfigError(f"{file}: `names` must be at most 254 distinct class names")
    unknown = sorted(set(tree) - {"names", "ids", "colors", "palette"})
    if unknown:
        raise ConfigError(f"{file}: unknown key '{unknown[0]}' (valid keys: names, ids, colors, palette)")
    if ("ids" in tree) == ("colors" in tree):
        raise ConfigError(f'{file}: give exactly one of `ids` (raw id -> class) and `colors` ("R,G,B" -> class)')
    if "ids" in tree:
        label_format = _id_format(file, tree["ids"], len(names))
        colours = None
    else:
        label_format, colours = _colour_format(file, tree["colors"], len(names))
    return ClassesFile(file, names, _palette(file, tree.get("palette"), names, colours), label_format)


def _class_index(file: Path, key: str, value: Any, count: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value < count or value == IGNORE_INDEX):
        raise ConfigError(f"{file}: {key} maps to {value!r}; a class index is in [0, {count}) or 255 (ignore)")
    return value


def _id_format(file: Path, ids: Any, count: int) -> LabelFormat:
    if not isinstance(ids, dict) or not ids:
        raise ConfigError(f"{file}: `ids` must be a mapping raw id -> class index, e.g. {{0: 255, 1: 0}}")
    lut = np.full(256, UNKNOWN_ID, dtype=np.uint8)
    for raw, index in ids.items():
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 255:
            raise ConfigError(f"{file}: `ids` key {raw!r} is not an 8-bit label id (0..255)")
        lut[raw] = _class_index(file, f"ids {raw}", index, count)
    return LabelFormat(f"the ids of {file.name}", read_single_channel, lut)


def _colour_format(file: Path, colors: Any, count: int) -> tuple[LabelFormat, dict[tuple[int, int, int], int]]:
    if not isinstance(colors, dict) or not colors or len(colors) > 254:
        raise ConfigError(f'{file}: `colors` must map 1 to 254 colours "R,G,B" to class indices')
    table = {parse_colour(c, f"{file}: colors"): _class_index(file, f"colour {c}", i, count) for c, i in colors.items()}
    codes = np.asarray([(r << 16) | (g << 8) | b for r, g, b in table], dtype=np.int64)
    lut = np.full(256, UNKNOWN_ID, dtype=np.uint8)
    lut[: len(table)] = list(table.values())

    def read(path: Path) -> np.ndarray:
        return read_colour_label(path, codes)

    return LabelFormat(f"the colours of {file.name}", read, lut), table


def read_colour_label(path: Path, codes: np.ndarray) -> np.ndarray:
    """A colour-coded label image -> uint8 ``[H, W]`` positions of each pixel's colour in ``codes`` (r<<16|g<<8|b).

    Raises:
        DataError: a missing or undecodable file, or colours not in ``codes`` (listed with their pixel counts).
    """
    try:
        with Image.open(path) as img:
            img.load()
            rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode label map ({exc}); re-extract or replace the file") from None
    pixels = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    present, inverse, counts = np.unique(pixels, return_inverse=True, return_counts=True)
    order = np.argsort(codes)
    where = np.searchsorted(codes[order], present).clip(max=len(codes) - 1)
    known = codes[order][where] == present
    if not known.all():
        pairs = zip(present[~known][:8], counts[~known][:8], strict=True)
        listed = ", ".join(f"{c >> 16},{(c >> 8) & 255},{c & 255} ({n} px)" for c, n in pairs)
        raise DataError(f"{path}: label colours {listed} are not in the classes file; add them, and {CHECK_HINT}")
    return order[where][inverse].reshape(pixels.shape).astype(np.uint8)


def _palette(
    file: Path, given: Any, names: tuple[str, ...], colours: dict[tuple[int, int, int], int] | None
) -> tuple[tuple[int, int, int], ...]:
    if given is not None:
        if not isinstance(given, list) or len(given) != len(names):
            raise ConfigError(f"{file}: `palette` must list one colour per class ({len(names)})")
        return tuple(parse_colour(c, f"{file}: palette") for c in given)
    by_class = {index: colour for colour, index in (colours or {}).items() if index != IGNORE_INDEX}
    fallback = [PALETTE[i % len(PALETTE)] for i in range(len(names))]
    return tuple(by_class.get(i, fallback[i]) for i in range(len(names)))


def _no_classes(path: Path) -> np.ndarray:
    raise DataError(f"{path}: a folder dataset's labels need its classes file; set the dataset's `classes`")


_NO_CLASSES = LabelFormat("no classes file", _no_classes, np.full(256, UNKNOWN_ID, dtype=np.uint8))


def classes_of(cfg: DatasetConfig) -> ClassesFile:
    """The classes file of a folder dataset (ConfigError when ``classes`` is not set)."""
    if not cfg.classes:
        raise ConfigError(f"a folder dataset needs `classes`: the classes file (root {cfg.root}; docs/datasets.md)")
    return load_classes(cfg.classes)


def _folders(cfg: DatasetConfig, root: Path) -> tuple[Path, Path]:
    return root / cfg.image_dir.format(split=cfg.split), root / cfg.label_dir.format(split=cfg.split)


def find_samples(cfg: DatasetConfig) -> list[Sample]:
    """The image/label pairs, sorted by path (after ``list_file``, relative to the image folder, and ``limit``).

    Without a classes file (an unlabelled target) the pairs list, but reading a label is an error."""
    fmt = classes_of(cfg).label_format if cfg.classes else _NO_CLASSES
    root = dataset_root(cfg.root, LAYOUT)
    image_dir, label_dir = _folders(cfg, root)
    require_dir(image_dir, LAYOUT)
    found = glob_images(image_dir, f"**/*{cfg.image_suffix}", LAYOUT)
    if image_dir == label_dir:  # one folder: the suffixes tell images from labels
        found = [p for p in found if not p.name.endswith(cfg.label_suffix)]
    images = select_images(found, image_dir, cfg.list_file, cfg.limit)
    samples = []
    for path in images:
        relative = path.relative_to(image_dir)
        label = label_dir / relative.parent / f"{relative.name.removesuffix(cfg.image_suffix)}{cfg.label_suffix}"
        samples.append(Sample(image=path, label=label, name=str(path.relative_to(root)), label_format=fmt))
    return samples


def find_labels(cfg: DatasetConfig) -> dict[Path, Path]:
    """Every label file -> the image it belongs to."""
    root = dataset_root(cfg.root, LAYOUT)
    image_dir, label_dir = _folders(cfg, root)
    labels = sorted(label_dir.rglob(f"*{cfg.label_suffix}")) if label_dir.is_dir() else []
    found = {}
    for label in labels:
        relative = label.relative_to(label_dir)
        found[label] = image_dir / relative.parent / f"{relative.name.removesuffix(cfg.label_suffix)}{cfg.image_suffix}"
    return found
