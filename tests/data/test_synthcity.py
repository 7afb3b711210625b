"""SynthCity: layout and label encodings on disk, determinism, the context rules, the domain gap, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camix.cli import main
from camix.data.labels import LABEL_ID_TO_TRAIN_ID, NUM_CLASSES, TRAIN_ID_TO_LABEL_ID
from camix.data.synthcity import SOURCE, DomainStyle, ensure, generate, is_current, load_metadata, sample, target_domain
from camix.data.synthcity import writer as synthcity_writer
from camix.data.synthcity.params import class_colours

ROAD, BUILDING, POLE, LIGHT, SIGN, SKY, RIDER, MOTORCYCLE, BICYCLE = 0, 2, 5, 6, 7, 10, 12, 17, 18
SIZE = (256, 128)
COUNTS = {"num_source": 40, "num_target_train": 12, "num_target_val": 6}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthcity")
    meta = generate(out, seed=0, size=SIZE, progress=False, **COUNTS)
    return out, meta


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _train_ids(path: Path) -> np.ndarray:
    return LABEL_ID_TO_TRAIN_ID[np.asarray(Image.open(path))]


def _label_maps(root: Path) -> Iterator[np.ndarray]:
    yield from (_train_ids(p) for p in sorted(root.rglob("*.png")) if "labels" in p.parts or "gtFine" in p.parts)


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, by iterated minimum-label propagation."""
    big = np.iinfo(np.int64).max
    labels = np.where(mask, np.arange(mask.size, dtype=np.int64).reshape(mask.shape), big)
    while True:
        new = labels.copy()
        new[1:] = np.minimum(new[1:], labels[:-1])
        new[:-1] = np.minimum(new[:-1], labels[1:])
        new[:, 1:] = np.minimum(new[:, 1:], labels[:, :-1])
        new[:, :-1] = np.minimum(new[:, :-1], labels[:, 1:])
        new = np.where(mask, new, big)
        if np.array_equal(new, labels):
            return [labels == v for v in np.unique(labels[mask])]
        labels = new


def _rule_violations(ids: np.ndarray) -> list[str]:
    """The context rules that a label map (trainIds) breaks."""
    problems = []
    poles = _dilate(ids == POLE, 2)
    for cls in (SIGN, LIGHT):
        problems += [f"class {cls} component off its pole" for c in _components(ids == cls) if not (c & poles).any()]
    wheels = (ids == BICYCLE) | (ids == MOTORCYCLE)
    for comp in _components(ids == RIDER):
        rows, cols = np.nonzero(comp)
        below = wheels[:, cols.min() : cols.max() + 1].copy()
        below[: int(rows.mean())] = False
        bike_rows = np.nonzero(below)[0]
        if not (_dilate(comp, 2) & wheels).any() or bike_rows.size == 0 or bike_rows.mean() <= rows.mean():
            problems.append("rider without a two-wheeler under it")
    for col in range(ids.shape[1]):
        means = [np.nonzero(ids[:, col] == cls)[0] for cls in (SKY, BUILDING, ROAD)]
        present = [m.mean() for m in means if m.size]
        if present != sorted(present):
            problems.append(f"column {col}: sky/building/road out of order")
    return problems


def test_layout_and_sizes(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    assert (out / "gta/images/00001.png").is_file() and (out / "gta/labels/00040.png").is_file()
    assert len(list((out / "gta/images").iterdir())) == 40
    train_images = sorted((out / "cityscapes/leftImg8bit/train").rglob("*.png"))
    val_labels = sorted((out / "cityscapes/gtFine/val").rglob("*.png"))
    assert len(train_images) == 12 and len(val_labels) == 6
    assert len({p.parent.name for p in train_images}) >= 2
    first = train_images[0]
    city = first.parent.name
    assert first.name.startswith(f"{city}_") and first.name.endswith("_000019_leftImg8bit.png")
    stem = first.name[: -len("_leftImg8bit.png")]
    assert len(stem.split("_")[1]) == 6 and len(stem.split("_")[2]) == 6
    label = out / "cityscapes/gtFine/train" / city / f"{stem}_gtFine_labelIds.png"
    for image_path, label_path in [(first, label), (out / "gta/images/00007.png", out / "gta/labels/00007.png")]:
        image, lab = Image.open(image_path), Image.open(label_path)
        assert image.mode == "RGB" and lab.mode == "L" and image.size == lab.size == SIZE


def test_labels_are_cityscapes_label_ids(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    valid = set(TRAIN_ID_TO_LABEL_ID) | {0}
    void = total = 0
    for path in sorted(out.rglob("*.png")):
        if "labels" in path.parts or "gtFine" in path.parts:
            ids = np.asarray(Image.open(path))
            assert ids.dtype == np.uint8 and set(np.unique(ids).tolist()) <= valid, path
            void, total = void + int((ids == 0).sum()), total + ids.size
    assert void / total < 0.005


def test_all_classes_occur_in_the_source(dataset: tuple[Path, dict]) -> None:
    out, meta = dataset
    counts = np.zeros(NUM_CLASSES, dtype=np.int64)
    for ids in _label_maps(out / "gta"):
        counts += np.bincount(ids.ravel(), minlength=256)[:NUM_CLASSES]
    assert (counts >= 200).all(), counts
    assert list(meta["class_pixels"]["source"].values()) == counts.tolist()


def test_metadata(dataset: tuple[Path, dict]) -> None:
    out, meta = dataset
    assert json.loads((out / "synthcity.json").read_text()) == meta == load_metadata(out)
    assert meta["params"] == {"seed": 0, "size": list(SIZE), "gap": 1.0, **COUNTS}
    assert set(meta["class_pixels"]) == {"source", "target_train", "target_val"}
    assert is_current(out, seed=0, size=SIZE, gap=1.0, **COUNTS)
    assert not is_current(out, seed=1, size=SIZE, gap=1.0, **COUNTS)
    assert not is_current(out, seed=0, size=SIZE, gap=0.5, **COUNTS)


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    small = {"size": (96, 48), "num_source": 3, "num_target_train": 2, "num_target_val": 2, "progress": False}
    generate(tmp_path / "a", seed=5, **small)
    generate(tmp_path / "b", seed=5, **small)
    generate(tmp_path / "c", seed=6, **small)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == 14 and a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_an_image_does_not_depend_on_the_count(tmp_path: Path) -> None:
    generate(
        tmp_path / "few", seed=3, size=(96, 48), num_source=1, num_target_train=1, num_target_val=0, progress=False
    )
    generate(
        tmp_path / "more", seed=3, size=(96, 48), num_source=4, num_target_train=3, num_target_val=1, progress=False
    )
    few, more = _files(tmp_path / "few"), _files(tmp_path / "more")
    assert few and all(more[k] == v for k, v in few.items())


@pytest.mark.parametrize("key", [0, 1])
def test_context_rules_hold(key: int) -> None:
    domain = SOURCE if key == 0 else target_domain(1.0)
    problems = [(i, p) for i in range(40) for p in _rule_violations(sample(11, key, i, SIZE, domain)[1])]
    assert not problems, problems[:5]


def test_context_rules_hold_on_disk(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    assert all(not _rule_violations(ids) for ids in _label_maps(out))


def _class_means(key: int, gap: float, n: int = 16) -> np.ndarray:
    """Mean RGB of each class over n images (NaN for absent classes)."""
    domain = SOURCE if key == 0 else target_domain(gap)
    sums, counts = np.zeros((NUM_CLASSES, 3)), np.zeros(NUM_CLASSES)
    for i in range(n):
        rgb, ids = sample(2, key, i, SIZE, domain)
        for cls in np.unique(ids):
            sums[cls] += rgb[ids == cls].sum(axis=0)
            counts[cls] += (ids == cls).sum()
    return sums / np.where(counts > 0, counts, np.nan)[:, None]


def test_target_appearance_differs_by_gap() -> None:
    source = _class_means(0, 0.0)
    shift_1 = np.linalg.norm(_class_means(1, 1.0) - source, axis=1)
    shift_0 = np.linalg.norm(_class_means(1, 0.0) - source, axis=1)
    shift_1, shift_0 = shift_1[~np.isnan(shift_1)], shift_0[~np.isnan(shift_0)]
    assert len(shift_1) >= 17 and len(shift_0) >= 17
    assert np.median(shift_1) > 40 and shift_1.min() > 15, shift_1.round()
    assert np.median(shift_0) < 8 and shift_0.max() < 25, shift_0.round()


def test_target_has_a_higher_horizon() -> None:
    def road_top(key: int, gap: float) -> float:
        domain = SOURCE if key == 0 else target_domain(gap)
        return float(
            np.mean([np.nonzero((sample(4, key, i, SIZE, domain)[1] == ROAD).any(1))[0][0] for i in range(12)])
        )

    source, same, shifted = road_top(0, 0.0), road_top(1, 0.0), road_top(1, 1.0)
    assert abs(source - same) < 3 and source - shifted > 6, (source, same, shifted)


def cli_argv(out: Path, source: int, train: int, val: int, *extra: str) -> list[str]:
    """``camix data synthcity`` arguments for a 64x32 dataset of the given image counts."""
    counts = ["--num-source", str(source), "--num-target-train", str(train), "--num-target-val", str(val)]
    return ["data", "synthcity", "--out", str(out), "--size", "64x32", *counts, *extra]


def test_interrupted_run_leaves_no_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "sc"
    generate(out, size=(64, 32), num_source=2, num_target_train=1, num_target_val=1, progress=False)
    calls = []

    def failing_save(array: np.ndarray, path: Path) -> None:
        calls.append(path)
        if len(calls) > 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(synthcity_writer, "_save_png", failing_save)
    with pytest.raises(KeyboardInterrupt):
        generate(out, size=(64, 32), num_source=2, num_target_train=1, num_target_val=1, progress=False)
    assert not (out / "synthcity.json").exists() and load_metadata(out) is None
    monkeypatch.undo()
    assert main(cli_argv(out, 1, 1, 1, "--no-progress")) == 0
    assert len(list((out / "gta/images").iterdir())) == 1  # stale images of the earlier run are gone


def test_cli_writes_the_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synthcity"
    argv = cli_argv(out, 2, 2, 1, "--seed", "7", "--gap", "0.5")
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert str(out / "gta") in printed and str(out / "cityscapes") in printed and "name: gta5" in printed
    meta = json.loads((out / "synthcity.json").read_text())
    assert meta["params"]["seed"] == 7 and meta["params"]["gap"] == 0.5 and meta["params"]["size"] == [64, 32]
    assert len(list(out.rglob("*.png"))) == 10


@pytest.mark.parametrize("size", ["abc", "0x5", "64x", "12x12"])
def test_cli_rejects_bad_sizes(tmp_path: Path, size: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synthcity", "--out", str(tmp_path / "x"), "--size", size]) == 2
    err = capsys.readouterr().err
    assert "--size" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_cli_refuses_a_foreign_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    argv = cli_argv(tmp_path, 1, 1, 0, "--no-progress")
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert main([*argv, "--force"]) == 0
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "synthcity.json").is_file()


def test_bad_counts_and_gap_are_config_errors(tmp_path: Path) -> None:
    base = ["data", "synthcity", "--out", str(tmp_path / "x"), "--size", "64x32"]
    assert main([*base, "--num-source", "-1"]) == 2
    assert main([*base, "--gap", "-0.5"]) == 2


def test_class_colours_stay_distinct_for_every_gap() -> None:
    for shift in np.linspace(0.0, 1.0, 41):
        colours = class_colours(DomainStyle(colour_shift=float(shift)))
        dist = np.linalg.norm(colours[:, None] - colours[None], axis=-1) + np.eye(NUM_CLASSES) * 1e9
        assert dist.min() >= 25, shift
    source, target = class_colours(DomainStyle(colour_shift=0.0)), class_colours(DomainStyle(colour_shift=1.0))
    nearest = np.linalg.norm(target[:, None] - source[None], axis=-1).argmin(axis=1)
    assert (nearest != np.arange(NUM_CLASSES)).sum() >= 15  # most classes look like another class of the source


def test_ensure_regenerates_only_when_parameters_change(tmp_path: Path) -> None:
    params = {"size": (64, 32), "num_source": 1, "num_target_train": 1, "num_target_val": 1, "progress": False}
    first = ensure(tmp_path, **params)
    stamp = (tmp_path / "synthcity.json").stat().st_mtime_ns
    assert ensure(tmp_path, **params) == first and (tmp_path / "synthcity.json").stat().st_mtime_ns == stamp
    assert ensure(tmp_path, **{**params, "seed": 1})["params"]["seed"] == 1
