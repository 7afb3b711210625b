"""The new benchmarks' and the folder dataset's configs train, evaluate and predict on tiny format-exact fixtures;
``camix train --smoke``; class names through evaluation tables and relations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _layouts import make_acdc, make_dark_zurich
from _realdata import make_cityscapes
from PIL import Image

from camix.cli import main
from camix.config import load_config
from camix.evaluate import EvalResult
from camix.tables import csv_lines, iou_table, layout_for
from camix.train import train

FAST = [
    "model.pretrained=null",
    "optim.duplicate_backbone_params=false",
    "data.workers=0",
    "data.batch_size=1",
    "data.crop=[32, 32]",  # MiT needs 32 (its first spatial reduction is 8 at a quarter of the crop)
    "train.iterations=3",
    "train.eval_every=3",
    "train.checkpoint_every=3",
    "train.log_every=1",
    "train.amp=none",
    "train.channels_last=false",
    "train.device=cpu",
    "method.noise_passes=2",
    "method.threshold_ramp=3",
]


def cityscapes_source(root: Path) -> Path:
    return make_cityscapes(root, split="train", size=(64, 32))


def benchmark_overrides(tmp_path: Path, target: str) -> list[str]:
    source = cityscapes_source(tmp_path / "cityscapes")
    if target == "acdc":  # the fixture has val images of fog and night only
        root, val = make_acdc(tmp_path / "acdc", size=(48, 27)), ["data.val.conditions=[fog, night]"]
    else:
        root, val = make_dark_zurich(tmp_path / "dz", size=(48, 27)), []
    return [
        *val,
        f"data.source.root={source}",
        "data.source.size=[64, 32]",
        f"data.target.root={root}",
        "data.target.size=[48, 32]",
        f"data.val.root={root}",
        "data.val.size=[48, 32]",
    ]


@pytest.mark.parametrize(
    ("config", "model", "extra"),
    [
        ("cs2acdc/camix", "deeplabv2_tiny", ["method.warmup_iterations=1"]),  # across the ClassMix warm-up
        ("cs2acdc/daformer_mic", "daformer_mittiny", ["optim.warmup_iterations=1", "data.rcs.min_pixels=1"]),
        (
            "cs2dz/daformer_camix_mic",
            "daformer_mittiny",
            ["method.warmup_iterations=1", "optim.warmup_iterations=1", "data.rcs.min_pixels=1"],
        ),
        ("cs2dz/camix", "deeplabv2_tiny", ["method.warmup_iterations=1"]),
    ],
)
def test_benchmark_configs_train_three_iterations(tmp_path: Path, config: str, model: str, extra: list[str]) -> None:
    target = "acdc" if config.startswith("cs2acdc") else "dz"
    overrides = [*FAST, *benchmark_overrides(tmp_path, target), f"model.name={model}", f"out_dir={tmp_path / 'run'}"]
    cfg = load_config(f"configs/{config}.yaml", [*overrides, *extra])
    summary = train(cfg, progress=False)
    assert summary["iteration"] == 3 and 0.0 <= summary["final"]["miou19"] <= 100.0
    assert set(summary["final"]["iou"]) >= {"road", "sky", "car"}
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss/total" in r] == [1, 2, 3]


def folder_overrides(root: Path, out_dir: Path) -> list[str]:
    return [
        f"out_dir={out_dir}",
        f"data.source.root={root / 'gta'}",
        f"data.target.root={root / 'cityscapes'}",
        f"data.val.root={root / 'cityscapes'}",
        "data.crop=[48, 48]",
        "train.iterations=3",
        "train.eval_every=3",
        "train.checkpoint_every=3",
        "train.log_every=1",
        "method.noise_passes=2",
        "method.warmup_iterations=1",
        "method.threshold_ramp=3",
    ]


def test_the_folder_example_trains_evaluates_and_predicts_with_its_classes(
    synthcity_root: Path, tmp_path: Path
) -> None:
    cfg = load_config("configs/folder/example.yaml", folder_overrides(synthcity_root, tmp_path / "run"))
    summary = train(cfg, progress=False)
    names = ["flat", "construction", "object", "nature", "sky", "human", "vehicle"]
    assert list(summary["final"]["iou"]) == names and "miou16" not in summary["final"]
    out = tmp_path / "eval"
    assert main(["evaluate", "--ckpt", str(tmp_path / "run"), "--out", str(out), "--no-progress"]) == 0
    table = (out / "eval.md").read_text()
    assert "| flat " in table and "mIoU " in table and "mIoU16" not in table
    assert (out / "eval.csv").read_text().splitlines()[0] == "checkpoint," + ",".join(names) + ",miou19"
    report = tmp_path / "report"
    assert main(["report", str(tmp_path / "run"), "--out", str(report), "--no-figures"]) == 0
    text = (report / "report.md").read_text()
    assert "| flat " in text and "| vehicle " in text and "mIoU16" not in text
    assert (report / "table.csv").read_text().splitlines()[0].endswith(",".join(names))
    images = synthcity_root / "cityscapes" / "leftImg8bit" / "val"
    pred = tmp_path / "pred"
    assert main(["predict", "--ckpt", str(tmp_path / "run"), str(images), "--out", str(pred), "--no-progress"]) == 0
    ids = sorted(pred.rglob("*_classIds.png"))
    assert len(ids) == 4
    for file in ids:
        values = np.asarray(Image.open(file))
        assert values.max() < 7  # class indices, not Cityscapes labelIds
        colour = np.asarray(Image.open(str(file).replace("_classIds", "_color")))
        palette = np.asarray(
            [[128, 64, 128], [70, 70, 70], [153, 153, 153], [107, 142, 35], [70, 130, 180], [220, 20, 60], [0, 0, 142]],
            np.uint8,
        )
        assert np.array_equal(colour, palette[values])


def test_folder_runs_refuse_a_wrong_class_count_and_cityscapes_relations(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", "-c", "configs/folder/example.yaml", "--no-progress"]
    sets = [a for o in folder_overrides(synthcity_root, tmp_path / "run") for a in ("--set", o)]
    assert main([*base, *sets, "--set", "model.num_classes=19"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.num_classes': 19, but data.source.classes" in err and "names 7 classes" in err
    assert "\n" not in err
    assert main([*base, *sets, "--set", "method.relations=default"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'method.relations': 'default' relates Cityscapes classes" in err and "\n" not in err
    assert main([*base, *sets, "--set", "method.relations={human: [bus]}"]) == 2
    assert "unknown class 'bus' (the classes: flat, construction" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_tables_of_other_classes_show_their_names_and_one_mean() -> None:
    import torch

    result = EvalResult(torch.tensor([[3, 1], [0, 4]]), ("floor", "robot"))  # IoU 3/4 and 4/5
    scores = result.as_dict()
    assert scores["iou"] == pytest.approx({"floor": 75.0, "robot": 80.0}) and "miou16" not in scores
    assert scores["miou19"] == pytest.approx(77.5)
    table = iou_table([("run", scores)], layout_for("folder", result.names))
    header_cells, _, row_cells = ([cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines())
    assert header_cells == ["method", "floor", "robot", "mIoU"] and row_cells == ["run", "75.0", "80.0", "77.5"]
    header, row = csv_lines([("run", scores)], names=result.names)
    assert header == ["method", "floor", "robot", "miou19"]
    assert row[0] == "run" and row[1:] == pytest.approx([75.0, 80.0, 77.5])
    assert layout_for("synthia").metrics == ("miou16", "miou13")  # the paper's layouts for Cityscapes classes


def test_predict_writes_each_benchmark_servers_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import constant_checkpoint

    cfg = load_config("configs/synthcity/source_only.yaml", ["data.val.size=[32, 16]", "train.device=cpu"])
    ckpt = constant_checkpoint(tmp_path / "ckpt" / "last.pt", cfg, 13)  # car: trainId 13, labelId 26
    acdc = make_acdc(tmp_path / "acdc", size=(40, 22))
    images = acdc / "rgb_anon" / "snow" / "test"
    out = tmp_path / "acdc_out"
    assert main(["predict", "--ckpt", str(ckpt), str(images), "--out", str(out), "--format", "acdc"]) == 0
    written = [str(p.relative_to(out)) for p in out.rglob("*.png")]
    assert written == ["GP010122/GP010122_frame_000001_rgb_anon.png"]
    train_ids = np.asarray(Image.open(out / written[0]))
    assert train_ids.shape == (22, 40) and (train_ids == 13).all()
    city = make_cityscapes(tmp_path / "cs", split="test", size=(40, 20))
    cs_out = tmp_path / "cs_out"
    assert main(["predict", "--ckpt", str(ckpt), str(city / "leftImg8bit" / "test"), "--out", str(cs_out),
                 "--format", "cityscapes"]) == 0  # fmt: skip
    files = sorted(str(p.relative_to(cs_out)) for p in cs_out.rglob("*.png"))
    assert files == ["aachen/aachen_000000_000000_leftImg8bit.png", "bremen/bremen_000000_000001_leftImg8bit.png"]
    assert (np.asarray(Image.open(cs_out / files[0])) == 26).all()
    capsys.readouterr()
    wrong = ["predict", "--ckpt", str(ckpt), str(images), "--out", str(tmp_path / "x"), "--format", "cityscapes"]
    assert main(wrong) == 2
    err = capsys.readouterr().err
    assert "not named like a cityscapes image (NAME_leftImg8bit.png)" in err and not (tmp_path / "x").exists()


def test_smoke_runs_a_config_in_a_temporary_folder_and_prints_its_figures(
    tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("camix")  # the overrides of the tiny SynthCity
    existing = Path(cfg.out_dir)
    existing.mkdir(parents=True)
    (existing / "keep.txt").write_text("mine")
    from tests.conftest import tiny_overrides

    root = Path(cfg.data.source.root).parent
    sets = [a for o in tiny_overrides(root, existing) for a in ("--set", o)]
    args = ["train", "--smoke", "-c", "configs/synthcity/camix.yaml", *sets, "--no-progress"]
    assert main([*args, "--set", "train.iterations=100", "--set", "method.warmup_iterations=40",
                 "--set", "train.eval_every=30"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "s per iteration" in out and "iteration 41 (after the warm-up)" in out
    assert "4 validation images, 4 evaluations" in out
    assert "estimated wall time of 100 iterations and 4 evaluations:" in out and "process peak resident memory" in out
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]  # nothing of the existing folder touched


def test_smoke_names_what_failed(synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from tests.conftest import tiny_overrides

    root = tmp_path / "synthcity"
    shutil.copytree(synthcity_root, root)
    broken = sorted((root / "cityscapes" / "leftImg8bit" / "val").rglob("*.png"))[0]
    broken.write_bytes(broken.read_bytes()[:120])  # the header reads (preflight passes), the pixels do not
    sets = [a for o in tiny_overrides(root, tmp_path / "run") for a in ("--set", o)]
    code = main(["train", "--smoke", "-c", "configs/synthcity/camix.yaml", *sets, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the log lines of the prior's computation
    assert code == 1 and broken.name in err and "cannot decode image" in err
    assert err.startswith("camix train: error: the evaluation of 2 validation images failed: ")
    assert not (tmp_path / "run").exists()


def test_training_on_a_mismatched_pair_is_refused_before_the_run_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from _realdata import noise_image, save

    overrides = [*FAST, *benchmark_overrides(tmp_path, "acdc"), f"out_dir={tmp_path / 'run'}"]
    image = tmp_path / "acdc/rgb_anon/night/val/GOPR0355/GOPR0355_frame_000357_rgb_anon.png"
    save(image, noise_image(50, 27))
    args = ["train", "-c", "configs/cs2acdc/camix.yaml", "--no-progress", "--set", "model.name=deeplabv2_tiny"]
    args += ["--set", "method.warmup_iterations=1"]
    assert main([*args, *(a for o in overrides for a in ("--set", o))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"camix train: error: {image} is 50x27 but its label ") and "is 48x27; fix the pair" in err
    assert "\n" not in err and not (tmp_path / "run").exists()


def test_num_classes_follows_the_classes_file_unless_the_config_gives_it(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from camix.commands.common import config_from_args
    from camix.errors import ConfigError
    from camix.preflight import preflight

    text = Path("configs/folder/example.yaml").read_text()
    assert "  num_classes: 7 " in text
    unset = tmp_path / "example.yaml"
    unset.write_text(text.replace("  num_classes: 7 ", "  # num_classes: 7 "))
    overrides = folder_overrides(synthcity_root, tmp_path / "run")
    cfg = config_from_args(argparse.Namespace(config=str(unset), overrides=overrides))
    assert cfg.model.num_classes == 7  # the classes file names seven
    with pytest.raises(ConfigError, match=r"'model.num_classes': 20, but data.source.classes .* names 7 classes"):
        args = argparse.Namespace(config=str(unset), overrides=[*overrides, "model.num_classes=20"])
        config_from_args(args, checks=[preflight])
