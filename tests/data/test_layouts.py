"""ACDC, Dark Zurich, BDD100K and folder datasets on format-exact fixtures: what is found, what is read, and every
problem a real copy has, reported by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _layouts import (
    band_train_ids,
    folder_class_ids,
    make_acdc,
    make_bdd100k,
    make_dark_zurich,
    make_folder,
)
from _realdata import noise_image, save

from camix.config import DataConfig, DatasetConfig
from camix.data.check import check_dataset, format_report
from camix.data.datasets import build_dataset, check_roots, find_samples
from camix.data.folder import load_classes
from camix.data.layouts import LAYOUTS, class_names_of
from camix.data.prior import compute_prior
from camix.errors import ConfigError, DataError
from camix.validation import ConfigKeyError


def acdc(root: Path, split: str = "train", **kw: object) -> DatasetConfig:
    return DatasetConfig(name="acdc", root=str(root), split=split, **kw)  # type: ignore[arg-type]


def folder_cfg(root: Path, split: str = "train") -> DatasetConfig:
    classes = str(root / "classes.yaml")
    return DatasetConfig(
        name="folder", root=str(root), split=split, image_suffix=".jpg", label_suffix="_mask.png", classes=classes
    )


def test_every_name_of_the_issue_is_registered() -> None:
    assert set(LAYOUTS) == {"gta5", "synthia", "cityscapes", "acdc", "dark_zurich", "bdd100k", "folder"}


def test_acdc_finds_every_condition_by_default_and_reads_train_ids(tmp_path: Path) -> None:
    root = make_acdc(tmp_path / "acdc")
    samples = find_samples(acdc(root))
    assert [s.name for s in samples] == [
        "rgb_anon/fog/train/GOPR0475/GOPR0475_frame_000247_rgb_anon.png",
        "rgb_anon/night/train/GOPR0351/GOPR0351_frame_000159_rgb_anon.png",
        "rgb_anon/rain/train/GOPR0572/GOPR0572_frame_000145_rgb_anon.png",
        "rgb_anon/snow/train/GOPR0122/GOPR0122_frame_000460_rgb_anon.png",
    ]
    assert samples[0].label == root / "gt/fog/train/GOPR0475/GOPR0475_frame_000247_gt_labelTrainIds.png"
    item = build_dataset(acdc(root))[1]
    assert torch.equal(item["label"], torch.from_numpy(band_train_ids(32, 18)))
    assert item["size"].tolist() == [32, 18]


def test_acdc_conditions_select_and_unknown_ones_are_refused(tmp_path: Path) -> None:
    root = make_acdc(tmp_path / "acdc")
    assert [s.name.split("/")[1] for s in find_samples(acdc(root, "val", conditions=("night", "fog")))] == [
        "night",
        "fog",
    ]
    with pytest.raises(ConfigError, match="'conditions' of dataset acdc: 'haze' is not one of fog, night, rain, snow"):
        find_samples(acdc(root, conditions=("haze",)))


def test_acdc_label_ids_are_read_when_no_train_ids_exist(tmp_path: Path) -> None:
    root = make_acdc(tmp_path / "acdc")
    for path in (root / "gt").rglob("*_gt_labelTrainIds.png"):
        path.unlink()
    item = build_dataset(acdc(root, "val", conditions=("fog",)))[0]
    assert torch.equal(item["label"], torch.from_numpy(band_train_ids(32, 18)))  # labelIds mapped to the same trainIds


def test_acdc_test_split_has_no_labels_and_is_refused_for_evaluation(tmp_path: Path) -> None:
    root = make_acdc(tmp_path / "acdc")
    item = build_dataset(acdc(root, "test", conditions=("snow",)))[0]
    assert (item["label"] == 255).all() and item["image"].shape == (3, 18, 32)
    source = acdc(root, "val", conditions=("fog", "night"))
    data = DataConfig(source=source, val=acdc(root, "test", conditions=("snow",)))
    with pytest.raises(ConfigKeyError, match=r"'data.val.split': acdc split 'test' has no labels"):
        check_roots(data, with_target=False)


def test_dark_zurich_target_is_the_unlabelled_night_train_split(tmp_path: Path) -> None:
    root = make_dark_zurich(tmp_path / "dz")
    cfg = DatasetConfig(name="dark_zurich", root=str(root), split="train")
    assert [s.name for s in find_samples(cfg)] == [
        "rgb_anon/train/night/GOPR0348/GOPR0348_frame_000003_rgb_anon.png",
        "rgb_anon/train/night/GOPR0348/GOPR0348_frame_000004_rgb_anon.png",
    ]
    assert (build_dataset(cfg, crop=(16, 16))[0]["label"] == 255).all()
    every_time = DatasetConfig(name="dark_zurich", root=str(root), conditions=("day", "twilight", "night"))
    assert len(find_samples(every_time)) == 6
    val = build_dataset(DatasetConfig(name="dark_zurich", root=str(root), split="val"))
    assert len(val) == 2 and torch.equal(val[0]["label"], torch.from_numpy(band_train_ids(32, 18)))
    assert val[1]["name"] == "rgb_anon/val/night/GOPR0356/GOPR0356_frame_000322_rgb_anon.png"


def test_bdd100k_reads_jpeg_images_and_train_id_masks(tmp_path: Path) -> None:
    root = make_bdd100k(tmp_path / "bdd")
    ds = build_dataset(DatasetConfig(name="bdd100k", root=str(root), split="val"))
    names = ["images/10k/val/0004a4c0-d4dff0ad.jpg", "images/10k/val/00054602-3bf57337.jpg"]
    assert [ds[i]["name"] for i in range(2)] == names
    assert torch.equal(ds[0]["label"], torch.from_numpy(band_train_ids(32, 18)))


@pytest.mark.parametrize("colours", [False, True])
def test_folder_dataset_maps_ids_or_colours_to_its_classes(tmp_path: Path, colours: bool) -> None:
    root = make_folder(tmp_path / "robot", colours=colours)
    cfg = DatasetConfig(
        name="folder", root=str(root), split="val", image_suffix=".jpg", label_suffix="_mask.png",
        classes=str(root / "classes.yaml"),
    )  # fmt: skip
    ds = build_dataset(cfg)
    assert len(ds) == 2 and ds[1]["name"] == "images/val/cam0/frame_1.jpg"
    assert torch.equal(ds[0]["label"], torch.from_numpy(folder_class_ids(24, 16)))
    assert class_names_of(cfg) == ("sky", "ground", "robot")
    palette = load_classes(str(root / "classes.yaml")).palette
    assert palette[1] == ((128, 64, 128) if colours else (244, 35, 232))  # the mapped colour, else Cityscapes'


def test_folder_label_values_outside_the_mapping_are_named(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "ids")
    bad = np.full((16, 24), 20, np.uint8)
    bad[3, 4] = 99
    save(root / "labels/train/cam0/frame_1_mask.png", bad)
    cfg = folder_cfg(root)
    with pytest.raises(DataError, match=r"frame_1_mask.png: unknown label ids 99 for the ids of classes.yaml"):
        build_dataset(cfg)[1]
    croot = make_folder(tmp_path / "colours", colours=True)
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:2] = (1, 2, 3)
    save(croot / "labels/train/cam0/frame_0_mask.png", rgb)
    ccfg = folder_cfg(croot)
    with pytest.raises(DataError, match=r"frame_0_mask.png: label colours 1,2,3 \(48 px\) are not in the classes file"):
        build_dataset(ccfg)[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("names: [a]\nids: {0: 0}\n", "at least two class names"),
        ("names: [a, b]\n", "exactly one of `ids`"),
        ("names: [a, b]\nids: {0: 2}\n", "ids 0 maps to 2; a class index is in [0, 2) or 255"),
        ("names: [a, b]\ncolors: {'300,0,0': 0}\n", "'300,0,0' is not a colour"),
        ("names: [a, b]\nids: {0: 0}\nweights: 1\n", "unknown key 'weights'"),
    ],
)
def test_bad_classes_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / f"classes_{abs(hash(text))}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_classes(str(path))
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_check_names_every_problem_of_an_acdc_copy(tmp_path: Path) -> None:
    root = make_acdc(tmp_path / "acdc")
    night = root / "rgb_anon/night/train/GOPR0351/GOPR0351_frame_000159_rgb_anon.png"
    save(night, noise_image(30, 18))  # size mismatch
    rain = root / "rgb_anon/rain/train/GOPR0572/GOPR0572_frame_000145_rgb_anon.png"
    rain.write_bytes(rain.read_bytes()[:60])  # unreadable
    snow = root / "gt/snow/train/GOPR0122/GOPR0122_frame_000460_gt_labelTrainIds.png"
    save(snow, np.full((18, 32), 77, np.uint8))  # a value outside the train ids
    for path in (root / "rgb_anon/fog/val").rglob("*.png"):
        path.unlink()  # the fog val split is empty
    report = check_dataset(acdc(root), progress=False)
    problems = report.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith(f"[train] {night}: image is 30x18 but its label")
    assert str(rain) in problems[1] and "cannot decode image" in problems[1]
    assert problems[2] == f"[train] {snow}: unknown label ids 77 (576 px) for Cityscapes labelTrainIds"
    assert problems[3].startswith("[val] split val is empty or missing: ") and "rgb_anon/fog/val" in problems[3]
    assert problems[3].endswith("(2 label files without images)")  # fog's and night's val labels


def test_check_reports_an_empty_split_and_counts_classes(tmp_path: Path) -> None:
    root = make_dark_zurich(tmp_path / "dz")
    report = check_dataset(DatasetConfig(name="dark_zurich", root=str(root)), progress=False)
    assert [s.num_images for s in report.splits] == [2, 2] and not report.problems
    assert "images decoded only" in format_report(report)
    assert int(report.class_pixels[10]) == 2 * 5 * 31  # the sky band: rows 0-4 of 31 labelled pixels, two images
    empty = make_bdd100k(tmp_path / "bdd")
    for path in (empty / "images/10k/val").iterdir():
        path.unlink()
    bdd = check_dataset(DatasetConfig(name="bdd100k", root=str(empty)), progress=False)
    assert bdd.problems[0].startswith("[val] split val is empty or missing")
    assert bdd.problems[0].endswith("(2 label files without images)") and len(bdd.problems) == 1


def test_check_and_prior_of_a_folder_dataset_use_its_classes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "robot", colours=True, size=(4, 4))
    cfg = folder_cfg(root)
    report = check_dataset(cfg, progress=False)
    text = format_report(report)
    assert " 2 robot " in text and "no problems found" in text
    assert report.class_pixels.tolist() == [2 * 2 * 3, 2 * 2 * 3 * 2, 2 * 2 * 3]  # 2 splits x 2 images x bands
    prior, stats = compute_prior(cfg, (4, 4), progress=False)
    expected = torch.zeros(3, 4, 4)
    for row, cls in enumerate((0, 1, 2, 1)):
        expected[cls, row, 1:] = 1.0
    expected[:, :, 0] = 1 / 3  # ignored everywhere: no class seen -> uniform
    assert torch.allclose(prior, expected)
    assert [c["name"] for c in stats["classes"]] == ["sky", "ground", "robot"]


def test_a_mismatched_pair_is_refused_before_training(tmp_path: Path) -> None:
    root = make_acdc(tmp_path / "acdc")
    image = root / "rgb_anon/fog/val/GOPR0476/GOPR0476_frame_000855_rgb_anon.png"
    save(image, noise_image(40, 18))
    data = DataConfig(source=acdc(root, conditions=("fog",)), val=acdc(root, "val", conditions=("fog",)))
    with pytest.raises(DataError, match=f"{image} is 40x18 but its label .* is 32x18; fix the pair"):
        check_roots(data, with_target=False)
    with pytest.raises(DataError, match="is 40x18 but its label"):
        build_dataset(acdc(root, "val", conditions=("fog",), size=(16, 9)))[0]  # resizing does not hide it


def test_data_check_and_prior_commands_on_the_new_layouts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from camix.cli import main
    from camix.data.prior import load_prior

    root = make_acdc(tmp_path / "acdc")
    snow = root / "gt/snow/train/GOPR0122/GOPR0122_frame_000460_gt_labelTrainIds.png"
    save(snow, np.full((18, 32), 77, np.uint8))
    check = ["data", "check", "--dataset", "acdc", "--root", str(root), "--no-progress"]
    assert main([*check, "--condition", "snow", "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"acdc at {root}: checked train: 1 images, 1 labels, 1 problem")
    assert f"{snow}: unknown label ids 77 (576 px) for Cityscapes labelTrainIds" in out
    dz = make_dark_zurich(tmp_path / "dz")
    prior = ["data", "prior", "--dataset", "dark_zurich", "--root", str(dz), "--size", "16x9", "--no-progress"]
    assert main([*prior, "--split", "val", "--out", str(tmp_path / "q.pt")]) == 0
    q = load_prior(tmp_path / "q.pt")
    assert q.shape == (19, 9, 16) and torch.allclose(q.sum(0), torch.ones(9, 16))
    capsys.readouterr()
    assert main([*prior, "--split", "train", "--out", str(tmp_path / "r.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"camix data prior: error: {dz}: dark_zurich split 'train' has no labels; use a labelled split"


def test_an_unlabelled_folder_target_needs_no_classes_file(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "robot")
    target = DatasetConfig(name="folder", root=str(root), image_suffix=".jpg", label_suffix="_mask.png")
    item = build_dataset(target, crop=(8, 8), labelled=False)[0]
    assert item["image"].shape == (3, 8, 8) and (item["label"] == 255).all()
    with pytest.raises(DataError, match=r"frame_0_mask.png: a folder dataset's labels need its classes file"):
        build_dataset(target)[0]
