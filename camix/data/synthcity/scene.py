"""The SynthCity scene grammar, shared by both domains: a street in perspective and the objects on it.

Back to front: sky; a skyline of far buildings and trees along the horizon; terrain below the horizon; on each
side of the street a sequence of segments (building facades, rows of trees or open terrain, with walls or fences
along the sidewalk); the road with lane markings and the sidewalks; then the objects sorted by depth. Objects
that carry a context rule (poles with their signs and lights, riders with their two-wheelers) are never
overlapped by any other object, so the rules hold on the label maps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from camix.data.synthcity import things as th
from camix.data.synthcity.canvas import Camera, Canvas
from camix.data.synthcity.params import SceneParams

ROAD, SIDEWALK, BUILDING, WALL, FENCE, VEGETATION, TERRAIN, SKY = 0, 1, 2, 3, 4, 8, 9, 10
FAR = 2000.0  # depth (m) standing in for "at the horizon"
MAX_TRIES = 6
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Street:
    """Lateral layout (m, relative to the camera): road edges and sidewalk widths."""

    left: float
    right: float
    walk_left: float
    walk_right: float

    def curb(self, side: float) -> float:
        """Lateral position of the road edge on ``side`` (-1 left, +1 right)."""
        return self.right if side > 0 else self.left

    def outer(self, side: float) -> float:
        """Lateral position of the outer edge of the sidewalk on ``side``."""
        return self.right + self.walk_right if side > 0 else self.left - self.walk_left


def make_scene(rng: np.random.Generator, size: tuple[int, int], params: SceneParams) -> Canvas:
    """Draw one random scene into a new canvas of ``size`` = (width, height)."""
    width, height = size
    horizon = height * float(np.clip(rng.normal(params.horizon, params.horizon_jitter), 0.2, 0.7))
    vx = width * (0.5 + float(np.clip(rng.normal(0.0, 0.07), -0.2, 0.2)))
    cam = Camera(width, height, horizon, vx, focal=float(width) * params.focal, cam_height=params.camera_height)
    street = Street(
        left=-params.road_half_width * rng.uniform(0.6, 1.4),
        right=params.road_half_width * rng.uniform(0.6, 1.4),
        walk_left=rng.uniform(2.0, 4.5),
        walk_right=rng.uniform(2.0, 4.5),
    )
    canvas = Canvas(width, height, SKY)
    _skyline(canvas, cam, rng)
    canvas.rect((0, horizon, width, height), TERRAIN, canvas.new_instance())
    for side in (-1.0, 1.0):
        _roadside(canvas, cam, street, side, params, rng)
    _street(canvas, cam, street)
    thin = max(2.0, height / 32)
    for thing in sorted(place_things(cam, street, params, thin, rng), key=lambda t: -t.z):
        thing.draw(canvas)
    return canvas


def _skyline(canvas: Canvas, cam: Camera, rng: np.random.Generator) -> None:
    """Far buildings and tree clumps along the horizon."""
    x = -rng.uniform(0, 0.1) * cam.width
    while x < cam.width:
        w = rng.uniform(0.03, 0.13) * cam.width
        kind = rng.random()
        if kind < 0.72:
            top = cam.horizon - rng.uniform(0.03, 0.24) * cam.height
            canvas.rect((x, top, x + w, cam.horizon + 1), BUILDING, canvas.new_instance(), shade=140)
        elif kind < 0.9:
            top = cam.horizon - rng.uniform(0.03, 0.09) * cam.height
            canvas.ellipse((x, top, x + w, cam.horizon + (cam.horizon - top)), VEGETATION, canvas.new_instance())
        x += w


def _roadside(
    canvas: Canvas, cam: Camera, street: Street, side: float, params: SceneParams, rng: np.random.Generator
) -> None:
    """Segments along one side of the street, far to near: facades, trees or open terrain, and barriers."""
    z_far = rng.uniform(90.0, 200.0)
    while z_far > 1.0:
        z_near = z_far / rng.uniform(1.3, 2.0)
        kind = rng.random()
        back = street.outer(side)
        if kind < params.facade_prob:
            setback = 0.0 if rng.random() < 0.6 else rng.uniform(1.0, 4.0)
            height = params.facade_height * rng.uniform(0.5, 1.6)
            _facade(canvas, cam, side * (abs(back) + setback), z_near, z_far, height)
        elif kind < params.facade_prob + params.tree_prob:
            _trees(canvas, cam, side * (abs(back) + rng.uniform(0.8, 2.0)), z_near, z_far, rng)
        barrier = rng.random()
        if barrier < params.wall_prob:
            canvas.polygon(cam.wall_quad(back, z_near, z_far, 0.0, rng.uniform(0.8, 2.2)), WALL, canvas.new_instance())
        elif barrier < params.wall_prob + params.fence_prob:
            _fence(canvas, cam, back, z_near, z_far, rng.uniform(1.0, 2.0))
        z_far = z_near


def _facade(canvas: Canvas, cam: Camera, x: float, z0: float, z1: float, height: float) -> None:
    """A building facade along the street with a grid of windows, and its corner face at the near end."""
    inst = canvas.new_instance()
    outward = 1.0 if x > 0 else -1.0
    canvas.polygon(cam.wall_quad(x, z0, z1, 0.0, height), BUILDING, inst)
    canvas.polygon(
        [
            cam.project(x, 0, z0),
            cam.project(x, height, z0),
            cam.project(x + outward * 15, height, z0),
            cam.project(x + outward * 15, 0, z0),
        ],
        BUILDING,
        inst,
        shade=105,
    )
    if cam.scale(z0) * 1.2 < 1.5:
        return
    for floor in np.arange(1.2, height - 1.2, 3.0):
        for zw in np.arange(z0 + 1.0, z1 - 1.5, 2.6):
            if cam.scale(zw) * 1.2 >= 1.5:
                canvas.detail(cam.wall_quad(x, zw, zw + 1.2, floor, floor + 1.5), 80)


def _trees(canvas: Canvas, cam: Camera, x: float, z0: float, z1: float, rng: np.random.Generator) -> None:
    """A row of trees (trunk and crown, both vegetation) between depths z0 and z1."""
    z = z1
    while z > z0:
        inst = canvas.new_instance()
        trunk_top, radius = rng.uniform(2.0, 3.5), rng.uniform(1.8, 3.2)
        canvas.polygon(cam.wall_quad(x, z, z + 0.35, 0.0, trunk_top + 0.5), VEGETATION, inst, shade=80)
        cx, cy = cam.project(x, trunk_top + radius * 0.8, z)
        r = radius * cam.scale(z)
        canvas.ellipse((cx - r, cy - r * 0.9, cx + r, cy + r * 0.9), VEGETATION, inst)
        z -= rng.uniform(5.0, 10.0)


def _fence(canvas: Canvas, cam: Camera, x: float, z0: float, z1: float, height: float) -> None:
    """A fence along the sidewalk: a panel with darker posts."""
    canvas.polygon(cam.wall_quad(x, z0, z1, 0.0, height), FENCE, canvas.new_instance())
    for z in np.arange(z0, z1, 2.5):
        if cam.scale(z) * 0.15 >= 1.0:
            canvas.detail(cam.wall_quad(x, z, z + 0.15, 0.0, height), 80)


def _street(canvas: Canvas, cam: Camera, street: Street) -> None:
    """The road (with dashed lane markings and curb lines) and the two sidewalks."""
    near = 0.3
    canvas.polygon(cam.ground_quad(street.left, street.right, near, FAR), ROAD, canvas.new_instance())
    for side in (-1.0, 1.0):
        curb, outer = street.curb(side), street.outer(side)
        canvas.polygon(cam.ground_quad(curb, outer, near, FAR), SIDEWALK, canvas.new_instance())
        canvas.detail(cam.ground_quad(curb, curb + side * 0.25, near, FAR), 175)
    lanes = np.arange(street.left + 3.5, street.right - 1.0, 3.5)
    for x in lanes:
        for z in np.arange(1.0, 80.0, 9.0):
            canvas.detail(cam.ground_quad(x - 0.08, x + 0.08, z, z + 3.0), 225)


def _inverse_depth(rng: np.random.Generator, z_min: float, z_max: float) -> float:
    """A depth between z_min and z_max, uniform in inverse depth (i.e. in image row)."""
    return 1.0 / rng.uniform(1.0 / z_max, 1.0 / z_min)


def place_things(
    cam: Camera, street: Street, params: SceneParams, thin: float, rng: np.random.Generator
) -> list[th.Thing]:
    """Sample the objects of a scene; rule-carrying groups first so that they are placed most often."""
    near, sc = cam.near_depth(), params.object_scale
    placed: list[tuple[th.Thing, Box]] = []

    def side() -> float:
        return -1.0 if rng.random() < 0.5 else 1.0

    def walk_x(s: float, margin: float) -> float:
        return s * rng.uniform(abs(street.curb(s)) + margin, abs(street.outer(s)) - margin)

    def road_x(w: float) -> float:
        lo, hi = street.left + w / 2 + 0.2, street.right - w / 2 - 0.2
        return rng.uniform(lo, hi) if hi > lo else (lo + hi) / 2

    def rider() -> th.Thing:
        s = side()
        x = s * (abs(street.curb(s)) - rng.uniform(0.6, 1.6)) if rng.random() < 0.7 else road_x(2.0)
        return th.two_wheeler(
            cam, x, _inverse_depth(rng, near * 1.2, 28.0), sc, thin, rng, motor=rng.random() < 0.45, ridden=True
        )

    def parked() -> th.Thing:
        z = _inverse_depth(rng, near * 1.2, 22.0)
        return th.two_wheeler(cam, walk_x(side(), 0.6), z, sc, thin, rng, motor=rng.random() < 0.4, ridden=False)

    def pole() -> th.Thing:
        s = side()
        x = s * (abs(street.curb(s)) + 0.35) if rng.random() < 0.75 else s * (abs(street.outer(s)) - 0.3)
        return th.pole_group(
            cam,
            x,
            _inverse_depth(rng, near * 1.15, 35.0),
            sc,
            thin,
            rng,
            sign=rng.random() < params.sign_prob,
            light=rng.random() < params.light_prob,
        )

    def vehicle(cls: int) -> Callable[[], th.Thing]:
        z_max = 60.0 if cls != th.TRAIN else 45.0
        return lambda: th.vehicle(
            cam, cls, road_x(th.VEHICLE_SIZE[cls][0] * sc), _inverse_depth(rng, near * 1.1, z_max), sc, rng
        )

    def pedestrian() -> th.Thing:
        x = walk_x(side(), 0.4) if rng.random() < 0.85 else road_x(0.6)
        return th.person(cam, x, _inverse_depth(rng, near * 1.05, 45.0), sc, thin, rng)

    plan: list[tuple[float, Callable[[], th.Thing]]] = [
        (params.riders, rider),
        (params.poles, pole),
        (params.parked_bikes, parked),
        (params.trains, vehicle(th.TRAIN)),
        (params.buses, vehicle(th.BUS)),
        (params.trucks, vehicle(th.TRUCK)),
        (params.cars, vehicle(th.CAR)),
        (params.persons, pedestrian),
    ]
    for rate, make in plan:
        for _ in range(int(rng.poisson(rate))):
            _try_place(make, placed, cam)
    return [thing for thing, _ in placed]


def _try_place(make: Callable[[], th.Thing], placed: list[tuple[th.Thing, Box]], cam: Camera) -> None:
    """Add a new thing unless it collides on the ground, is out of view, or would overlap a rule-carrying group."""
    for _ in range(MAX_TRIES):
        thing = make()
        box = thing.bbox()
        if box[2] < 0 or box[0] > cam.width or box[3] < cam.horizon or box[1] > cam.height:
            continue
        if thing.anchor is not None and (thing.anchor[0] < 0 or thing.anchor[1] > cam.width - 1):
            continue
        if all(_compatible(thing, box, other, other_box) for other, other_box in placed):
            placed.append((thing, box))
            return


def _compatible(a: th.Thing, box: Box, b: th.Thing, other: Box) -> bool:
    """Whether two things may coexist: no shared ground, and a rule-carrying group is never drawn over."""
    if a.footprint is not None and b.footprint is not None:
        fa, fb = a.footprint, b.footprint
        if fa[0] < fb[1] and fb[0] < fa[1] and fa[2] < fb[3] and fb[2] < fa[3]:
            return False
    if not (a.protected or b.protected):
        return True
    margin = 2.0
    apart = box[2] + margin < other[0] or other[2] + margin < box[0] or box[3] + margin < other[1]
    if apart or other[3] + margin < box[1]:
        return True
    # overlapping in the image: fine only when the rule-carrying one is drawn in front (nearer)
    front, back = (a, b) if a.z < b.z else (b, a)
    return front.protected and not back.protected
