"""Segmenting image files with a trained model (``camix predict``): :func:`find_inputs`, :func:`segment_image`,
:func:`predict_files`. Loading the model: :func:`camix.checkpoint.load_for_inference`; scores on ``data.val``:
:mod:`camix.evaluate`.

Output formats (:data:`FORMATS`, ``camix predict --format``), every PNG at the input image's resolution, input
sub-folders mirrored:

* ``default``: ``<stem>_labelIds.png`` (Cityscapes labelIds; a folder dataset's class indices as
  ``<stem>_classIds.png``), ``<stem>_color.png`` and ``<stem>_overlay.png`` in the classes' palette;
* ``cityscapes``: one 8-bit PNG of Cityscapes **labelIds** per image, named like the image
  (``berlin_000000_000019_leftImg8bit.png``), what the Cityscapes test server reads;
* ``acdc``, ``dark_zurich``: one 8-bit PNG of **trainIds** (0..18) per image, named like the image
  (``GOPR0475_frame_000247_rgb_anon.png``): the files the DAFormer/HRDA/MIC instructions submit to these servers
  (mmseg's ``--format-only`` with ``to_label_id=False``). Dark Zurich's uncertainty-aware metric also reads
  confidence maps, which camix does not write.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from camix.config import Config
from camix.errors import CamixError
from camix.evaluate import predict_logits
from camix.io import atomic_write_bytes
from camix.labels import PALETTE, TRAIN_ID_TO_LABEL_ID_LUT
from camix.runtime import select_device

SizeWH = tuple[int, int]


class PredictError(CamixError):
    """Unusable inputs or outputs of ``camix predict``."""


# ----- image files --------------------------------------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class InputImage:
    """An image to segment and where its outputs go (``stem`` is relative to the output folder)."""

    path: Path
    stem: Path


def find_inputs(paths: Sequence[str | Path]) -> list[InputImage]:
    """Files as given; folders searched recursively for png/jpg, their sub-folders mirrored in the outputs.

    Raises:
        PredictError: a missing path or a dangling symbolic link (given or inside a folder), a folder without
            images, or two inputs that would write the same outputs.
    """
    found: list[InputImage] = []
    for given in map(Path, paths):
        if given.is_file():
            found.append(InputImage(given, Path(given.stem)))
        elif given.is_dir():
            candidates = sorted(p for p in given.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            dangling = [p for p in candidates if p.is_symlink() and not p.exists()]
            if dangling:
                more = f" (and {len(dangling) - 1} more)" if len(dangling) > 1 else ""
                raise PredictError(
                    f"{dangling[0]}: symbolic link to a missing file ({os.readlink(dangling[0])}){more}; "
                    "fix or remove the links"
                )
            images = [p for p in candidates if p.is_file()]
            if not images:
                raise PredictError(f"{given}: no {'/'.join(IMAGE_SUFFIXES)} images in this folder")
            found += [InputImage(p, p.relative_to(given).with_suffix("")) for p in images]
        elif given.is_symlink():
            raise PredictError(f"{given}: symbolic link to a missing file ({os.readlink(given)})")
        else:
            raise PredictError(f"{given}: no such file or folder")
    seen: dict[Path, Path] = {}
    for item in found:
        if item.stem in seen:
            raise PredictError(
                f"{seen[item.stem]} and {item.path} would both write {item.stem}_*.png; predict them apart"
            )
        seen[item.stem] = item.path
    return found


@dataclass(frozen=True)
class OutputFormat:
    """What ``camix predict --format NAME`` writes: the suffix of the benchmark's image names and the ids."""

    suffix: str
    ids: str  # "labelIds" (Cityscapes labelIds) or "trainIds"


FORMATS: dict[str, OutputFormat | None] = {
    "default": None,  # the three PNGs of output_paths
    "cityscapes": OutputFormat("_leftImg8bit", "labelIds"),
    "acdc": OutputFormat("_rgb_anon", "trainIds"),
    "dark_zurich": OutputFormat("_rgb_anon", "trainIds"),
}
"""``--format`` name -> the benchmark's output (see the module docstring)."""


def output_paths(out_dir: str | Path, item: InputImage, ids_name: str = "labelIds") -> dict[str, Path]:
    """``<stem>_labelIds.png`` (or ``ids_name``), ``<stem>_color.png`` and ``<stem>_overlay.png``."""
    base = Path(out_dir) / item.stem
    return {kind: base.parent / f"{base.name}_{kind}.png" for kind in (ids_name, "color", "overlay")}


def check_format(inputs: Sequence[InputImage], name: str, cityscapes_classes: bool) -> None:
    """Inputs named as the benchmark ``name`` names its images, and a model of the 19 Cityscapes classes.

    Raises:
        PredictError: an unknown format, a model of other classes, or an input without the benchmark's suffix.
    """
    if name not in FORMATS:
        raise PredictError(f"--format {name}: choose one of {', '.join(FORMATS)}")
    fmt = FORMATS[name]
    if fmt is None:
        return
    if not cityscapes_classes:
        raise PredictError(f"--format {name} writes Cityscapes ids; this model predicts other classes (use default)")
    wrong = [i.path for i in inputs if not i.stem.name.endswith(fmt.suffix)]
    if wrong:
        raise PredictError(
            f"{wrong[0]}: not named like a {name} image (NAME{fmt.suffix}.png); --format {name} keeps the image "
            "names the server matches"
        )


@torch.no_grad()
def segment_image(
    model: torch.nn.Module, rgb: np.ndarray, cfg: Config, size: SizeWH | None, device: torch.device
) -> np.ndarray:
    """TrainIds [H,W] uint8 of an RGB uint8 image [H,W,3], predicted at ``size`` (or the val size) and upsampled back.

    The network sees the image resized like ``cfg.data.val`` (``size`` wins); ``cfg.eval`` sets flip and window.
    """
    from camix.data.transforms import resize_image, target_size, to_caffe_tensor

    height, width = rgb.shape[:2]
    net_size = size or target_size((width, height), cfg.data.val.size, cfg.data.val.scale)
    resized = np.asarray(resize_image(Image.fromarray(rgb), net_size))
    image = to_caffe_tensor(resized)[None].to(device)
    logits = predict_logits(model, image, (height, width), cfg.eval.flip, cfg.eval.sliding_window, cfg.eval.overlap)
    return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()


def png_bytes(array: np.ndarray) -> bytes:
    """An 8-bit grey [H,W] or RGB [H,W,3] array encoded as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def palette_lut(palette: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """uint8[256, 3]: class index -> colour of ``palette``; everything else (255 = ignore) black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut


def write_prediction(
    paths: dict[str, Path], rgb: np.ndarray, train_ids: np.ndarray, palette: Sequence[tuple[int, int, int]] = PALETTE
) -> None:
    """Encode the three outputs in memory, then write each atomically (never a half-written file).

    With the Cityscapes palette the ids file holds Cityscapes labelIds, else the class indices themselves.
    """
    from camix.visualize import overlay

    colour = palette_lut(palette)[train_ids]
    cityscapes = tuple(palette) == PALETTE
    ids_kind = next(k for k in paths if k not in ("color", "overlay"))
    encoded = {
        ids_kind: png_bytes(TRAIN_ID_TO_LABEL_ID_LUT[train_ids] if cityscapes else train_ids),
        "color": png_bytes(colour),
        "overlay": png_bytes(overlay(rgb, colour)),
    }
    for kind, data in encoded.items():
        atomic_write_bytes(paths[kind], data)


def write_benchmark(out_dir: str | Path, item: InputImage, train_ids: np.ndarray, fmt: OutputFormat) -> None:
    """The one PNG a benchmark server reads: ``<stem>.png`` of labelIds or trainIds (atomically)."""
    ids = TRAIN_ID_TO_LABEL_ID_LUT[train_ids] if fmt.ids == "labelIds" else train_ids
    atomic_write_bytes(Path(out_dir) / f"{item.stem}.png", png_bytes(ids))


def check_readable(inputs: Sequence[InputImage]) -> None:
    """Read every image header before anything is written (a broken file is a one-line DataError)."""
    from camix.data.transforms import image_size

    for item in inputs:
        image_size(item.path)


def predict_files(
    model: torch.nn.Module,
    cfg: Config,
    inputs: Sequence[InputImage],
    out_dir: str | Path,
    *,
    size: SizeWH | None = None,
    progress: bool = True,
    output_format: str = "default",
    classes: tuple[tuple[str, ...], Sequence[tuple[int, int, int]]] | None = None,
) -> int:
    """Segment every input and write its PNGs under ``out_dir`` (``output_format``: :data:`FORMATS`); returns the
    number of images done. ``classes``: (names, palette) of a model of other classes than Cityscapes'."""
    from camix.data.transforms import open_image

    palette = PALETTE if classes is None else tuple(classes[1])
    check_format(inputs, output_format, classes is None)
    check_readable(inputs)
    fmt = FORMATS[output_format]
    device = select_device(cfg.train.device)
    model = model.to(device).eval()
    ids_name = "labelIds" if classes is None else "classIds"
    for item in tqdm(inputs, desc="predict", unit="img", disable=not progress, dynamic_ncols=True):
        rgb = np.asarray(open_image(item.path))
        train_ids = segment_image(model, rgb, cfg, size, device)
        if fmt is None:
            write_prediction(output_paths(out_dir, item, ids_name), rgb, train_ids, palette)
        else:
            write_benchmark(out_dir, item, train_ids, fmt)
    return len(inputs)
