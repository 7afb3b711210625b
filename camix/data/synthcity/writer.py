"""Writing SynthCity to disk: a source dataset in the GTA5 layout and a target dataset in the Cityscapes layout.

Every image has its own random stream, ``SeedSequence(seed, spawn_key=(split, index))``, so an image does not
depend on any other image nor on how many are generated; identical arrays give byte-identical PNGs. The metadata
file ``synthcity.json`` is written last (atomically) and removed first, so an interrupted run never leaves a
valid-looking dataset behind.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from camix.data.labels import CLASS_NAMES, NUM_CLASSES, TRAIN_ID_TO_LABEL_ID
from camix.data.synthcity.params import DOMAINS, Domain, as_dict, newer_knobs, target_domain
from camix.data.synthcity.render import render
from camix.data.synthcity.scene import make_scene
from camix.errors import ConfigError, DataError
from camix.io import atomic_write_text

GENERATOR_VERSION = "2.0"  # the default version (the study of record); a new one whenever the generated files change
GENERATOR_VERSIONS = tuple(DOMAINS)  # every version stays reproducible (docs/synthcity.md)
DEFAULT_SIZE = (256, 128)
METADATA = "synthcity.json"
PARTIAL = ".synthcity-partial"  # present while a run is writing; marks the folder as SynthCity output
TRAIN_CITIES = ("alderley", "bramwick", "corrin")
VAL_CITIES = ("dunmore", "elsworth")
FRAME = 19  # the annotated frame number of a Cityscapes sequence
OWNED = ("gta/images", "gta/labels", "cityscapes/leftImg8bit", "cityscapes/gtFine")
SPLIT_KEYS = {"source": 0, "target_train": 1, "target_val": 2}  # the first spawn key of each split's streams

# trainId -> Cityscapes labelId; anything else (void) -> 0 ("unlabeled")
_LABEL_ID_LUT = np.zeros(256, dtype=np.uint8)
_LABEL_ID_LUT[:NUM_CLASSES] = TRAIN_ID_TO_LABEL_ID


@dataclass(frozen=True)
class Split:
    """One generated split: its name, its random-stream key, its size and its domain."""

    name: str  # source | target_train | target_val
    key: int
    count: int
    domain: Domain


def sample(seed: int, key: int, index: int, size: tuple[int, int], domain: Domain) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (RGB uint8 [H, W, 3], trainIds uint8 [H, W]) for image ``index`` of the split with ``key``.

    ``key`` is a value of :data:`SPLIT_KEYS` (0 source, 1 target train, 2 target val); ``generate`` writes exactly
    ``sample(seed, SPLIT_KEYS[split], index, size, domain)``, so this is also the in-memory way to preview images.
    """
    scene_seq, style_seq = np.random.SeedSequence(seed, spawn_key=(key, index)).spawn(2)
    canvas = make_scene(np.random.Generator(np.random.PCG64(scene_seq)), size, domain.scene)
    label, instance, shade = canvas.arrays()
    rgb = render(label, instance, shade, domain.style, np.random.Generator(np.random.PCG64(style_seq)))
    return rgb, label.copy()


def image_paths(out: Path, split: str, index: int) -> tuple[Path, Path]:
    """(image path, label path) of image ``index`` (0-based) of ``split`` under ``out``."""
    if split == "source":
        name = f"{index + 1:05d}.png"
        return out / "gta" / "images" / name, out / "gta" / "labels" / name
    sub, cities = ("train", TRAIN_CITIES) if split == "target_train" else ("val", VAL_CITIES)
    city = cities[index % len(cities)]
    stem = f"{city}_{index // len(cities):06d}_{FRAME:06d}"
    return (
        out / "cityscapes" / "leftImg8bit" / sub / city / f"{stem}_leftImg8bit.png",
        out / "cityscapes" / "gtFine" / sub / city / f"{stem}_gtFine_labelIds.png",
    )


def header(
    *,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    num_source: int = 500,
    num_target_train: int = 500,
    num_target_val: int = 100,
    gap: float = 1.0,
    version: str = GENERATOR_VERSION,
    source: Domain | None = None,
    target: Domain | None = None,
) -> dict[str, Any]:
    """The part of ``synthcity.json`` that identifies a dataset: generator version, parameters and domains.

    ``source`` and ``target`` default to the domains of ``version`` (:data:`~camix.data.synthcity.params.DOMAINS`).
    """
    source, target = domains(version, source, target)
    return {
        "generator": "camix.synthcity",
        "version": version,
        "params": {
            "seed": seed,
            "size": [size[0], size[1]],
            "num_source": num_source,
            "num_target_train": num_target_train,
            "num_target_val": num_target_val,
            "gap": float(gap),
        },
        "domains": {
            "source": as_dict(source, version),
            "target": as_dict(target_domain(gap, source, target), version),
        },
    }


def domains(version: str, source: Domain | None = None, target: Domain | None = None) -> tuple[Domain, Domain]:
    """(source, target at gap 1) of generator ``version``, unless given.

    Raises:
        ConfigError: an unknown version, or a domain that sets knobs ``version`` does not have.
    """
    if version not in DOMAINS:
        raise ConfigError(f"unknown SynthCity generator version {version!r}; choose one of {list(DOMAINS)}")
    default_source, default_target = DOMAINS[version]
    source, target = source or default_source, target or default_target
    for domain in (source, target):
        extra = newer_knobs(domain, version)
        if extra:
            raise ConfigError(f"SynthCity version {version} has no knobs {extra}; use a newer --generator-version")
    return source, target


def load_metadata(out: str | Path) -> dict[str, Any] | None:
    """The metadata of a complete SynthCity dataset in ``out``, or None when there is none (or it is unreadable)."""
    path = Path(out) / METADATA
    if not path.is_file() or (Path(out) / PARTIAL).exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_current(out: str | Path, **params: Any) -> bool:
    """Whether ``out`` holds a complete dataset identical to what ``generate(out, **params)`` would write.

    ``params`` are generate's keyword arguments (``progress`` and ``force`` are ignored).
    """
    meta = load_metadata(out)
    if meta is None:
        return False
    params = {k: v for k, v in params.items() if k not in ("progress", "force")}
    expected = json.loads(json.dumps(header(**params)))  # normalise tuples/floats like a round trip does
    return all(meta.get(k) == v for k, v in expected.items())


def ensure(out: str | Path, *, progress: bool = True, **params: Any) -> dict[str, Any]:
    """Generate SynthCity into ``out`` unless it already holds exactly that dataset; return its metadata.

    ``params`` are generate's keyword arguments. A non-empty folder that is not SynthCity output is refused
    (DataError), as in :func:`generate` without ``force``.
    """
    meta = load_metadata(out) if is_current(out, **params) else None
    return meta if meta is not None else generate(out, progress=progress, **params)


def check_params(size: tuple[int, int], counts: tuple[int, ...], gap: float) -> None:
    """Raise ConfigError for a size under 32x16, a negative image count or a negative gap."""
    if len(size) != 2 or size[0] < 32 or size[1] < 16:
        raise ConfigError(f"SynthCity size must be at least 32x16 (width x height), got {size[0]}x{size[1]}")
    if any(c < 0 for c in counts):
        raise ConfigError(f"SynthCity image counts must be >= 0, got {list(counts)}")
    if not np.isfinite(gap) or gap < 0:
        raise ConfigError(f"SynthCity gap must be a finite number >= 0, got {gap}")


def prepare_output(out: Path, force: bool) -> None:
    """Make ``out`` ready: refuse a foreign non-empty folder unless ``force``; clear a previous SynthCity output."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder; choose another --out")
    ours = (out / METADATA).exists() or (out / PARTIAL).exists()
    if out.is_dir() and any(out.iterdir()) and not ours and not force:
        raise DataError(f"{out} is not empty and holds no SynthCity dataset; choose an empty folder or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    (out / PARTIAL).write_text("generation in progress or interrupted\n", encoding="utf-8")
    (out / METADATA).unlink(missing_ok=True)
    if ours:  # stale images of a previous run (e.g. with more images) must not survive
        for sub in OWNED:
            shutil.rmtree(out / sub, ignore_errors=True)


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def generate(
    out: str | Path,
    *,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    num_source: int = 500,
    num_target_train: int = 500,
    num_target_val: int = 100,
    gap: float = 1.0,
    progress: bool = True,
    force: bool = False,
    version: str = GENERATOR_VERSION,
    source: Domain | None = None,
    target: Domain | None = None,
) -> dict[str, Any]:
    """Generate SynthCity into ``out`` and return its metadata (also written to ``out/synthcity.json``).

    Args:
        out: output folder; gets ``gta/`` (source, GTA5 layout) and ``cityscapes/`` (target train + val).
        seed: random seed; the same seed and parameters give byte-identical files.
        size: (width, height) of every image.
        num_source: number of source images.
        num_target_train: number of target training images.
        num_target_val: number of target validation images.
        gap: domain-gap strength: 0 = the target looks like the source, 1 = default, larger = harder.
        progress: show a progress bar.
        force: write into a non-empty folder that is not a SynthCity output.
        version: the generator version (:data:`GENERATOR_VERSIONS`); each one's files stay reproducible.
        source: the source domain (default: the version's).
        target: the target domain at ``gap=1`` (blended with ``source`` by ``gap``; default: the version's).

    Raises:
        ConfigError: invalid size, counts, gap or version.
        DataError: ``out`` is a non-empty foreign folder and ``force`` is false.
    """
    out = Path(out)
    size = (int(size[0]), int(size[1]))
    counts = (num_source, num_target_train, num_target_val)
    check_params(size, counts, gap)
    source, target = domains(version, source, target)
    prepare_output(out, force)
    tgt = target_domain(gap, source, target)
    splits = [
        Split(name, SPLIT_KEYS[name], count, source if name == "source" else tgt)
        for name, count in zip(SPLIT_KEYS, counts, strict=True)
    ]
    start = time.perf_counter()
    stats = {}
    with tqdm(total=sum(counts), desc="SynthCity", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for split in splits:
            stats[split.name] = _write_split(out, seed, size, split, bar)
    meta = header(
        seed=seed,
        size=size,
        num_source=num_source,
        num_target_train=num_target_train,
        num_target_val=num_target_val,
        gap=gap,
        version=version,
        source=source,
        target=target,
    )
    meta["layout"] = {"source": "gta", "target": "cityscapes", "cities": {"train": TRAIN_CITIES, "val": VAL_CITIES}}
    meta["class_pixels"] = {name: s[0] for name, s in stats.items()}
    meta["class_images"] = {name: s[1] for name, s in stats.items()}
    meta["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_text(out / METADATA, json.dumps(meta, indent=2) + "\n")
    (out / PARTIAL).unlink(missing_ok=True)
    return json.loads(json.dumps(meta))


def _write_split(
    out: Path, seed: int, size: tuple[int, int], split: Split, bar: tqdm
) -> tuple[dict[str, int], dict[str, int]]:
    """Write all images of a split; return its class pixel counts and class image counts."""
    pixels = np.zeros(NUM_CLASSES, dtype=np.int64)
    images = np.zeros(NUM_CLASSES, dtype=np.int64)
    for index in range(split.count):
        rgb, train_ids = sample(seed, split.key, index, size, split.domain)
        image_path, label_path = image_paths(out, split.name, index)
        _save_png(rgb, image_path)
        _save_png(_LABEL_ID_LUT[train_ids], label_path)
        counts = np.bincount(train_ids.ravel(), minlength=256)[:NUM_CLASSES]
        pixels += counts
        images += counts > 0
        bar.update(1)
    return dict(zip(CLASS_NAMES, pixels.tolist(), strict=True)), dict(zip(CLASS_NAMES, images.tolist(), strict=True))
