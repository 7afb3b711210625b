"""Pictures: images back to RGB, label maps in the Cityscapes palette, overlays, the CAMix debug panel, and the
report figures (adaptation curves, qualitative grids with a palette legend)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from camix.io import atomic_open, atomic_write_bytes
from camix.labels import CAFFE_MEAN_BGR, CLASS_NAMES, PALETTE, colorize


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


def tile_rgb(tensor: torch.Tensor) -> np.ndarray:
    """One panel tile: an image ``[3,H,W]`` as RGB, an integer map ``[H,W]`` as labels, a bool/float one as a mask."""
    if tensor.dim() == 3:
        return to_rgb_uint8(tensor)
    if not tensor.dtype.is_floating_point and tensor.dtype != torch.bool:
        return label_to_rgb(tensor)
    return mask_to_rgb(tensor)


def debug_panel(path: str | Path, tiles: Mapping[str, torch.Tensor]) -> None:
    """Figure 2 of the paper for one image of a batch: ``tiles`` maps each caption to its tensor (:func:`tile_rgb`),
    four tiles per row."""
    save_png(grid([tile_rgb(t) for t in tiles.values()], list(tiles), columns=4), path)


# ----- report figures ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    """One line of an adaptation plot: the mean over ``n`` runs and its min-max band at each x."""

    label: str
    x: Sequence[float]
    mean: Sequence[float]
    low: Sequence[float]
    high: Sequence[float]
    n: int = 1


def plot_curves_png(
    curves: Sequence[Curve], path: str | Path, *, xlabel: str = "iteration", ylabel: str = "mIoU (%)", title: str = ""
) -> None:
    """Mean lines with shaded min-max bands (where n > 1) as a PNG, written atomically (matplotlib, Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8.5, 4.2), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for curve in curves:
        marker = "o" if len(curve.x) <= 30 else None
        label = f"{curve.label} (n={curve.n})" if curve.n > 1 else curve.label
        (line,) = ax.plot(curve.x, curve.mean, marker=marker, markersize=3, linewidth=1.5, label=label)
        if curve.n > 1:
            ax.fill_between(curve.x, curve.low, curve.high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if curves:
        banded = any(curve.n > 1 for curve in curves)
        legend_title = "mean; shaded:\nmin-max over seeds" if banded else None
        ax.legend(
            fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), title=legend_title, title_fontsize="small"
        )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def resize_tile(tile: np.ndarray, width: int, *, nearest: bool) -> np.ndarray:
    """An RGB tile scaled to ``width`` pixels, keeping its aspect (nearest for label maps, bilinear for images)."""
    height = max(1, round(tile.shape[0] * width / tile.shape[1]))
    if tile.shape[:2] == (height, width):
        return tile
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(tile).resize((width, height), method))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font: Any) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text


def titled_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], pad: int = 4) -> Image.Image:
    """Rows of equally sized RGB tiles under one line of column titles (the layout of the paper's Figure 3)."""
    height, width = rows[0][0].shape[:2]
    font = _font(14)
    title_h = 22
    canvas = Image.new("RGB", (len(titles) * (width + pad) + pad, title_h + len(rows) * (height + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for col, title in enumerate(titles):
        draw.text((pad + col * (width + pad), 4), _fit(draw, title, width, font), fill="black", font=font)
    for r, row in enumerate(rows):
        for col, tile in enumerate(row):
            canvas.paste(Image.fromarray(tile), (pad + col * (width + pad), title_h + r * (height + pad)))
    return canvas


def palette_legend(width: int, columns: int = 7) -> Image.Image:
    """The 19 Cityscapes classes as colour swatches with names, ``width`` pixels wide."""
    font = _font(12)
    cell_w, cell_h = width // columns, 18
    rows = -(-len(CLASS_NAMES) // columns)
    canvas = Image.new("RGB", (width, rows * cell_h + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (name, colour) in enumerate(zip(CLASS_NAMES, PALETTE, strict=True)):
        x, y = 4 + (index % columns) * cell_w, 2 + (index // columns) * cell_h
        draw.rectangle((x, y + 2, x + 12, y + 14), fill=tuple(colour), outline="black")
        draw.text((x + 16, y + 1), _fit(draw, name, cell_w - 20, font), fill="black", font=font)
    return canvas


def stack_vertically(images: Sequence[Image.Image]) -> Image.Image:
    """Images one below the other on white, left-aligned."""
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    top = 0
    for image in images:
        canvas.paste(image, (0, top))
        top += image.height
    return canvas
