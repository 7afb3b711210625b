"""Countable objects of a SynthCity scene: vehicles, people, riders on two-wheelers, poles with signs and lights.

Each builder returns a :class:`Thing`: a list of shapes in image coordinates plus what placement needs (depth for
the painter's order, image box, ground footprint, whether it carries a context rule). Builders enforce a minimum
width of ``thin`` pixels for thin parts so that poles, lights and bicycles stay learnable at small image sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from camix.data.synthcity.canvas import NEUTRAL, Camera, Canvas, Point

# trainIds
POLE, LIGHT, SIGN, PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 5, 6, 7, 11, 12, 13, 14, 15, 16, 17, 18
DARK, DIM, BRIGHT = 55, 95, 215  # detail shades

# (width, height, length) in metres of each vehicle class
VEHICLE_SIZE: dict[int, tuple[float, float, float]] = {
    CAR: (1.8, 1.5, 4.4),
    TRUCK: (2.5, 3.4, 8.0),
    BUS: (2.55, 3.1, 12.0),
    TRAIN: (2.7, 3.7, 28.0),
}


@dataclass(frozen=True)
class Shape:
    """One drawing operation. ``kind``: polygon | box | ellipse | ring | line | detail | detail_box."""

    kind: str
    points: tuple[Point, ...]
    cls: int = 0
    part: int = 0  # which instance of the thing it belongs to (e.g. 0 = bicycle, 1 = its rider)
    shade: int = NEUTRAL
    width: float = 0.0  # line width / ring width (px)


@dataclass
class Thing:
    """A placed object: shapes plus what placement needs."""

    z: float  # depth of its nearest point (m), for the painter's order
    shapes: list[Shape] = field(default_factory=list)
    footprint: tuple[float, float, float, float] | None = None  # ground box x0, x1, z0, z1 (m)
    protected: bool = False  # carries a context rule: nothing may overlap it in the image
    anchor: tuple[float, float] | None = None  # columns that must be in view for the rule to be visible

    def add(
        self, kind: str, points: Sequence[Point], cls: int = 0, part: int = 0, shade: int = NEUTRAL, width: float = 0.0
    ) -> None:
        """Append a shape."""
        self.shapes.append(Shape(kind, tuple(points), cls, part, shade, width))

    def bbox(self) -> tuple[float, float, float, float]:
        """Image box ``(x0, y0, x1, y1)`` of all shapes (lines padded by their width)."""
        pts = np.asarray([p for s in self.shapes for p in s.points], dtype=np.float64)
        pad = max((s.width for s in self.shapes), default=0.0) / 2 + 1
        return (pts[:, 0].min() - pad, pts[:, 1].min() - pad, pts[:, 0].max() + pad, pts[:, 1].max() + pad)

    def draw(self, canvas: Canvas) -> None:
        """Draw all shapes in order; each part gets its own instance id."""
        ids: dict[int, int] = {}
        for s in self.shapes:
            inst = ids.setdefault(s.part, canvas.new_instance())
            if s.kind == "polygon":
                canvas.polygon(s.points, s.cls, inst, s.shade)
            elif s.kind == "box":
                canvas.rect((*s.points[0], *s.points[1]), s.cls, inst, s.shade)
            elif s.kind in ("ellipse", "ring"):
                canvas.ellipse((*s.points[0], *s.points[1]), s.cls, inst, s.shade, ring=s.width)
            elif s.kind == "line":
                canvas.line(s.points, s.width, s.cls, inst, s.shade)
            elif s.kind == "detail":
                canvas.detail(s.points, s.shade)
            elif s.kind == "detail_box":
                canvas.detail_rect((*s.points[0], *s.points[1]), s.shade)


def _box(cx: float, top: float, w: float, bottom: float) -> tuple[Point, Point]:
    return ((cx - w / 2, top), (cx + w / 2, bottom))


def vehicle(cam: Camera, cls: int, x: float, z: float, scale: float, rng: np.random.Generator) -> Thing:
    """A car, truck, bus or train seen from behind at lateral ``x``, depth ``z``, with its visible side face."""
    w, h, length = (v * scale * rng.uniform(0.92, 1.08) for v in VEHICLE_SIZE[cls])
    thing = Thing(z=z, footprint=(x - w / 2, x + w / 2, z, z + length))
    body = 1.0 if cls == CAR else h
    edge = x + w / 2 if x + w / 2 < 0 else x - w / 2 if x - w / 2 > 0 else None
    if edge is not None:  # the side facing the camera's axis is visible, receding to the vanishing point
        thing.add("polygon", cam.wall_quad(edge, z, z + length, 0.2, body), cls, shade=112)
        if cls == CAR:
            thing.add("polygon", cam.wall_quad(edge, z + 1.0, z + 3.4, body, h), cls, shade=112)
            thing.add("detail", cam.wall_quad(edge, z + 1.2, z + 3.2, body + 0.05, h - 0.08), DARK)
        else:
            thing.add("detail", cam.wall_quad(edge, z + 0.6, z + length - 0.6, 0.5 * h, 0.8 * h), DARK)
        for zw in (z + 0.9, z + length - 0.9):
            thing.add("detail", cam.wall_quad(edge, zw - 0.4, zw + 0.4, 0.0, 0.75), DARK)
    _rear_face(thing, cam, cls, x, w, h, body)
    return thing


def _trapezoid(
    cam: Camera, left: float, right: float, bottom: float, top: float, inset: float, z: float
) -> list[Point]:
    """A vertical trapezoid facing the camera at depth ``z``, narrower at the top by ``inset`` on each side."""
    return [
        cam.project(left, bottom, z),
        cam.project(left + inset, top, z),
        cam.project(right - inset, top, z),
        cam.project(right, bottom, z),
    ]


def _rear_face(thing: Thing, cam: Camera, cls: int, x: float, w: float, h: float, body: float) -> None:
    z = thing.z
    for wx in (x - w / 2 + 0.3, x + w / 2 - 0.3):  # wheels
        thing.add("box", (cam.project(wx - 0.18, 0.45, z), cam.project(wx + 0.18, 0.0, z)), cls, shade=DARK)
    thing.add("box", (cam.project(x - w / 2, body, z), cam.project(x + w / 2, 0.2, z)), cls)
    if cls == CAR:
        thing.add("polygon", _trapezoid(cam, x - w / 2 + 0.05, x + w / 2 - 0.05, body, h, 0.2, z), cls)
        thing.add("detail", _trapezoid(cam, x - w / 2 + 0.25, x + w / 2 - 0.25, body + 0.05, h - 0.07, 0.1, z), DARK)
        for lx in (x - w / 2 + 0.2, x + w / 2 - 0.2):  # tail lights
            thing.add("detail_box", (cam.project(lx - 0.12, 0.85, z), cam.project(lx + 0.12, 0.7, z)), BRIGHT)
    else:
        thing.add(
            "detail_box",
            (cam.project(x - w / 2 + 0.2, 0.85 * h, z), cam.project(x + w / 2 - 0.2, 0.55 * h, z)),
            DARK if cls != TRUCK else DIM,
        )


def person(cam: Camera, x: float, z: float, scale: float, thin: float, rng: np.random.Generator) -> Thing:
    """A pedestrian standing or walking at lateral ``x``, depth ``z``."""
    s = cam.scale(z)
    h = rng.uniform(1.55, 1.95) * scale
    cx, foot = cam.project(x, 0.0, z)
    body_w = max(thin, 0.42 * s * scale)
    stride = rng.uniform(0.0, 0.35) * s
    thing = Thing(z=z, footprint=(x - 0.3, x + 0.3, z, z + 0.4))
    hip, shoulder = foot - 0.5 * h * s, foot - 0.82 * h * s
    leg_w = max(thin * 0.75, 0.16 * s * scale)
    for dx in (-stride / 2, stride / 2):
        thing.add("line", [(cx + dx * 0.2, hip), (cx + dx, foot - leg_w / 2)], PERSON, width=leg_w, shade=DIM)
    thing.add("box", _box(cx, shoulder, body_w, hip + leg_w / 2), PERSON)
    r = max(thin * 0.6, 0.075 * h * s)
    head_y = shoulder - r * 0.7
    thing.add("ellipse", ((cx - r, head_y - r), (cx + r, head_y + r)), PERSON, shade=150)
    return thing


def two_wheeler(
    cam: Camera, x: float, z: float, scale: float, thin: float, rng: np.random.Generator, *, motor: bool, ridden: bool
) -> Thing:
    """A bicycle or motorcycle seen from the side, with its rider on it when ``ridden``."""
    s = cam.scale(z) * scale
    cls = MOTORCYCLE if motor else BICYCLE
    face = 1.0 if rng.random() < 0.5 else -1.0
    half, r = (1.05, 0.33) if motor else (0.85, 0.34)
    cx, ground = cam.project(x, 0.0, z)
    thing = Thing(z=z, footprint=(x - half, x + half, z, z + 0.8), protected=True)
    hubs = [(cx - face * (half - r) * s, ground - r * s), (cx + face * (half - r) * s, ground - r * s)]
    ring = max(thin * 0.75, 0.1 * s)
    for hx, hy in hubs:
        kind = "ellipse" if motor else "ring"
        thing.add(kind, ((hx - r * s, hy - r * s), (hx + r * s, hy + r * s)), cls, shade=DARK, width=ring)
    seat = (cx - face * 0.3 * s, ground - 0.9 * s)
    bar = (cx + face * 0.5 * s, ground - 1.0 * s)
    crank = (cx, ground - 0.3 * s)
    if motor:
        tank = [hubs[0], seat, (seat[0] + face * 0.5 * s, seat[1] - 0.05 * s), bar, hubs[1], crank]
        thing.add("polygon", tank, cls)
    bar_w = max(thin * 0.6, 0.07 * s)
    thing.add("line", [hubs[0], seat, crank, hubs[0]], cls, width=bar_w)
    thing.add("line", [seat, bar, hubs[1], crank], cls, width=bar_w)
    if ridden:
        _rider(thing, seat, bar, crank, s, thin, face)
    box = thing.bbox()
    thing.anchor = (box[0], box[2])
    return thing


def _rider(thing: Thing, seat: Point, bar: Point, pedal: Point, s: float, thin: float, face: float) -> None:
    shoulder = (seat[0] + face * 0.22 * s, seat[1] - 0.6 * s)
    thing.add("line", [seat, pedal], RIDER, part=1, width=max(thin * 0.8, 0.16 * s), shade=DIM)
    thing.add("line", [seat, shoulder], RIDER, part=1, width=max(thin, 0.34 * s))
    thing.add("line", [shoulder, bar], RIDER, part=1, width=max(thin * 0.6, 0.09 * s))
    r = max(thin * 0.6, 0.12 * s)
    head = (shoulder[0] + face * 0.04 * s, shoulder[1] - 0.8 * r)
    thing.add("ellipse", ((head[0] - r, head[1] - r), (head[0] + r, head[1] + r)), RIDER, part=1, shade=150)


def pole_group(
    cam: Camera, x: float, z: float, scale: float, thin: float, rng: np.random.Generator, *, sign: bool, light: bool
) -> Thing:
    """A pole on the sidewalk at lateral ``x``; signs and lights are always attached to it (or to its arm)."""
    s = cam.scale(z)
    toward_road = -1.0 if x > 0 else 1.0
    height = rng.uniform(4.5, 6.0) * scale if light else rng.uniform(3.0, 4.5) * scale
    cx, base = cam.project(x, 0.0, z)
    top = base - height * s
    pw = max(thin, 0.2 * s)
    thing = Thing(z=z, footprint=(x - 0.3, x + 0.3, z, z + 0.3), protected=True)
    thing.add("box", _box(cx, top, pw, base), POLE)
    thing.anchor = (cx - pw / 2, cx + pw / 2)
    if light:
        arm = rng.random() < 0.5 and top > 1  # an arm above the image would leave its light floating
        _light(thing, cx, top, pw, s, thin, toward_road, arm=arm, arm_len=rng.uniform(1.2, 2.5))
    if sign:
        centre = top + rng.uniform(0.4, 0.8) * s if not light else base - rng.uniform(2.2, 2.6) * s
        _sign(thing, cx, centre, max(thin * 1.6, rng.uniform(0.6, 0.9) * s * scale), int(rng.integers(4)))
    return thing


def _light(
    thing: Thing, cx: float, top: float, pw: float, s: float, thin: float, toward: float, *, arm: bool, arm_len: float
) -> None:
    lw, lh = max(thin, 0.35 * s), max(2.4 * thin, 0.95 * s)
    if arm:  # a horizontal arm over the road (part of the pole) with the light hanging from its end
        aw = max(thin * 0.75, 0.15 * s)
        end = cx + toward * arm_len * s
        thing.add("box", ((cx, top), (end, top + aw)), POLE)
        lx, ly = end - toward * lw / 2, top + aw - 1
    else:  # mounted on the side of the pole, near its top
        lx, ly = cx + toward * (pw / 2 + lw / 2 - 1), top + 0.2 * s
    thing.add("box", _box(lx, ly, lw, ly + lh), LIGHT, part=1)
    r = max(1.0, lw * 0.28)
    for k, shade in enumerate((BRIGHT, DIM, DIM)):
        yk = ly + lh * (k + 0.5) / 3
        thing.add("detail", [(lx - r, yk - r), (lx + r, yk - r), (lx + r, yk + r), (lx - r, yk + r)], shade)


def _sign(thing: Thing, cx: float, cy: float, size: float, shape: int) -> None:
    h = size / 2
    if shape == 0:  # round
        thing.add("ellipse", ((cx - h, cy - h), (cx + h, cy + h)), SIGN, part=2)
    elif shape == 1:  # rectangle
        thing.add("box", ((cx - h * 1.2, cy - h * 0.8), (cx + h * 1.2, cy + h * 0.8)), SIGN, part=2)
    elif shape == 2:  # triangle
        thing.add(
            "polygon", [(cx, cy - h * 1.1), (cx + h * 1.1, cy + h * 0.8), (cx - h * 1.1, cy + h * 0.8)], SIGN, part=2
        )
    else:  # diamond
        thing.add(
            "polygon", [(cx, cy - h * 1.1), (cx + h * 1.1, cy), (cx, cy + h * 1.1), (cx - h * 1.1, cy)], SIGN, part=2
        )
    q = h * 0.45
    thing.add(
        "detail",
        [(cx - q, cy - q * 0.4), (cx + q, cy - q * 0.4), (cx + q, cy + q * 0.4), (cx - q, cy + q * 0.4)],
        BRIGHT,
    )
