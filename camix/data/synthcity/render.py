"""Appearance of a SynthCity scene: turns the label / instance / shade layers into an RGB image for a style.

The pipeline (every step vectorised over the image): per-class colour -> per-instance brightness and tint ->
details (shade layer) -> per-class texture -> lighting gradient, exposure and vignetting -> white balance ->
blur -> sensor noise -> 8-bit. With the source style only the class colours, a small per-instance variation,
the details and a little noise remain.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from camix.data.synthcity.canvas import NEUTRAL
from camix.data.synthcity.params import TEXTURE_MIX, DomainStyle, class_colours


def render(
    label: np.ndarray, instance: np.ndarray, shade: np.ndarray, style: DomainStyle, rng: np.random.Generator
) -> np.ndarray:
    """RGB uint8 [H, W, 3] for the layers of a scene (trainIds, instance ids, shades, all uint8 [H, W])."""
    height, width = label.shape
    table = np.concatenate([class_colours(style), np.zeros((1, 3), np.float32)])  # index 19: void -> black
    cls = np.minimum(label, 19)
    rgb = table[cls]
    rgb *= _instance_gain(style, rng)[instance]
    rgb *= (1.0 + style.detail_contrast * (shade.astype(np.float32) - NEUTRAL) / NEUTRAL)[..., None]
    if style.texture > 0:
        rgb *= (1.0 + style.texture * _texture(cls, rng))[..., None]
    if style.lighting > 0:
        rgb *= _lighting(height, width, style.lighting, rng)[..., None]
    if style.white_balance > 0:
        rgb *= (1.0 + style.white_balance * rng.standard_normal(3)).astype(np.float32)
    if style.blur > 0:
        rgb = _blur(rgb, style.blur * height / 128)
    if style.noise > 0:
        rgb += style.noise * rng.standard_normal(rgb.shape, dtype=np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _instance_gain(style: DomainStyle, rng: np.random.Generator) -> np.ndarray:
    """float32 [256, 3]: a brightness factor times a small colour tint for each instance id."""
    brightness = 1.0 + style.instance_jitter * rng.uniform(-1.0, 1.0, size=(256, 1))
    tint = 1.0 + 0.5 * style.instance_jitter * rng.uniform(-1.0, 1.0, size=(256, 3))
    return (brightness * tint).astype(np.float32)


def _value_noise(height: int, width: int, cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth random field in about [-1, 1]: a ``cells`` grid of random values, bicubically upsampled."""
    grid = rng.uniform(-1.0, 1.0, size=(cells[1], cells[0])).astype(np.float32)
    image = Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def _texture(cls: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 [H, W]: coarse, medium and fine noise fields mixed with per-class weights (TEXTURE_MIX)."""
    height, width = cls.shape
    fields = (
        _value_noise(height, width, (6, 4), rng),
        _value_noise(height, width, (max(2, width // 8), max(2, height // 8)), rng),
        rng.uniform(-1.0, 1.0, size=(height, width)).astype(np.float32),
    )
    mix = np.concatenate([np.asarray(TEXTURE_MIX, np.float32), np.zeros((1, 3), np.float32)])[cls]
    return np.asarray(sum(mix[..., k] * f for k, f in enumerate(fields)), dtype=np.float32)


def _lighting(height: int, width: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """float32 [H, W]: a linear gradient in a random direction, an exposure change and a vignette."""
    ys, xs = np.meshgrid(
        np.linspace(-1, 1, height, dtype=np.float32), np.linspace(-1, 1, width, dtype=np.float32), indexing="ij"
    )
    angle = rng.uniform(0, 2 * np.pi)
    gradient = np.cos(angle) * xs + np.sin(angle) * ys
    exposure = 1.0 + strength * 0.6 * rng.uniform(-1.0, 1.0)
    vignette = 1.0 - strength * 0.5 * (xs**2 + ys**2) / 2
    return (exposure * (1.0 + strength * gradient) * vignette).astype(np.float32)


def _blur(rgb: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of a float image (through 8-bit PIL, which is exact enough before noise is added)."""
    image = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
