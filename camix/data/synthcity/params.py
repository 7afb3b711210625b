"""The knobs of SynthCity: scene statistics and appearance of each domain, and how ``gap`` blends them.

A :class:`Domain` is a pair of frozen dataclasses: :class:`SceneParams` (what is in a scene and where: horizon,
camera height, object frequencies and sizes) and :class:`DomainStyle` (how it looks: colours, texture, lighting,
noise, blur). :data:`SOURCE` is the "rendered" domain; :data:`TARGET` is the "photographed" domain at ``gap=1``.
The target used for a given ``gap`` is the field-wise linear blend ``SOURCE + gap * (TARGET - SOURCE)``
(:func:`target_domain`), clamped to each knob's valid range, so ``gap=0`` makes the target look like the source
and ``gap>1`` extrapolates to a harder benchmark. Tune the gap by editing :data:`TARGET` (and bump
``GENERATOR_VERSION`` in ``camix.data.synthcity.writer`` so existing datasets are regenerated).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

_T = TypeVar("_T")


def knob(default: float, lo: float, hi: float, since: str = "1.1") -> Any:
    """A float field with a valid range; blended and extrapolated values are clamped to ``[lo, hi]``.

    ``since`` is the generator version that introduced the knob: its default reproduces the older versions
    exactly, and the metadata of an older version leaves it out (:func:`as_dict`).
    """
    return field(default=default, metadata={"range": (lo, hi), "since": since})


@dataclass(frozen=True)
class SceneParams:
    """Scene statistics of one domain (the shared grammar's free parameters).

    Rates are expected counts per image (Poisson); probabilities are per pole / per roadside segment.
    """

    horizon: float = knob(0.44, 0.2, 0.7)  # mean horizon row as a fraction of the image height (camera pitch)
    horizon_jitter: float = knob(0.03, 0.0, 0.2)  # std of the horizon row, fraction of the height
    camera_height: float = knob(1.6, 0.8, 4.0)  # metres above the road: higher -> road wider relative to objects
    object_scale: float = knob(1.0, 0.5, 2.0)  # multiplies the size of every object (vehicles, people, poles)
    road_half_width: float = knob(4.5, 2.5, 8.0)  # mean distance (m) from the camera to each road edge
    cars: float = knob(3.0, 0.0, 20.0)
    trucks: float = knob(0.45, 0.0, 10.0)
    buses: float = knob(0.4, 0.0, 10.0)
    trains: float = knob(0.2, 0.0, 5.0)
    persons: float = knob(2.5, 0.0, 20.0)
    riders: float = knob(0.9, 0.0, 10.0)
    parked_bikes: float = knob(0.3, 0.0, 10.0)
    poles: float = knob(3.0, 0.0, 20.0)
    sign_prob: float = knob(0.65, 0.0, 1.0)  # a pole carries a traffic sign
    light_prob: float = knob(0.45, 0.0, 1.0)  # a pole carries a traffic light
    facade_prob: float = knob(0.5, 0.0, 1.0)  # a roadside segment is a building facade
    tree_prob: float = knob(0.3, 0.0, 1.0)  # ... a row of trees (otherwise open terrain)
    wall_prob: float = knob(0.25, 0.0, 1.0)  # a segment has a wall along the sidewalk
    fence_prob: float = knob(0.25, 0.0, 1.0)  # ... a fence (when it has no wall)
    facade_height: float = knob(11.0, 3.0, 40.0)  # mean facade height (m)
    focal: float = knob(1.0, 0.5, 2.0, since="2.0")  # focal length in image widths: larger -> narrower field of view


@dataclass(frozen=True)
class DomainStyle:
    """Appearance of one domain. Brightness-like knobs are fractions (0.1 = +-10 %); noise is in grey levels."""

    colour_shift: float = knob(0.0, 0.0, 1.0)  # 0: rendered class colours, 1: photographed (CLASS_LOOKS)
    lookalike: float = knob(0.0, 0.0, 1.0, since="2.0")  # LOOKALIKE_PAIRS drawn together: 1 = identical colours
    lookalike_things: float = knob(0.0, 0.0, 1.0, since="2.1")  # LOOKALIKE_THINGS drawn together, the same way
    instance_jitter: float = knob(0.07, 0.0, 0.5)  # per-instance brightness / tint variation
    detail_contrast: float = knob(0.35, 0.0, 1.0)  # contrast of details: windows, wheels, lane markings
    texture: float = knob(0.0, 0.0, 1.0)  # strength of per-class texture (cloud, grain, foliage...)
    lighting: float = knob(0.0, 0.0, 1.0)  # per-image lighting gradient, exposure and vignetting
    white_balance: float = knob(0.0, 0.0, 0.5)  # std of a per-image colour cast
    noise: float = knob(1.5, 0.0, 40.0)  # std of Gaussian sensor noise (grey levels)
    blur: float = knob(0.0, 0.0, 4.0)  # Gaussian blur radius in pixels at 128 rows (scales with the height)


@dataclass(frozen=True)
class Domain:
    """Everything that defines one domain."""

    scene: SceneParams = field(default_factory=SceneParams)
    style: DomainStyle = field(default_factory=DomainStyle)


SOURCE = Domain()
"""The "rendered" source domain: flat colours, crisp edges, little noise."""

TARGET = Domain(
    scene=SceneParams(
        horizon=0.36,
        camera_height=2.0,
        object_scale=1.12,
        road_half_width=5.0,
        cars=4.0,
        trucks=0.25,
        buses=0.25,
        trains=0.1,
        persons=4.0,
        riders=1.2,
        parked_bikes=0.6,
        poles=3.5,
        sign_prob=0.55,
        light_prob=0.55,
        facade_prob=0.6,
        tree_prob=0.25,
        wall_prob=0.15,
        fence_prob=0.35,
        facade_height=14.0,
    ),
    style=DomainStyle(
        # Calibrated with a source-only deeplabv2_tiny (SynthCity 256x128, 1500 iterations): at gap=1 it scores
        # about 35 mIoU19 on the target (67 on a source-like target) while the oracle scores 60+, a gap like
        # GTA5 -> Cityscapes. gap=2 doubles every appearance change (source-only then collapses to ~3).
        colour_shift=0.3,  # 30% of the way to the photographed palette
        instance_jitter=0.1,
        detail_contrast=0.44,
        texture=0.11,
        lighting=0.15,
        white_balance=0.036,
        noise=4.2,
        blur=0.48,
    ),
)
"""The "photographed" target domain at ``gap=1`` of generator version 1.1."""

TARGET_V2 = Domain(
    scene=dataclasses.replace(
        TARGET.scene,
        focal=1.25,  # a narrower field of view than the source's (docs/synthcity.md, "camera")
    ),
    style=dataclasses.replace(
        TARGET.style,
        lookalike=0.8,  # road/sidewalk, building/wall, vegetation/terrain look alike (docs/synthcity.md)
        texture=0.4,  # stronger class-specific surface texture: stains, patches, foliage (docs/synthcity.md)
    ),
)
"""The "photographed" target domain at ``gap=1`` of generator version 2.0 (docs/synthcity.md)."""

TARGET_V21 = Domain(
    scene=TARGET_V2.scene,
    style=dataclasses.replace(
        TARGET_V2.style,
        lookalike_things=0.6,  # person/rider, truck/bus, motorcycle/bicycle look alike (docs/synthcity.md)
    ),
)
"""The "photographed" target domain at ``gap=1`` of generator version 2.1 (docs/synthcity.md)."""

DOMAINS: dict[str, tuple[Domain, Domain]] = {
    "1.1": (SOURCE, TARGET),
    "2.0": (SOURCE, TARGET_V2),
    "2.1": (SOURCE, TARGET_V21),
}
"""Generator version -> (source, target at ``gap=1``). Every version's files stay reproducible."""

# Per class (index = trainId): the rendered colour (source), the photographed colour (target at colour_shift=1) and
# the weights of the coarse / medium / fine texture fields (target). Every photographed colour lies nearer to the
# rendered colour of a *different* class than to its own (a permutation-like gap), yet along the whole blend
# (colour_shift 0..1) the 19 class colours stay at least 28 RGB units apart, so no two classes ever merge; swapped
# pairs were nudged off each other's path for that (tests/data/test_synthcity.py checks it).
CLASS_LOOKS: tuple[tuple[tuple[int, int, int], tuple[int, int, int], tuple[float, float, float]], ...] = (
    ((80, 80, 88), (170, 137, 134), (0.4, 0.3, 0.7)),  # road: dark asphalt -> pale worn asphalt (~ sidewalk)
    ((170, 155, 150), (76, 76, 131), (0.3, 0.6, 0.5)),  # sidewalk: pale paving -> dark blue-grey (~ truck)
    ((145, 100, 80), (180, 170, 180), (0.5, 0.5, 0.3)),  # building: brick -> grey plaster (~ sidewalk)
    ((195, 185, 145), (160, 83, 55), (0.3, 0.6, 0.4)),  # wall: beige -> red brick (~ building)
    ((130, 122, 50), (103, 63, 104), (0.2, 0.4, 0.6)),  # fence: olive wood -> mauve metal (~ road)
    ((55, 55, 65), (140, 153, 130), (0.2, 0.2, 0.3)),  # pole: dark grey -> light grey-green (~ sidewalk)
    ((235, 190, 30), (55, 42, 32), (0.1, 0.1, 0.2)),  # traffic light: yellow -> dark housing (~ pole)
    ((30, 90, 215), (215, 214, 58), (0.1, 0.1, 0.2)),  # traffic sign: blue -> yellow (~ traffic light)
    ((55, 140, 45), (123, 99, 59), (0.5, 1.0, 0.9)),  # vegetation: green -> autumn brown (~ fence)
    ((150, 175, 80), (58, 125, 26), (0.6, 0.8, 0.8)),  # terrain: yellow-green -> grass green (~ vegetation)
    ((115, 170, 235), (197, 199, 227), (1.0, 0.3, 0.0)),  # sky: blue -> overcast white (~ wall)
    ((205, 55, 60), (73, 43, 86), (0.3, 0.5, 0.4)),  # person: red -> dark clothes (~ pole)
    ((240, 125, 25), (51, 162, 138), (0.3, 0.5, 0.4)),  # rider: orange -> teal (~ train)
    ((35, 45, 160), (195, 30, 64), (0.2, 0.2, 0.2)),  # car: dark blue -> red (~ person)
    ((110, 60, 150), (77, 74, 48), (0.3, 0.3, 0.2)),  # truck: purple -> dark olive (~ pole)
    ((240, 150, 170), (48, 91, 213), (0.3, 0.3, 0.2)),  # bus: pink -> blue (~ traffic sign)
    ((50, 160, 160), (240, 140, 65), (0.3, 0.3, 0.2)),  # train: teal -> orange (~ rider)
    ((25, 25, 25), (131, 41, 169), (0.2, 0.2, 0.3)),  # motorcycle: black -> magenta (~ bicycle)
    ((165, 30, 160), (40, 12, 12), (0.2, 0.2, 0.3)),  # bicycle: magenta -> black (~ motorcycle)
)
LOOKALIKE_PAIRS = ((0, 1), (2, 3), (8, 9))
"""Classes that look alike in Cityscapes but not in GTA5: road/sidewalk, building/wall, vegetation/terrain."""
LOOKALIKE_THINGS = ((11, 12), (14, 15), (17, 18))
"""Things that look alike in Cityscapes but not in GTA5: person/rider, truck/bus, motorcycle/bicycle."""
SOURCE_COLOURS = tuple(look[0] for look in CLASS_LOOKS)
TARGET_COLOURS = tuple(look[1] for look in CLASS_LOOKS)
TEXTURE_MIX = tuple(look[2] for look in CLASS_LOOKS)


def blend(a: _T, b: _T, t: float) -> _T:
    """Field-wise ``a + t * (b - a)`` of two instances of a knob dataclass, clamped to each knob's range."""
    values = {}
    for f in dataclasses.fields(a):  # type: ignore[arg-type]
        lo, hi = f.metadata["range"]
        va, vb = getattr(a, f.name), getattr(b, f.name)
        values[f.name] = float(min(hi, max(lo, va + t * (vb - va))))
    return dataclasses.replace(a, **values)  # type: ignore[type-var]


def target_domain(gap: float, source: Domain = SOURCE, target: Domain = TARGET) -> Domain:
    """The target domain for a gap strength: ``source`` at 0, ``target`` at 1, extrapolated beyond."""
    return Domain(blend(source.scene, target.scene, gap), blend(source.style, target.style, gap))


def class_colours(style: DomainStyle) -> np.ndarray:
    """float32 [19, 3]: the class colours of a style.

    The source colours move towards the photographed ones by ``colour_shift``; then each of the
    :data:`LOOKALIKE_PAIRS` moves towards its mean colour by ``lookalike`` (1: the two classes share a colour), and
    each group of :data:`LOOKALIKE_THINGS` by ``lookalike_things``.
    """
    src = np.asarray(SOURCE_COLOURS, dtype=np.float32)
    tgt = np.asarray(TARGET_COLOURS, dtype=np.float32)
    colours = src + style.colour_shift * (tgt - src)
    for groups, strength in ((LOOKALIKE_PAIRS, style.lookalike), (LOOKALIKE_THINGS, style.lookalike_things)):
        if strength > 0:
            for group in groups:
                mean = colours[list(group)].mean(0)
                colours[list(group)] += strength * (mean - colours[list(group)])
    return np.clip(colours, 0.0, 255.0)


def _knobs(obj: Any, version: str) -> dict[str, float]:
    """The knobs of ``obj`` that generator ``version`` knows, rounded so that the metadata is stable."""
    known = [f for f in dataclasses.fields(obj) if _version_key(f.metadata["since"]) <= _version_key(version)]
    return {f.name: round(getattr(obj, f.name), 6) for f in known}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def newer_knobs(domain: Domain, version: str) -> list[str]:
    """The knobs of ``domain`` set away from their defaults that generator ``version`` does not have yet."""
    names = []
    for obj in (domain.scene, domain.style):
        for f in dataclasses.fields(obj):
            if _version_key(f.metadata["since"]) > _version_key(version) and getattr(obj, f.name) != f.default:
                names.append(f.name)
    return names


def as_dict(domain: Domain, version: str = "1.1") -> dict[str, dict[str, float]]:
    """A JSON-ready description of a domain: the knobs generator ``version`` has (rounded)."""
    return {"scene": _knobs(domain.scene, version), "style": _knobs(domain.style, version)}
