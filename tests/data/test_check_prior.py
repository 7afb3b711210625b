"""``camix data check`` / ``camix data prior`` and the prior library functions, with hand-computed values."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _realdata import make_cityscapes, make_gta5, make_synthia, noise_image, save

from camix.config import DatasetConfig
from camix.data.check import check_dataset, format_report
from camix.data.prior import (
    cached_prior,
    compute_prior,
    label_fingerprint,
    load_prior,
    load_prior_record,
    save_prior,
)
from camix.errors import DataError

# two GTA5 label maps (labelIds) and their trainIds: road 7->0, sidewalk 8->1, car 26->13, unlabeled 0->255
LABEL_A = np.array([[7, 7, 26, 0], [8, 8, 26, 26]], np.uint8)
LABEL_B = np.array([[7, 8, 8, 7], [0, 0, 26, 7]], np.uint8)


def two_label_gta(root: Path, upscale: int = 1) -> Path:
    for i, label in enumerate((LABEL_A, LABEL_B)):
        big = label.repeat(upscale, axis=0).repeat(upscale, axis=1)
        save(root / "images" / f"{i + 1:05d}.png", noise_image(big.shape[1], big.shape[0], seed=i))
        save(root / "labels" / f"{i + 1:05d}.png", big)
    return root


def expected_prior() -> torch.Tensor:
    q = torch.zeros(19, 2, 4)
    road, sidewalk, car = 0, 1, 13
    q[road, 0, 0] = 1.0
    q[road, 0, 1] = q[sidewalk, 0, 1] = 0.5
    q[car, 0, 2] = q[sidewalk, 0, 2] = 0.5
    q[road, 0, 3] = 1.0  # A ignores this pixel
    q[sidewalk, 1, 0] = q[sidewalk, 1, 1] = 1.0  # B ignores these
    q[car, 1, 2] = 1.0
    q[car, 1, 3] = q[road, 1, 3] = 0.5
    return q


@pytest.mark.parametrize("upscale", [1, 2])
def test_prior_matches_hand_computed_frequencies(tmp_path: Path, upscale: int) -> None:
    root = two_label_gta(tmp_path / "gta", upscale=upscale)
    prior, stats = compute_prior(DatasetConfig(name="gta5", root=str(root)), (4, 2), progress=False)
    assert prior.dtype == torch.float32 and prior.shape == (19, 2, 4)
    assert torch.allclose(prior, expected_prior())
    pixels = {c["name"]: (c["pixels"], c["images"]) for c in stats["classes"] if c["pixels"]}
    assert pixels == {"road": (5, 2), "sidewalk": (4, 2), "car": (4, 2)}
    assert stats["ignored_pixels"] == 3 and stats["labelled_pixels"] == 13 and stats["num_images"] == 2


def test_save_load_and_cache_prior(tmp_path: Path) -> None:
    cfg = DatasetConfig(name="gta5", root=str(two_label_gta(tmp_path / "gta")))
    path = tmp_path / "out" / "prior.pt"
    prior = cached_prior(cfg, (4, 2), path, progress=False)
    assert torch.allclose(load_prior(path), expected_prior()) and torch.equal(prior, load_prior(path))
    record = load_prior_record(path)
    assert record["size"] == (4, 2) and record["dataset"] == "gta5" and record["num_images"] == 2
    stats = json.loads((tmp_path / "out" / "prior.json").read_text())
    assert stats["classes"][13]["pixels"] == 4
    uniform = {"size": (4, 2), "dataset": "gta5", "fingerprint": label_fingerprint(cfg)}
    save_prior(path, torch.full((19, 2, 4), 1 / 19), uniform)
    assert torch.allclose(cached_prior(cfg, (4, 2), path, progress=False), torch.tensor(1 / 19))  # cache hit
    assert torch.allclose(cached_prior(cfg, (2, 1), path, progress=False).sum(0), torch.ones(1, 2))  # recomputed


def test_cached_prior_is_recomputed_when_the_labels_change(tmp_path: Path) -> None:
    cfg = DatasetConfig(name="gta5", root=str(two_label_gta(tmp_path / "gta")))
    path = tmp_path / "prior.pt"
    cached_prior(cfg, (4, 2), path, progress=False)
    relabelled = tmp_path / "gta" / "labels" / "00002.png"
    stamp = relabelled.stat().st_mtime_ns
    save(relabelled, LABEL_A)  # the dataset is regenerated (a moment later): B becomes A
    os.utime(relabelled, ns=(stamp + 10**9, stamp + 10**9))
    prior = cached_prior(cfg, (4, 2), path, progress=False)
    road, car = 0, 13
    assert prior[road, 0, 0] == 1.0 and prior[car, 1, 3] == 1.0 and prior[road, 1, 3] == 0.0  # A alone, not A+B
    (tmp_path / "gta" / "labels" / "00002.png").unlink()
    (tmp_path / "gta" / "images" / "00002.png").unlink()
    before = label_fingerprint(cfg)
    assert before != load_prior_record(path)["fingerprint"]  # one label fewer: another fingerprint
    save_prior(tmp_path / "old.pt", torch.full((19, 2, 4), 1 / 19), {"size": (4, 2), "dataset": "gta5"})
    assert not torch.allclose(cached_prior(cfg, (4, 2), tmp_path / "old.pt", progress=False), torch.tensor(1 / 19))


def test_cached_prior_is_recomputed_for_another_smoothing(tmp_path: Path) -> None:
    """The training cache (camix.train_support) relies on it: a file of another smoothing is never served."""
    cfg = DatasetConfig(name="gta5", root=str(two_label_gta(tmp_path / "gta")))
    path = tmp_path / "prior.pt"
    plain = cached_prior(cfg, (4, 2), path, progress=False)
    smoothed = cached_prior(cfg, (4, 2), path, progress=False, smoothing=1.0)
    assert load_prior_record(path)["smoothing"] == 1.0
    car = 13  # two images: car at (1, 3) in one of them; add-one smoothing over 19 classes gives (1 + 1) / (2 + 19)
    assert plain[car, 1, 3] == 0.5 and torch.isclose(smoothed[car, 1, 3], torch.tensor(2 / 21))
    meta = {"size": (4, 2), "dataset": "gta5", "fingerprint": label_fingerprint(cfg), "smoothing": 1.0}
    save_prior(path, torch.full((19, 2, 4), 1 / 19), meta)
    assert torch.allclose(cached_prior(cfg, (4, 2), path, progress=False, smoothing=1.0), torch.tensor(1 / 19))  # hit
    assert torch.equal(cached_prior(cfg, (4, 2), path, progress=False), plain)  # smoothing 0: recomputed


def test_the_prior_cache_of_training_is_keyed_on_the_label_files(tmp_path: Path) -> None:
    import os

    from camix.config import load_config
    from camix.data.prior import label_fingerprint, prior_cache_path
    from camix.data.synthcity import generate
    from tests.conftest import tiny_overrides

    data = tmp_path / "synthcity"
    generate(data, size=(32, 16), num_source=3, num_target_train=2, num_target_val=2, progress=False)
    cfg = load_config("configs/synthcity/camix.yaml", tiny_overrides(data, tmp_path / "run"))

    def path() -> Path:
        return prior_cache_path(cfg.data, (32, 16), 19, tmp_path, label_fingerprint(cfg.data.source))

    first = path()
    assert first.parent == data / "gta" / ".camix_cache" and first == path()
    assert prior_cache_path(cfg.data, (32, 16), 20, tmp_path, label_fingerprint(cfg.data.source)) != first
    label = data / "gta" / "labels" / "00002.png"
    os.utime(label, ns=(label.stat().st_mtime_ns + 10**9,) * 2)  # regenerated: same name, another time
    second = path()
    (data / "gta" / "labels" / "00003.png").unlink()  # 2 of 3 labels: another dataset
    (data / "gta" / "images" / "00003.png").unlink()
    assert len({first, second, path()}) == 3


def test_a_cache_goes_to_the_run_directory_when_the_dataset_root_is_not_writable(tmp_path: Path) -> None:
    from dataclasses import replace

    from camix.config import DataConfig
    from camix.data.datasets import shared_cache_dir
    from camix.data.prior import prior_cache_path
    from camix.data.rcs import class_pixels_cache

    root = tmp_path / "data"
    root.mkdir()
    assert shared_cache_dir(str(root)) == root / ".camix_cache"
    assert list((root / ".camix_cache").iterdir()) == []  # the write probe is gone
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would go")  # mkdir fails as it would on a read-only mount
    assert shared_cache_dir(str(blocked)) is None
    run = tmp_path / "run"
    for where, folder in ((root, root / ".camix_cache"), (blocked, run)):
        source = DatasetConfig(name="gta", root=str(where))
        prior = prior_cache_path(replace(DataConfig(), source=source), (32, 16), 19, run, "fp")
        stats = class_pixels_cache(source, run)
        assert (prior.parent, stats.parent) == (folder, folder)
        assert prior.name.startswith("prior_gta_32x16_") and stats.name.startswith("class_pixels_gta_")


def test_save_prior_with_nested_stats(tmp_path: Path) -> None:
    cfg = DatasetConfig(name="gta5", root=str(two_label_gta(tmp_path / "gta")))
    prior, stats = compute_prior(cfg, (4, 2), progress=False)
    save_prior(tmp_path / "p.pt", prior, {"size": [4, 2], "dataset": "gta5", "root": cfg.root, "stats": stats})
    record = load_prior_record(tmp_path / "p.pt")
    assert record["num_images"] == 2 and record["size"] == (4, 2) and torch.equal(record["prior"], prior)
    assert json.loads((tmp_path / "p.json").read_text())["ignored_pixels"] == 3


def test_load_prior_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="spatial prior file not found"):
        load_prior(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"corrupt\.pt: cannot read spatial prior"):
        load_prior(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(DataError, match="not a spatial prior file"):
        load_prior(other)


def test_check_clean_dataset(tmp_path: Path) -> None:
    report = check_dataset(DatasetConfig(name="gta5", root=str(two_label_gta(tmp_path / "g"))), progress=False)
    assert report.num_images == 2 and report.problems == []
    assert report.class_pixels[[0, 1, 13]].tolist() == [5, 4, 4] and report.ignored_pixels == 3
    text = format_report(report)
    assert "checked all: 2 images, 2 labels, 0 problems" in text and "no problems found" in text and "car" in text


def test_check_reports_every_problem(tmp_path: Path) -> None:
    root = make_gta5(tmp_path / "gta", count=5, size=(40, 24))
    (root / "labels" / "00001.png").unlink()  # missing label
    save(root / "images" / "00002.png", noise_image(41, 24))  # size mismatch
    trunc = root / "images" / "00003.png"
    trunc.write_bytes(trunc.read_bytes()[:150])  # truncated image
    label = np.full((24, 40), 7, np.uint8)
    label[0, :3] = 99
    save(root / "labels" / "00004.png", label)  # unknown ids
    report = check_dataset(DatasetConfig(name="gta5", root=str(root)), progress=False)
    assert report.num_images == 5 and len(report.problems) == 4
    missing, mismatch, truncated, unknown = report.problems
    assert "labels/00001.png: label file not found" in missing
    assert "00002.png: image is 41x24 but its label" in mismatch
    assert "00003.png: cannot decode image" in truncated
    assert "00004.png: unknown label ids 99 (3 px)" in unknown


def test_check_synthia_and_cityscapes(tmp_path: Path) -> None:
    syn = check_dataset(DatasetConfig(name="synthia", root=str(make_synthia(tmp_path / "s", 2))), progress=False)
    assert syn.problems == [] and syn.class_pixels[[10, 2, 13, 0]].sum() > 0 and syn.class_pixels[9] == 0
    cs = make_cityscapes(tmp_path / "c", split="val", train_ids=True)
    report = check_dataset(DatasetConfig(name="cityscapes", root=str(cs)), splits=["val"], progress=False)
    assert report.problems == [] and report.num_images == 2


def camix(argv: list[str]) -> int:
    """Run the real CLI in-process."""
    from camix.cli import main

    return main(argv)


def test_cli_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = two_label_gta(tmp_path / "gta")
    assert camix(["data", "check", "--dataset", "gta5", "--root", str(root), "--no-progress"]) == 0
    assert "all: 2 images, 2 labels, 0 problems" in capsys.readouterr().out
    (root / "labels" / "00002.png").unlink()
    assert camix(["data", "check", "--dataset", "gta5", "--root", str(root), "--no-progress"]) == 1
    assert "label file not found" in capsys.readouterr().out
    assert camix(["data", "check", "--dataset", "gta5", "--root", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "dataset root not found" in err and len(err.strip().splitlines()) == 1


def test_cli_prior(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = two_label_gta(tmp_path / "gta", upscale=2)
    out = tmp_path / "prior.pt"
    argv = ["data", "prior", "--dataset", "gta5", "--root", str(root), "--size", "4x2", "--out", str(out)]
    assert camix([*argv, "--no-progress", "--smoothing", "0"]) == 0
    assert "prior size: 4x2 (WxH)" in capsys.readouterr().out  # width 4, height 2
    assert torch.allclose(load_prior(out), expected_prior()) and out.with_suffix(".json").is_file()
    assert camix([*argv, "--no-progress"]) == 0  # default smoothing 1: (n_c + 1) / (N + 19), N labelled maps
    labelled = torch.tensor([[2.0, 2.0, 2.0, 1.0], [1.0, 1.0, 2.0, 2.0]])
    assert torch.allclose(load_prior(out), (expected_prior() * labelled + 1) / (labelled + 19))
    assert camix([*argv[:-4], "--size", "2by4", "--out", str(out)]) == 2


def test_commands_directly(tmp_path: Path) -> None:
    """The command modules without the dispatcher (always runnable)."""
    from camix.commands import data_check_cmd, data_prior_cmd

    root = two_label_gta(tmp_path / "gta")
    parser = argparse.ArgumentParser()
    data_check_cmd.add_arguments(parser)
    assert data_check_cmd.run(parser.parse_args(["--dataset", "gta5", "--root", str(root), "--no-progress"])) == 0
    parser = argparse.ArgumentParser()
    data_prior_cmd.add_arguments(parser)
    args = ["--dataset", "gta5", "--root", str(root), "--size", "4x2", "--out", str(tmp_path / "q.pt")]
    assert data_prior_cmd.run(parser.parse_args([*args, "--no-progress", "--limit", "1"])) == 0
    assert load_prior_record(tmp_path / "q.pt")["num_images"] == 1
    assert parser.parse_args([*args, "--size", "1280x720"]).size == (1280, 720)  # WxH like every size
