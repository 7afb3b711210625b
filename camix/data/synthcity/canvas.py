"""Drawing primitives for SynthCity: a pinhole camera over a flat ground and a three-layer canvas.

The canvas draws every shape into three aligned 8-bit layers with PIL (crisp edges, no anti-aliasing):
``label`` (trainIds), ``instance`` (an id per object part, used to vary appearance per instance) and ``shade``
(128 = neutral; details such as windows, wheels and lane markings darken or brighten the class colour without
changing the label).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

Point = tuple[float, float]
NEUTRAL = 128


@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking along the road (+z), at ``height`` metres over a flat ground.

    Attributes:
        width: image width (px).
        height: image height (px).
        horizon: row of the horizon (px).
        vx: column of the vanishing point of the road (px).
        focal: focal length (px).
        cam_height: camera height over the ground (m).
    """

    width: int
    height: int
    horizon: float
    vx: float
    focal: float
    cam_height: float

    def scale(self, z: float) -> float:
        """Pixels per metre at depth ``z`` (m)."""
        return self.focal / z

    def project(self, x: float, up: float, z: float) -> Point:
        """Image point of the world point ``x`` m right of the camera, ``up`` m over the ground, ``z`` m ahead."""
        s = self.focal / z
        return (self.vx + x * s, self.horizon + (self.cam_height - up) * s)

    def depth_at_row(self, row: float) -> float:
        """Depth (m) of the ground seen at image row ``row`` (which must be below the horizon)."""
        return self.focal * self.cam_height / (row - self.horizon)

    def near_depth(self) -> float:
        """Depth of the ground at the bottom row: the nearest visible ground."""
        return self.depth_at_row(self.height)

    def ground_quad(self, x0: float, x1: float, z0: float, z1: float) -> list[Point]:
        """Polygon of the ground strip ``x0..x1`` (m, lateral) by ``z0..z1`` (m, depth)."""
        return [self.project(x0, 0, z0), self.project(x1, 0, z0), self.project(x1, 0, z1), self.project(x0, 0, z1)]

    def wall_quad(self, x: float, z0: float, z1: float, bottom: float, top: float) -> list[Point]:
        """Polygon of a vertical plane along the road at lateral ``x``, depths ``z0..z1``, heights bottom..top."""
        return [
            self.project(x, bottom, z0),
            self.project(x, top, z0),
            self.project(x, top, z1),
            self.project(x, bottom, z1),
        ]


class Canvas:
    """Three aligned 8-bit layers (label, instance, shade) drawn together with PIL."""

    def __init__(self, width: int, height: int, fill: int) -> None:
        self.width, self.height = width, height
        self.label = Image.new("L", (width, height), fill)
        self.instance = Image.new("L", (width, height), 0)
        self.shade = Image.new("L", (width, height), NEUTRAL)
        self._draw = [ImageDraw.Draw(im) for im in (self.label, self.instance, self.shade)]
        self._next_instance = 1

    def new_instance(self) -> int:
        """A fresh instance id (ids wrap around at 256; they only vary the appearance)."""
        value = self._next_instance % 256
        self._next_instance += 1
        return value

    def polygon(self, points: Sequence[Point], cls: int, inst: int, shade: int = NEUTRAL) -> None:
        """Fill a polygon with class ``cls``, instance ``inst`` and shade ``shade``."""
        for draw, value in zip(self._draw, (cls, inst, shade), strict=True):
            draw.polygon(list(points), fill=value)

    def rect(self, box: Sequence[float], cls: int, inst: int, shade: int = NEUTRAL) -> None:
        """Fill the axis-aligned box ``(x0, y0, x1, y1)`` (inclusive pixel coordinates, any order)."""
        x0, x1 = sorted((box[0], box[2]))
        y0, y1 = sorted((box[1], box[3]))
        for draw, value in zip(self._draw, (cls, inst, shade), strict=True):
            draw.rectangle((round(x0), round(y0), round(x1), round(y1)), fill=value)

    def ellipse(self, box: Sequence[float], cls: int, inst: int, shade: int = NEUTRAL, ring: float = 0.0) -> None:
        """Fill an ellipse in ``box``; with ``ring > 0`` only an outline that many pixels wide."""
        x0, x1 = sorted((box[0], box[2]))
        y0, y1 = sorted((box[1], box[3]))
        coords = (round(x0), round(y0), round(x1), round(y1))
        for draw, value in zip(self._draw, (cls, inst, shade), strict=True):
            if ring > 0:
                draw.ellipse(coords, outline=value, width=max(1, round(ring)))
            else:
                draw.ellipse(coords, fill=value)

    def line(self, points: Sequence[Point], width: float, cls: int, inst: int, shade: int = NEUTRAL) -> None:
        """A polyline ``width`` pixels wide (at least 2, so that diagonal lines stay 4-connected)."""
        for draw, value in zip(self._draw, (cls, inst, shade), strict=True):
            draw.line(list(points), fill=value, width=max(2, round(width)))

    def detail(self, points: Sequence[Point], shade: int) -> None:
        """Change only the shade inside a polygon (a window, a wheel, a marking): the label stays."""
        self._draw[2].polygon(list(points), fill=shade)

    def detail_rect(self, box: Sequence[float], shade: int) -> None:
        """Change only the shade inside a box."""
        x0, x1 = sorted((box[0], box[2]))
        y0, y1 = sorted((box[1], box[3]))
        self._draw[2].rectangle((round(x0), round(y0), round(x1), round(y1)), fill=shade)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three layers as uint8 arrays [H, W]."""
        return np.asarray(self.label), np.asarray(self.instance), np.asarray(self.shade)
