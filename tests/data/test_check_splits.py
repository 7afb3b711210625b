"""``camix data check`` over every split: images without labels, labels without images, empty splits."""

from __future__ import annotations

from pathlib import Path

import pytest
from _realdata import make_cityscapes, make_gta5, make_synthia

from camix.cli import main
from camix.config import DatasetConfig
from camix.data.check import check_dataset
from camix.errors import ConfigError, DataError


def cityscapes_both(root: Path) -> Path:
    make_cityscapes(root, split="train")
    return make_cityscapes(root, split="val")


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["data", "check", *argv, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_val_with_labels_but_no_images_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = cityscapes_both(tmp_path / "cs")
    for image in (root / "leftImg8bit" / "val").rglob("*.png"):
        image.unlink()
    code, out, _ = check(["--dataset", "cityscapes", "--root", str(root)], capsys)
    assert code == 1
    first = out.splitlines()[0]
    assert first.endswith("checked train: 2 images, 2 labels, 0 problems; val: 0 images, 2 labels, 1 problem")
    assert "[val] split val is empty or missing:" in out and "(2 label files without images)" in out


def test_every_split_lists_images_without_labels_and_labels_without_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = cityscapes_both(tmp_path / "cs")
    orphan_image = root / "leftImg8bit" / "train" / "bremen" / "bremen_000000_000001_leftImg8bit.png"
    orphan_image.unlink()  # its label stays: a label without an image
    missing = root / "gtFine" / "val" / "aachen" / "aachen_000000_000000_gtFine_labelIds.png"
    missing.unlink()  # an image without its label
    report = check_dataset(DatasetConfig(name="cityscapes", root=str(root)), progress=False)
    train, val = report.splits
    assert (train.split, train.num_images, train.num_labels) == ("train", 1, 2)
    assert (val.split, val.num_images, val.num_labels) == ("val", 2, 1)
    label = root / "gtFine" / "train" / "bremen" / "bremen_000000_000001_gtFine_labelIds.png"
    assert train.problems == [f"{label}: label file without its image {orphan_image}"]
    image = root / "leftImg8bit" / "val" / "aachen" / "aachen_000000_000000_leftImg8bit.png"
    assert val.problems == [f"{missing}: label file not found for {image}"]
    assert report.problems == [f"[train] {train.problems[0]}", f"[val] {val.problems[0]}"]
    code, out, _ = check(["--dataset", "cityscapes", "--root", str(root)], capsys)
    assert code == 1 and "train: 1 images, 2 labels, 1 problem; val: 2 images, 1 labels, 1 problem" in out


def test_split_restricts_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = cityscapes_both(tmp_path / "cs")
    for image in (root / "leftImg8bit" / "val").rglob("*.png"):
        image.unlink()
    code, out, _ = check(["--dataset", "cityscapes", "--root", str(root), "--split", "train"], capsys)
    assert code == 0 and out.splitlines()[0].endswith("checked train: 2 images, 2 labels, 0 problems")


def test_labels_without_images_in_gta5_and_synthia(tmp_path: Path) -> None:
    gta = make_gta5(tmp_path / "gta", count=3)
    (gta / "images" / "00002.png").unlink()
    report = check_dataset(DatasetConfig(name="gta5", root=str(gta)), progress=False)
    (split,) = report.splits
    assert (split.split, split.num_images, split.num_labels) == ("all", 2, 3)
    assert split.problems == [f"{gta}/labels/00002.png: label file without its image {gta}/images/00002.png"]
    syn = make_synthia(tmp_path / "syn", count=2)
    (syn / "RGB" / "0000001.png").unlink()
    report = check_dataset(DatasetConfig(name="synthia", root=str(syn)), progress=False)
    assert [(s.num_images, s.num_labels) for s in report.splits] == [(1, 2)]
    assert report.problems == [f"{syn}/GT/LABELS/0000001.png: label file without its image {syn}/RGB/0000001.png"]


def test_list_file_or_limit_skip_the_search_for_unmatched_labels(tmp_path: Path) -> None:
    gta = make_gta5(tmp_path / "gta", count=3)
    report = check_dataset(DatasetConfig(name="gta5", root=str(gta), limit=1), progress=False)
    (split,) = report.splits
    assert split.num_images == 1 and split.problems == [] and "not looked for" in split.notes[0]


def test_no_split_at_all_or_a_wrong_split_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="leftImg8bit/train: folder not found"):
        check_dataset(DatasetConfig(name="cityscapes", root=str(empty)), progress=False)
    gta = make_gta5(tmp_path / "gta", count=1)
    with pytest.raises(ConfigError, match="gta5 has a single split"):
        check_dataset(DatasetConfig(name="gta5", root=str(gta)), splits=["val"], progress=False)
    code, _, err = check(["--dataset", "gta5", "--root", str(gta), "--split", "val"], capsys)
    assert code == 2 and err.count("\n") == 1 and "gta5 has a single split ('all')" in err
