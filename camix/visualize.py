"""Pictures: images back to RGB, label maps in the Cityscapes palette, overlays and the CAMix debug panel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from camix.data.labels import CAFFE_MEAN_BGR, colorize
from camix.io import atomic_open


def to_rgb_uint8(image: torch.Tensor) -> np.ndarray:
    """A Caffe-normalised BGR image [3,H,W] -> RGB uint8 [H,W,3]."""
    bgr = image.detach().float().cpu() + torch.tensor(CAFFE_MEAN_BGR).view(3, 1, 1)
    return bgr.flip(0).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def label_to_rgb(label: torch.Tensor | np.ndarray) -> np.ndarray:
    """A trainId map [H,W] -> RGB uint8 [H,W,3] in the Cityscapes palette (ignore = black)."""
    array = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    return colorize(array)


def mask_to_rgb(mask: torch.Tensor) -> np.ndarray:
    """A bool/float mask [H,W] in [0, 1] -> grey RGB uint8 [H,W,3] (white = 1)."""
    grey = (mask.detach().float().cpu().clamp(0, 1) * 255).round().byte().numpy()
    return np.repeat(grey[..., None], 3, axis=2)


def overlay(image_rgb: np.ndarray, label_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colour-coded label map over an image."""
    mixed = (1 - alpha) * image_rgb.astype(np.float32) + alpha * label_rgb.astype(np.float32)
    return mixed.round().astype(np.uint8)


def grid(tiles: Sequence[np.ndarray], captions: Sequence[str], columns: int, pad: int = 2) -> Image.Image:
    """Tiles of one size in a captioned grid."""
    height, width = tiles[0].shape[:2]
    caption_h = 12
    rows = -(-len(tiles) // columns)
    canvas = Image.new("RGB", (columns * (width + pad) + pad, rows * (height + caption_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        x = pad + (index % columns) * (width + pad)
        y = pad + (index // columns) * (height + caption_h + pad)
        draw.text((x, y), caption, fill="black")
        canvas.paste(Image.fromarray(tile), (x, y + caption_h))
    return canvas


def save_png(image: Image.Image, path: str | Path) -> None:
    """Write a PNG atomically."""
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG")


def debug_panel(
    path: str | Path, source: dict[str, Any], target: dict[str, Any] | None, extras: dict[str, Any]
) -> None:
    """Figure 2 of the paper for the first image of a batch: inputs, mixed image, masks and labels."""
    tiles = [to_rgb_uint8(source["image"][0]), label_to_rgb(source["label"][0])]
    captions = ["source", "source label"]
    if target is not None:
        tiles.append(to_rgb_uint8(target["image"][0]))
        captions.append("target")
    named = [
        ("mixed_image", "mixed image"),
        ("mask", "contextual mask M"),
        ("mixed_label", "mixed label Y_M"),
        ("significance", "significance U_M"),
        ("pseudo_label", "teacher pseudo-label"),
    ]
    for key, caption in named:
        if key not in extras:
            continue
        value = extras[key][0]
        if key == "mixed_image":
            tiles.append(to_rgb_uint8(value))
        elif key in ("mask", "significance"):
            tiles.append(mask_to_rgb(value))
        else:
            tiles.append(label_to_rgb(value))
        captions.append(caption)
    save_png(grid(tiles, captions, columns=4), path)
