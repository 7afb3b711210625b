"""Segmenting image files with a trained model (``camix predict``): :func:`find_inputs`, :func:`segment_image`,
:func:`predict_files`. Loading the model: :func:`camix.checkpoint.load_for_inference`; scores on ``data.val``:
:mod:`camix.evaluate`.
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
from camix.labels import TRAIN_ID_TO_LABEL_ID_LUT
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


def output_paths(out_dir: str | Path, item: InputImage) -> dict[str, Path]:
    """``<stem>_labelIds.png`` (Cityscapes test server), ``<stem>_color.png`` and ``<stem>_overlay.png``."""
    base = Path(out_dir) / item.stem
    return {kind: base.parent / f"{base.name}_{kind}.png" for kind in ("labelIds", "color", "overlay")}


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


def write_prediction(paths: dict[str, Path], rgb: np.ndarray, train_ids: np.ndarray) -> None:
    """Encode the three outputs in memory, then write each atomically (never a half-written file)."""
    from camix.visualize import label_to_rgb, overlay

    colour = label_to_rgb(train_ids)
    encoded = {
        "labelIds": png_bytes(TRAIN_ID_TO_LABEL_ID_LUT[train_ids]),
        "color": png_bytes(colour),
        "overlay": png_bytes(overlay(rgb, colour)),
    }
    for kind, data in encoded.items():
        atomic_write_bytes(paths[kind], data)


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
) -> int:
    """Segment every input and write its three PNGs under ``out_dir``; returns the number of images done."""
    from camix.data.transforms import open_image

    check_readable(inputs)
    device = select_device(cfg.train.device)
    model = model.to(device).eval()
    for item in tqdm(inputs, desc="predict", unit="img", disable=not progress, dynamic_ncols=True):
        rgb = np.asarray(open_image(item.path))
        write_prediction(output_paths(out_dir, item), rgb, segment_image(model, rgb, cfg, size, device))
    return len(inputs)
