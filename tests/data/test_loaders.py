"""GTA5, SYNTHIA and Cityscapes loaders on tiny format-exact fixtures with known label content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _realdata import BAND_TRAIN_IDS, band_labels, make_cityscapes, make_gta5, make_synthia, noise_image
from PIL import Image

from camix.config import DatasetConfig
from camix.data.datasets import build_dataset
from camix.data.labels import CAFFE_MEAN_BGR
from camix.data.transforms import crop_to_box


def expected_train_ids(width: int, height: int) -> np.ndarray:
    return band_labels(width, height, BAND_TRAIN_IDS, void=255).astype(np.int64)


def test_gta5_full_image_values(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=3, size=(40, 24))
    ds = build_dataset(DatasetConfig(name="gta5", root=str(root)))
    assert len(ds) == 3
    item = ds[1]
    assert item["name"] == "images/00002.png"
    assert item["image"].shape == (3, 24, 40) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.int64
    assert torch.equal(item["label"], torch.from_numpy(expected_train_ids(40, 24)))
    assert item["box"].tolist() == [0, 0, 24, 40] and item["size"].tolist() == [40, 24]
    rgb = noise_image(40, 24, seed=1).astype(np.float32)
    bgr = rgb[:, :, ::-1] - np.asarray(CAFFE_MEAN_BGR, np.float32)
    assert torch.allclose(item["image"], torch.from_numpy(bgr.transpose(2, 0, 1).copy()), atol=1e-4)


def test_gta5_resize_nearest_labels(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=1, size=(40, 24))
    item = build_dataset(DatasetConfig(name="gta5", root=str(root), size=(20, 12)))[0]
    assert item["image"].shape == (3, 12, 20) and item["size"].tolist() == [20, 12]
    native = expected_train_ids(40, 24)
    assert torch.equal(item["label"], torch.from_numpy(native[1::2, 1::2].copy()))  # nearest: centres of 2x2 cells


@pytest.mark.parametrize("crop", [(16, 10), (20, 12), (7, 3)])
def test_crop_equals_slice_of_uncropped(tmp_path: Path, crop: tuple[int, int]) -> None:
    root = make_gta5(tmp_path / "gta", count=2, size=(40, 24))
    cfg = DatasetConfig(name="gta5", root=str(root), size=(30, 18))
    full = build_dataset(cfg)
    cropped = build_dataset(cfg, crop=crop)
    torch.manual_seed(0)
    boxes = set()
    for _ in range(6):
        for i in range(len(cropped)):
            item, whole = cropped[i], full[i]
            top, left, height, width = item["box"].tolist()
            assert (height, width) == (crop[1], crop[0]) and item["size"].tolist() == [30, 18]
            assert 0 <= top <= 18 - height and 0 <= left <= 30 - width
            assert torch.equal(item["image"], whole["image"][:, top : top + height, left : left + width])
            assert torch.equal(item["label"], whole["label"][top : top + height, left : left + width])
            assert torch.equal(item["image"], crop_to_box(whole["image"], tuple(item["box"].tolist())))
            boxes.add((top, left))
    assert len(boxes) > 1  # offsets are random


def test_crop_reproducible_with_torch_seed(tmp_path: Path) -> None:
    ds = build_dataset(DatasetConfig(name="gta5", root=str(make_gta5(tmp_path / "g", 1))), crop=(8, 8))
    torch.manual_seed(3)
    first = [ds[0]["box"].tolist() for _ in range(4)]
    torch.manual_seed(3)
    assert [ds[0]["box"].tolist() for _ in range(4)] == first


def test_crop_larger_than_image_pads(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=1, size=(40, 24))
    item = build_dataset(DatasetConfig(name="gta5", root=str(root)), crop=(16, 30))[0]
    assert item["box"][[0, 2, 3]].tolist() == [0, 30, 16]
    assert item["image"].shape == (3, 30, 16) and item["label"].shape == (30, 16)
    assert (item["label"][24:] == 255).all() and (item["image"][:, 24:] == 0).all()
    assert (item["label"][:24] != 255).any()


def test_eval_center_crop_is_deterministic(tmp_path: Path) -> None:
    ds = build_dataset(DatasetConfig(name="gta5", root=str(make_gta5(tmp_path / "g", 1))), crop=(20, 10), train=False)
    assert ds[0]["box"].tolist() == [7, 10, 10, 20]


def test_cityscapes_label_ids_and_scale(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs", split="train", size=(32, 16))
    ds = build_dataset(DatasetConfig(name="cityscapes", root=str(root), split="train", scale=0.5))
    assert [ds[i]["name"] for i in range(2)] == [
        "leftImg8bit/train/aachen/aachen_000000_000000_leftImg8bit.png",
        "leftImg8bit/train/bremen/bremen_000000_000001_leftImg8bit.png",
    ]
    item = ds[0]
    assert item["image"].shape == (3, 8, 16) and item["size"].tolist() == [16, 8]
    assert torch.equal(item["label"], torch.from_numpy(expected_train_ids(32, 16)[1::2, 1::2].copy()))


def test_cityscapes_train_ids_variant(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs", split="val", train_ids=True)
    item = build_dataset(DatasetConfig(name="cityscapes", root=str(root), split="val"))[1]
    assert torch.equal(item["label"], torch.from_numpy(expected_train_ids(32, 16)))


def test_cityscapes_native_labels_for_evaluation(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "cs", split="val", size=(32, 16))
    cfg = DatasetConfig(name="cityscapes", root=str(root), split="val", size=(16, 8), label_size="native")
    item = build_dataset(cfg, train=False)[0]
    assert item["image"].shape == (3, 8, 16) and item["size"].tolist() == [16, 8]
    assert torch.equal(item["label"], torch.from_numpy(expected_train_ids(32, 16)))


@pytest.mark.parametrize("mapped", [False, True])
def test_synthia_labels(tmp_path: Path, mapped: bool) -> None:
    root = make_synthia(tmp_path / "syn", count=2, size=(20, 12), mapped=mapped)
    ds = build_dataset(DatasetConfig(name="synthia", root=str(root)))
    item = ds[1]
    assert item["name"] == "RGB/0000001.png" and item["image"].shape == (3, 12, 20)
    assert torch.equal(item["label"], torch.from_numpy(expected_train_ids(20, 12)))


def test_synthia_16bit_decoder_matches_numpy_reference(tmp_path: Path) -> None:
    from _realdata import decode_png_rgb16_numpy, encode_png_rgb16

    from camix.data.synthia import _chunks, _ihdr, decode_png_rgb16

    values = np.random.default_rng(0).integers(0, 65536, (9, 11, 3)).astype(np.uint16)
    data = encode_png_rgb16(values, filters=(4, 3, 1, 0, 2))
    stream = b"".join(payload for kind, payload in _chunks(data) if kind == b"IDAT")
    assert np.array_equal(decode_png_rgb16(data), values)
    assert np.array_equal(decode_png_rgb16_numpy(stream, *_ihdr(data)[:2]), values)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with Image.open(path) as img:  # why we decode ourselves: PIL keeps only the high byte
        assert np.array_equal(np.asarray(img), (values >> 8).astype(np.uint8))


def test_list_file_and_limit(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=4)
    listing = tmp_path / "list.txt"
    listing.write_text("00003.png\n\n00001.png\n00004.png\n")
    ds = build_dataset(DatasetConfig(name="gta5", root=str(root), list_file=str(listing), limit=2))
    assert [ds[i]["name"] for i in range(len(ds))] == ["images/00003.png", "images/00001.png"]
    assert len(build_dataset(DatasetConfig(name="gta5", root=str(root), limit=3))) == 3


def test_dataloader_with_workers_batches(tmp_path: Path) -> None:
    ds = build_dataset(DatasetConfig(name="gta5", root=str(make_gta5(tmp_path / "g", 4))), crop=(16, 16))
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["label"].shape == (2, 16, 16)
    assert batch["box"].shape == (2, 4) and len(batch["name"]) == 2
