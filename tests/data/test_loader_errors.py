"""Every bad-input case of the real-dataset loaders is a one-line DataError/ConfigError naming the path."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from _realdata import make_cityscapes, make_gta5, make_synthia, noise_image, save
from PIL import Image

from camix.config import DatasetConfig
from camix.data.datasets import build_dataset
from camix.errors import ConfigError, DataError


def gta(root: Path, **kwargs: object) -> DatasetConfig:
    return DatasetConfig(name="gta5", root=str(root), **kwargs)  # type: ignore[arg-type]


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        build_dataset(gta(tmp_path / "nowhere"))
    assert "nowhere" in one_line(exc) and "images/00001.png" in one_line(exc)


def test_empty_root_string() -> None:
    with pytest.raises(DataError, match="no dataset root given"):
        build_dataset(DatasetConfig(name="gta5", root=""))


def test_empty_image_folder(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataError) as exc:
        build_dataset(gta(tmp_path))
    assert "no images" in one_line(exc) and str(tmp_path / "images") in one_line(exc)


def test_misnamed_folder_lists_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "image").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataError) as exc:
        build_dataset(gta(tmp_path))
    assert str(tmp_path / "images") in one_line(exc) and "image/" in one_line(exc)


def test_cityscapes_misnamed_split(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs", split="val")
    with pytest.raises(DataError, match=r"leftImg8bit/train: folder not found"):
        build_dataset(DatasetConfig(name="cityscapes", root=str(root), split="train"))


def test_synthia_without_label_folder(tmp_path: Path) -> None:
    root = make_synthia(tmp_path / "syn", count=1)
    (root / "GT" / "LABELS").rename(root / "GT" / "LABEL")
    with pytest.raises(DataError, match="LABELS: folder not found"):
        build_dataset(DatasetConfig(name="synthia", root=str(root)))


def test_wrong_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid names: gta5, synthia, cityscapes"):
        build_dataset(DatasetConfig(name="kitti", root=str(tmp_path)))  # type: ignore[arg-type]


def test_missing_label(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=3)
    (root / "labels" / "00002.png").unlink()
    with pytest.raises(DataError) as exc:
        build_dataset(gta(root))
    assert str(root / "labels" / "00002.png") in one_line(exc) and "camix data check" in one_line(exc)


def test_size_mismatch_without_resize(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=1, size=(40, 24))
    save(root / "images" / "00001.png", noise_image(42, 24))
    with pytest.raises(DataError) as exc:
        build_dataset(gta(root))[0]
    assert "00001.png is 42x24 but its label" in one_line(exc) and "size" in one_line(exc)


def test_size_mismatch_with_resize_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_gta5(tmp_path / "gta", count=2, size=(40, 24))
    save(root / "images" / "00001.png", noise_image(42, 26))
    save(root / "images" / "00002.png", noise_image(44, 26))
    ds = build_dataset(gta(root, size=(20, 12)))
    with caplog.at_level(logging.WARNING):
        items = [ds[0], ds[1], ds[0]]
    assert all(item["label"].shape == (12, 20) and item["image"].shape == (3, 12, 20) for item in items)
    assert len([r for r in caplog.records if "resizing both" in r.getMessage()]) == 1


def test_truncated_image(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=1, size=(64, 48))
    path = root / "images" / "00001.png"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError) as exc:
        build_dataset(gta(root))[0]
    assert str(path) in one_line(exc) and "cannot decode image" in one_line(exc)


def test_non_image_file(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=1)
    path = root / "images" / "00001.png"
    path.write_text("not a png")
    with pytest.raises(DataError, match="cannot decode image"):
        build_dataset(gta(root))[0]


def test_worker_errors_stay_one_line(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=1)
    (root / "images" / "00001.png").write_text("not a png")
    batches = iter(torch.utils.data.DataLoader(build_dataset(gta(root)), num_workers=1))
    with pytest.raises(DataError) as exc:
        next(batches)
    # torch leaves the errored iterator in a reference cycle whose collection later waits 5 s on the worker
    getattr(batches, "_shutdown_workers", lambda: None)()
    message = one_line(exc)
    assert message.startswith(str(root / "images" / "00001.png") + ": cannot decode image")
    assert message.endswith("(in a DataLoader worker)")


def test_non_image_label(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=1)
    (root / "labels" / "00001.png").write_text("not a png")
    with pytest.raises(DataError, match="cannot decode label map"):
        build_dataset(gta(root))[0]


def test_unknown_label_ids(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=1, size=(40, 24))
    label = np.full((24, 40), 7, np.uint8)
    label[3, 5] = 77
    save(root / "labels" / "00001.png", label)
    with pytest.raises(DataError) as exc:
        build_dataset(gta(root))[0]
    assert "unknown label ids 77" in one_line(exc) and "00001.png" in one_line(exc)


def test_colour_coded_label(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=1, size=(40, 24))
    save(root / "labels" / "00001.png", noise_image(40, 24))
    with pytest.raises(DataError, match="mode RGB"):
        build_dataset(gta(root))[0]


def test_synthia_unknown_and_truncated_labels(tmp_path: Path) -> None:
    root = make_synthia(tmp_path / "syn", count=2, size=(20, 12))
    from _realdata import encode_png_rgb16

    bad = np.zeros((12, 20, 3), np.uint16)
    bad[0, 0, 0] = 300  # no such SYNTHIA id (and > 255: PIL alone would read it as 1)
    (root / "GT" / "LABELS" / "0000000.png").write_bytes(encode_png_rgb16(bad))
    second = root / "GT" / "LABELS" / "0000001.png"
    second.write_bytes(second.read_bytes()[:60])
    ds = build_dataset(DatasetConfig(name="synthia", root=str(root)))
    with pytest.raises(DataError, match="unknown label ids 300"):
        ds[0]
    with pytest.raises(DataError, match=r"0000001\.png: cannot decode label map"):
        ds[1]


def test_list_file_errors(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=1)
    with pytest.raises(DataError, match="list file not found"):
        build_dataset(gta(root, list_file=str(tmp_path / "missing.txt")))
    listing = tmp_path / "list.txt"
    listing.write_text("00001.png\n00009.png\n")
    with pytest.raises(DataError, match=r"list.txt:2: image .*00009.png not found"):
        build_dataset(gta(root, list_file=str(listing)))


def test_crop_with_native_labels_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="native"):
        build_dataset(gta(make_gta5(tmp_path / "g", 1), label_size="native"), crop=(8, 8))


def test_16_bit_greyscale_image_is_an_error_not_a_white_image(tmp_path: Path) -> None:
    from camix.data.check import check_dataset

    root = make_gta5(tmp_path / "gta", count=2)
    grey16 = np.full((24, 40), 1000, dtype=np.uint16)  # a dark 16-bit photo: PIL's RGB conversion makes it white
    Image.fromarray(grey16).save(root / "images" / "00002.png")
    assert Image.open(root / "images" / "00002.png").mode == "I;16"
    dataset = build_dataset(gta(root), crop=None, train=False)
    assert dataset[0]["image"].shape == (3, 24, 40)
    with pytest.raises(DataError) as exc:
        dataset[1]
    assert "00002.png: image mode I;16" in one_line(exc) and "8-bit" in one_line(exc)
    report = check_dataset(gta(root), progress=False)
    assert len(report.problems) == 1 and "00002.png: image mode I;16" in report.problems[0]


def test_interrupted_synthcity_is_refused_by_every_reader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from camix.cli import main
    from camix.data.check import check_dataset
    from camix.data.prior import compute_prior
    from camix.data.synthcity import generate
    from camix.data.synthcity.writer import PARTIAL

    out = tmp_path / "synthcity"
    generate(out, size=(32, 16), num_source=2, num_target_train=2, num_target_val=2, progress=False)
    (out / PARTIAL).write_text("generation in progress or interrupted\n")  # what a SIGTERM during generation leaves
    source = gta(out / "gta")
    target = DatasetConfig(name="cityscapes", root=str(out / "cityscapes"), split="val")
    for read in (
        lambda: check_dataset(source, progress=False),
        lambda: build_dataset(source),
        lambda: build_dataset(target, crop=None, train=False),
        lambda: compute_prior(source, (32, 16), progress=False),
    ):
        with pytest.raises(DataError) as exc:
            read()
        assert f"{out}: SynthCity generation was interrupted" in one_line(exc)
    assert main(["data", "check", "--dataset", "gta5", "--root", str(out / "gta"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "camix data synthcity --out" in err
