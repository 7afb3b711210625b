"""``camix predict``: the three PNGs per image with exact palette colours and labelIds, folders, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camix.cli import main
from camix.config import load_config
from camix.config_tree import parse_size
from camix.data.labels import LABEL_ID_TO_TRAIN_ID, PALETTE, PALETTE_LUT, TRAIN_ID_TO_LABEL_ID
from camix.predict import InputImage, PredictError, find_inputs, output_paths
from tests.conftest import constant_checkpoint

CAR = 13


@pytest.fixture
def car_checkpoint(tmp_path: Path) -> Path:
    cfg = load_config("configs/synthcity/source_only.yaml", ["data.val.size=[64, 32]", "train.device=cpu"])
    return constant_checkpoint(tmp_path / "ckpt" / "last.pt", cfg, CAR)


def write_image(path: Path, size: tuple[int, int], seed: int) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=100) if path.suffix == ".jpg" else Image.fromarray(rgb).save(path)
    return np.asarray(Image.open(path).convert("RGB"))


def test_predict_writes_exact_colours_labelids_and_overlays(car_checkpoint: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    rgb_a = write_image(inputs / "berlin" / "a_leftImg8bit.png", (50, 30), 0)
    write_image(inputs / "b.jpg", (40, 20), 1)
    single = write_image(tmp_path / "single.png", (20, 10), 2)
    out = tmp_path / "out"
    assert main(["predict", "--ckpt", str(car_checkpoint), str(inputs), str(tmp_path / "single.png"),
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == sorted(
        f"{stem}_{kind}.png"
        for stem in ("berlin/a_leftImg8bit", "b", "single")
        for kind in ("labelIds", "color", "overlay")
    )
    label_ids = np.asarray(Image.open(out / "berlin" / "a_leftImg8bit_labelIds.png"))
    assert label_ids.shape == (30, 50) and Image.open(out / "berlin" / "a_leftImg8bit_labelIds.png").mode == "L"
    assert (label_ids == TRAIN_ID_TO_LABEL_ID[CAR]).all()  # car: labelId 26
    colour = np.asarray(Image.open(out / "berlin" / "a_leftImg8bit_color.png"))
    assert colour.shape == (30, 50, 3) and (colour == PALETTE[CAR]).all()  # (0, 0, 142)
    over = np.asarray(Image.open(out / "berlin" / "a_leftImg8bit_overlay.png")).astype(np.float32)
    assert np.array_equal(over, np.round(0.5 * rgb_a + 0.5 * np.asarray(PALETTE[CAR], np.float32)))
    assert np.asarray(Image.open(out / "single_color.png")).shape == single.shape
    assert not list(out.rglob("*.tmp"))


def test_predict_with_a_trained_model_is_consistent(tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from camix.train import train

    cfg = tiny_config("source_only", "train.iterations=2", "train.eval_every=0")
    train(cfg, progress=False)
    val_images = Path(cfg.data.val.root) / "leftImg8bit" / "val"
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt", cfg.out_dir, str(val_images), "--out", str(out), "--size", "64x32",
                 "--no-progress"]) == 0  # fmt: skip
    label_files = sorted(out.rglob("*_labelIds.png"))
    assert len(label_files) == len(list(val_images.rglob("*.png"))) == 4
    for file in label_files:
        label_ids = np.asarray(Image.open(file))
        assert set(np.unique(label_ids)) <= set(TRAIN_ID_TO_LABEL_ID)
        colour = np.asarray(Image.open(str(file).replace("_labelIds", "_color")))
        assert np.array_equal(colour, PALETTE_LUT[LABEL_ID_TO_TRAIN_ID[label_ids]])


def test_unreadable_input_is_a_one_line_error_and_nothing_is_written(
    car_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in"
    write_image(inputs / "good.png", (20, 10), 0)
    (inputs / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    assert main(["predict", "--ckpt", str(car_checkpoint), str(inputs), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.png" in err
    assert not out.exists() or not list(out.rglob("*"))
    assert main(["predict", "--ckpt", str(car_checkpoint), str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope: no such file or folder" in capsys.readouterr().err
    code = main(["predict", "--ckpt", str(car_checkpoint), str(inputs), "--out", str(out), "--size", "big"])
    err = capsys.readouterr().err
    assert code == 2 and "expected WIDTHxHEIGHT" in err and err.count("\n") == 1  # argparse, in one line


def test_inputs_and_output_names(tmp_path: Path) -> None:
    write_image(tmp_path / "d" / "x" / "a.png", (4, 4), 0)
    write_image(tmp_path / "d" / "a.jpg", (4, 4), 0)
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    found = find_inputs([tmp_path / "d"])
    assert [str(i.stem) for i in found] == ["a", "x/a"]
    assert output_paths("o", InputImage(Path("x/a.png"), Path("x/a")))["labelIds"] == Path("o/x/a_labelIds.png")
    write_image(tmp_path / "d" / "a.png", (4, 4), 0)
    with pytest.raises(PredictError, match="would both write"):
        find_inputs([tmp_path / "d"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictError, match=r"no \.png"):
        find_inputs([tmp_path / "empty"])
    (tmp_path / "links").mkdir()
    write_image(tmp_path / "links" / "ok.png", (4, 4), 0)
    (tmp_path / "links" / "gone.png").symlink_to(tmp_path / "deleted.png")  # e.g. a dataset moved away
    with pytest.raises(PredictError, match=r"links/gone\.png: symbolic link to a missing file \(.*deleted\.png\)"):
        find_inputs([tmp_path / "links"])
    with pytest.raises(PredictError, match=r"gone\.png: symbolic link to a missing file"):
        find_inputs([tmp_path / "links" / "gone.png"])
    assert parse_size("1024x512") == (1024, 512)
    with pytest.raises(ValueError):
        parse_size("1024")
