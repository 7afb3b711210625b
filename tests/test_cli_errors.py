"""Every command with wrong arguments: one line on stderr naming the culprit, exit code 2, nothing created or touched.

Each case is one class of bad input; the table in docs/errors.md lists them with their messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from camix.cli import main
from camix.config import load_config
from camix.train import Trainer
from tests.conftest import tiny_overrides

SOURCE_ONLY, CAMIX = "configs/synthcity/source_only.yaml", "configs/synthcity/camix.yaml"


@dataclass(frozen=True)
class Paths:
    """The fixtures the cases point at."""

    tmp: Path  # a scratch folder; nothing may appear in it but what the fixture wrote
    data: Path  # a tiny SynthCity
    run: Path  # a finished tiny training run (config.yaml, metrics.jsonl, checkpoints/)
    ckpt: Path  # its last.pt
    afile: Path  # a text file
    empty: Path  # an empty folder

    def train(self, *sets: str, config: str = SOURCE_ONLY, extra: tuple[str, ...] = ()) -> list[str]:
        overrides = [*tiny_overrides(self.data, self.tmp / "train_out"), *sets]
        return ["train", "-c", config, *[a for s in overrides for a in ("--set", s)], *extra, "--no-progress"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory, synthcity_root: Path) -> Paths:
    base = tmp_path_factory.mktemp("bad_input")
    cfg = load_config("configs/synthcity/source_only.yaml", tiny_overrides(synthcity_root, base / "run"))
    Trainer(cfg, progress=False).fit()
    tmp = base / "scratch"
    tmp.mkdir()
    (tmp / "empty").mkdir()
    (tmp / "afile").write_text("x\n")
    (tmp / "list.yaml").write_text("- a\n- b\n")
    (tmp / "blank.yaml").write_text("")
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81 not text")
    (tmp / "text.png").write_text("not a PNG")
    (tmp / "noread.yaml").write_text("seed: 1\n")
    (tmp / "noread.yaml").chmod(0)
    (tmp / "badrun").mkdir()
    (tmp / "badrun" / "config.yaml").write_text("model: [1,\n")
    (tmp / "badrun" / "metrics.jsonl").write_text("")
    torch.save({"prior": torch.full((5, 48, 96), 0.2)}, tmp / "prior5.pt")
    study = "runs: {{a: {run}}}\nseeds: {seeds}\nsynthcity: {{size: {size}}}\n"
    (tmp / "study_seed.yaml").write_text(study.format(run=SOURCE_ONLY, seeds="[-1]", size="[96, 48]"))
    (tmp / "study_size.yaml").write_text(study.format(run=SOURCE_ONLY, seeds="[0]", size="0x0"))
    (tmp / "study_run.yaml").write_text(study.format(run=str(tmp / "nope.yaml"), seeds="[0]", size="[96, 48]"))
    (tmp / "study_noruns.yaml").write_text("seeds: [0]\n")
    run = base / "run"
    return Paths(tmp, synthcity_root, run, run / "checkpoints" / "last.pt", tmp / "afile", tmp / "empty")


Case = Callable[[Paths], list[str]]


def prior(p: Paths, *extra: str, size: str = "8x16", out: Path | None = None) -> list[str]:
    """``camix data prior`` on the tiny GTA5 tree with ``extra`` arguments."""
    root, target = str(p.data / "gta"), str(out if out is not None else p.tmp / "q.pt")
    return ["data", "prior", "--dataset", "gta5", "--root", root, "--size", size, "--out", target, *extra]


CASES: list[tuple[str, Case, str]] = [
    # ----- train: the config file ---------------------------------------------------------------------------------
    ("train config missing", lambda p: ["train", "-c", str(p.tmp / "nope.yaml")], "nope.yaml not found"),
    ("train config is a folder", lambda p: ["train", "-c", str(p.empty)], "empty is a folder; give a YAML file"),
    ("train config not text", lambda p: ["train", "-c", str(p.tmp / "binary.yaml")], "cannot be read (not UTF-8 text)"),
    ("train config a list", lambda p: ["train", "-c", str(p.tmp / "list.yaml")], "top level must be a mapping"),
    (
        "train config empty: no dataset root",
        lambda p: ["train", "-c", str(p.tmp / "blank.yaml")],
        "config key 'data.source.root' is empty; set it to the gta5 folder (the default)",
    ),
    # ----- train: values --------------------------------------------------------------------------------------------
    (
        "negative iterations",
        lambda p: p.train("train.iterations=-5"),
        "'train.iterations': -5 is out of range; must be an integer >= 1 (set by --set train.iterations=-5)",
    ),
    (
        "size 0x0",
        lambda p: p.train("data.crop=0x0"),
        "'data.crop': [0, 0] is out of range; each value must be an integer >= 1 (set by --set data.crop=0x0)",
    ),
    ("size abc", lambda p: p.train("data.crop=abc"), "'data.crop': expected a list, got 'abc'"),
    ("wrong type", lambda p: p.train("train.log_every=often"), "'train.log_every': expected int, got 'often'"),
    ("unknown key", lambda p: p.train("train.iteratons=3"), "unknown config key 'train.iteratons'"),
    (
        "probability above 1",
        lambda p: p.train("method.pseudo_threshold=1.5"),
        "'method.pseudo_threshold': 1.5 is out of range; must be a number in [0, 1]",
    ),
    (
        "negative learning rate",
        lambda p: p.train("optim.lr=-1"),
        "'optim.lr': -1.0 is out of range; must be a number > 0",
    ),
    (
        "momentum 1",
        lambda p: p.train("optim.momentum=1"),
        "'optim.momentum': 1.0 is out of range; must be a number in [0, 1)",
    ),
    (
        "not a finite number",
        lambda p: p.train("method.noise_std=.inf"),
        "'method.noise_std': inf is not a finite number",
    ),
    (
        "class count below the labels'",
        lambda p: p.train("model.num_classes=16"),
        "'model.num_classes': 16 is out of range; must be an integer in [19, 254]",
    ),
    ("negative seed", lambda p: p.train("seed=-1"), "'seed': -1 is out of range"),
    ("zero batch size", lambda p: p.train("data.batch_size=0"), "'data.batch_size': 0 is out of range"),
    ("--set without =", lambda p: p.train("train.iterations"), "expected KEY=VALUE"),
    # ----- train: cross-field rules ---------------------------------------------------------------------------------
    (
        "relation class id outside the classes",
        lambda p: p.train("method.relations={12: [42]}", config=CAMIX),
        "'method.relations': class id 42 in {12: [42]} is out of range; class ids must be in [0, 19)",
    ),
    (
        "warm-up longer than the run",
        lambda p: p.train("method.warmup_iterations=5", config=CAMIX),
        "'method.warmup_iterations': 5 is longer than the run; it must be <= train.iterations=2",
    ),
    (
        "crop larger than the resized images",
        lambda p: p.train("data.source.size=[40, 20]"),
        "'data.crop': [48, 48] is larger than the resized source images (data.source.size=[40, 20])",
    ),
    (
        "HRDA detail crop larger than the crop",
        lambda p: p.train("model.hrda.detail_crop=[64, 64]"),
        "'model.hrda.detail_crop': [64, 64] does not fit the training crop (data.crop=[48, 48])",
    ),
    (
        "HRDA detail crop off the output grid",
        lambda p: p.train("model.hrda.detail_crop=[24, 24]"),
        "'model.hrda.detail_crop': 24x24 is not a multiple of 16 (twice the output stride of deeplabv2_tiny)",
    ),
    (
        "mean teacher without a target",
        lambda p: p.train("data.target=null", config=CAMIX),
        "method.name=mean_teacher needs an unlabelled target dataset",
    ),
    (
        "blur range reversed",
        lambda p: p.train("method.augment.blur_sigma=[2.0, 1.0]"),
        "'method.augment.blur_sigma': [2, 1] must be [low, high]",
    ),
    ("unknown device", lambda p: p.train("train.device=gpu"), "'train.device': 'gpu' is not a device"),
    # ----- train: what the config names -----------------------------------------------------------------------------
    ("unknown model", lambda p: p.train("model.name=resnet"), "'model.name': 'resnet' is not a model; choose one of"),
    (
        "missing pretrained weights",
        lambda p: p.train(f"model.pretrained={p.tmp / 'nope.pth'}"),
        "nope.pth does not exist",
    ),
    (
        "dataset root is a file",
        lambda p: p.train(f"data.source.root={p.afile}"),
        "afile: dataset root not found or not a folder",
    ),
    (
        "dataset root is an empty folder",
        lambda p: p.train(f"data.source.root={p.empty}"),
        "empty/images: folder not found",
    ),
    ("empty dataset root", lambda p: p.train("data.val.root=''"), "'data.val.root' is empty"),
    (
        "prior is a folder",
        lambda p: p.train(f"data.prior={p.empty}", config=CAMIX),
        "is a folder; it must be a spatial prior",
    ),
    ("prior not a prior file", lambda p: p.train(f"data.prior={p.afile}", config=CAMIX), "cannot read spatial prior"),
    (
        "prior of another class count",
        lambda p: p.train(f"data.prior={p.tmp / 'prior5.pt'}", config=CAMIX),
        "holds 5 class maps but model.num_classes=19",
    ),
    ("--resume missing", lambda p: p.train(extra=("--resume", str(p.tmp / "nope.pt"))), "no such checkpoint file"),
    ("--resume a folder", lambda p: p.train(extra=("--resume", str(p.empty))), "a folder; give a checkpoint file"),
    (
        "--resume not a checkpoint",
        lambda p: p.train(extra=("--resume", str(p.afile))),
        "is corrupt or not a torch file (Weights only load failed)",
    ),
    ("missing required argument", lambda p: ["train"], "the following arguments are required: -c/--config"),
    # ----- evaluate -------------------------------------------------------------------------------------------------
    ("evaluate checkpoint missing", lambda p: ["evaluate", "--ckpt", str(p.tmp / "nope.pt")], "nope.pt does not exist"),
    (
        "evaluate empty folder as checkpoint",
        lambda p: ["evaluate", "--ckpt", str(p.empty)],
        "is a folder without checkpoints/last.pt",
    ),
    ("evaluate text file as checkpoint", lambda p: ["evaluate", "--ckpt", str(p.afile)], "corrupt or not a torch file"),
    (
        "evaluate window 0x0",
        lambda p: ["evaluate", "--ckpt", str(p.ckpt), "--sliding", "0x0"],
        "argument --sliding: expected WIDTHxHEIGHT like 1024x512, got '0x0'",
    ),
    ("evaluate window abc", lambda p: ["evaluate", "--ckpt", str(p.ckpt), "--sliding", "abc"], "got 'abc'"),
    (
        "evaluate overlap out of range",
        lambda p: ["evaluate", "--ckpt", str(p.ckpt), "--overlap", "1.5"],
        "--overlap 1.5: choose a fraction in [0, 1)",
    ),
    (
        "evaluate --set out of range",
        lambda p: ["evaluate", "--ckpt", str(p.ckpt), "--set", "eval.batch_size=0"],
        "'eval.batch_size': 0 is out of range",
    ),
    (
        "evaluate --out is a file",
        lambda p: ["evaluate", "--ckpt", str(p.ckpt), "--out", str(p.afile)],
        "a file exists there; give a folder",
    ),
    (
        "evaluate teacher of a source-only run",
        lambda p: ["evaluate", "--ckpt", str(p.ckpt), "--teacher"],
        "holds no teacher weights",
    ),
    # ----- predict --------------------------------------------------------------------------------------------------
    (
        "predict input missing",
        lambda p: ["predict", "--ckpt", str(p.ckpt), str(p.tmp / "nope.png"), "--out", str(p.tmp / "pred")],
        "nope.png: no such file or folder",
    ),
    (
        "predict empty folder",
        lambda p: ["predict", "--ckpt", str(p.ckpt), str(p.empty), "--out", str(p.tmp / "pred")],
        "no .png/.jpg/.jpeg images in this folder",
    ),
    (
        "predict file that is not an image",
        lambda p: ["predict", "--ckpt", str(p.ckpt), str(p.tmp / "text.png"), "--out", str(p.tmp / "pred")],
        "text.png: cannot read image header",
    ),
    (
        "predict size 0x0",
        lambda p: ["predict", "--ckpt", str(p.ckpt), str(p.empty), "--out", str(p.tmp / "pred"), "--size", "0x0"],
        "argument --size",
    ),
    (
        "predict --out is a file",
        lambda p: ["predict", "--ckpt", str(p.ckpt), str(p.data / "gta" / "images"), "--out", str(p.afile)],
        "a file exists there; give a folder",
    ),
    # ----- export ---------------------------------------------------------------------------------------------------
    (
        "export --onnx is a folder",
        lambda p: ["export", "--ckpt", str(p.ckpt), "--onnx", str(p.empty)],
        "a folder; give a file path",
    ),
    (
        "export --onnx under a file",
        lambda p: ["export", "--ckpt", str(p.ckpt), "--onnx", str(p.afile / "m.onnx")],
        "is a file, not a folder",
    ),
    (
        "export opset out of range",
        lambda p: ["export", "--ckpt", str(p.ckpt), "--onnx", str(p.tmp / "m.onnx"), "--opset", "0"],
        "argument --opset: expected a whole number in [7, 20], got '0'",
    ),
    (
        "export negative tolerance",
        lambda p: ["export", "--ckpt", str(p.ckpt), "--onnx", str(p.tmp / "m.onnx"), "--atol", "-1"],
        "argument --atol: expected a number >= 0",
    ),
    (
        "export check size 0x0",
        lambda p: ["export", "--ckpt", str(p.ckpt), "--onnx", str(p.tmp / "m.onnx"), "--check-size", "0x0"],
        "argument --check-size",
    ),
    # ----- report ---------------------------------------------------------------------------------------------------
    (
        "report run missing",
        lambda p: ["report", str(p.tmp / "nope"), "--out", str(p.tmp / "rep")],
        "nope: no such folder; give a run directory",
    ),
    (
        "report run is a file",
        lambda p: ["report", str(p.afile), "--out", str(p.tmp / "rep")],
        "afile: a file; give a run directory",
    ),
    (
        "report empty folder",
        lambda p: ["report", str(p.empty), "--out", str(p.tmp / "rep")],
        "is not a camix run directory: config.yaml is missing",
    ),
    (
        "report broken config.yaml",
        lambda p: ["report", str(p.tmp / "badrun"), "--out", str(p.tmp / "rep")],
        "cannot read its config.yaml or metrics.jsonl",
    ),
    (
        "report negative image count",
        lambda p: ["report", str(p.run), "--out", str(p.tmp / "rep"), "--images", "-1"],
        "argument --images: expected a whole number >= 1",
    ),
    (
        "report --out is a file",
        lambda p: ["report", str(p.run), "--out", str(p.afile)],
        "a file exists there; give a folder",
    ),
    (
        "report unknown baseline",
        lambda p: ["report", str(p.run), "--out", str(p.tmp / "rep"), "--baseline", "zzz", "--no-figures"],
        "--baseline 'zzz' is not a row",
    ),
    # ----- study ----------------------------------------------------------------------------------------------------
    ("study file missing", lambda p: ["study", str(p.tmp / "nope.yaml")], "nope.yaml not found"),
    ("study file is a folder", lambda p: ["study", str(p.empty)], "is a folder; give a YAML file"),
    (
        "study negative seed",
        lambda p: ["study", str(p.tmp / "study_seed.yaml"), "--dry-run"],
        "'study.seeds': [-1] is out of range",
    ),
    (
        "study SynthCity size 0x0",
        lambda p: ["study", str(p.tmp / "study_size.yaml"), "--dry-run"],
        "'study.synthcity.size': [0, 0] is out of range",
    ),
    (
        "study run config missing",
        lambda p: ["study", str(p.tmp / "study_run.yaml"), "--dry-run"],
        "study run 'a' (seed 0): config file",
    ),
    ("study without runs", lambda p: ["study", str(p.tmp / "study_noruns.yaml"), "--dry-run"], "names no runs"),
    (
        "study --set out of range",
        lambda p: ["study", "configs/synthcity/study.yaml", "--dry-run", "--set", "train.iterations=0"],
        "'train.iterations': 0 is out of range",
    ),
    # ----- data synthcity / check / prior ---------------------------------------------------------------------------
    (
        "synthcity size 0x0",
        lambda p: ["data", "synthcity", "--out", str(p.tmp / "syn"), "--size", "0x0"],
        "argument --size: expected WIDTHxHEIGHT like 1024x512 of at least 32x16, got '0x0'",
    ),
    (
        "synthcity size abc",
        lambda p: ["data", "synthcity", "--out", str(p.tmp / "syn"), "--size", "abc"],
        "argument --size: expected WIDTHxHEIGHT like 1024x512 of at least 32x16, got 'abc'",
    ),
    (
        "synthcity negative image count",
        lambda p: ["data", "synthcity", "--out", str(p.tmp / "syn"), "--num-target-train", "-3"],
        "argument --num-target-train: expected a whole number >= 0, got '-3'",
    ),
    (
        "synthcity negative gap",
        lambda p: ["data", "synthcity", "--out", str(p.tmp / "syn"), "--gap", "-1"],
        "gap must be a finite number >= 0",
    ),
    ("synthcity --out is a file", lambda p: ["data", "synthcity", "--out", str(p.afile)], "exists and is not a folder"),
    (
        "check root missing",
        lambda p: ["data", "check", "--dataset", "gta5", "--root", str(p.tmp / "nope")],
        "dataset root not found",
    ),
    (
        "check root empty folder",
        lambda p: ["data", "check", "--dataset", "gta5", "--root", str(p.empty)],
        "empty/images: folder not found",
    ),
    (
        "check limit 0",
        lambda p: ["data", "check", "--dataset", "gta5", "--root", str(p.data / "gta"), "--limit", "0"],
        "argument --limit: expected a whole number >= 1",
    ),
    (
        "check list file missing",
        lambda p: [
            "data",
            "check",
            "--dataset",
            "gta5",
            "--root",
            str(p.data / "gta"),
            "--list-file",
            str(p.tmp / "nope.txt"),
        ],
        "list file not found",
    ),
    (
        "check split of a single-split dataset",
        lambda p: ["data", "check", "--dataset", "gta5", "--root", str(p.data / "gta"), "--split", "val"],
        "gta5 has a single split",
    ),
    (
        "check unknown dataset",
        lambda p: ["data", "check", "--dataset", "kitti", "--root", str(p.empty)],
        "argument --dataset: invalid choice: 'kitti'",
    ),
    (
        "prior size 0x0",
        lambda p: prior(p, size="0x0"),
        "argument --size: expected WIDTHxHEIGHT like 1024x512, got '0x0'",
    ),
    (
        "prior --out is a folder",
        lambda p: prior(p, out=p.empty),
        "a folder; give a file path",
    ),
    (
        "prior negative smoothing",
        lambda p: prior(p, "--smoothing", "-1"),
        "argument --smoothing: expected a number >= 0",
    ),
    (
        "prior negative workers",
        lambda p: prior(p, "--workers", "-1"),
        "argument --workers: expected a whole number >= 0",
    ),
    # ----- demo -----------------------------------------------------------------------------------------------------
    (
        "demo config missing",
        lambda p: ["demo", "--config", str(p.tmp / "nope.yaml"), "--data", str(p.data), "--out", str(p.tmp / "demo")],
        "nope.yaml not found",
    ),
    (
        "demo --set out of range",
        lambda p: ["demo", "--set", "train.iterations=0", "--data", str(p.data), "--out", str(p.tmp / "demo")],
        "'train.iterations': 0 is out of range",
    ),
    (
        "demo --data is a file",
        lambda p: ["demo", "--data", str(p.afile), "--out", str(p.tmp / "demo")],
        "afile: a file exists there; give a folder",
    ),
]


@pytest.mark.parametrize(("name", "argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    name: str, argv: Case, message: str, paths: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in paths.tmp.iterdir())
    run_before = {p: p.stat().st_mtime_ns for p in paths.run.rglob("*")}
    code = main(argv(paths))
    err = capsys.readouterr().err
    assert code == 2, (name, err)
    assert err.count("\n") == 1 and "Traceback" not in err, (name, err)
    assert message in err, (name, err)
    assert sorted(p.name for p in paths.tmp.iterdir()) == before  # no run directory, output or file created
    assert {p: p.stat().st_mtime_ns for p in paths.run.rglob("*")} == run_before  # the finished run untouched


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_config(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "-c", str(paths.tmp / "noread.yaml")]) == 2
    assert "cannot be read (Permission denied)" in capsys.readouterr().err


def test_missing_tensorboard_is_one_line(paths: Paths, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert main(paths.train("train.tensorboard=true")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the tensorboard package is not installed; pip install 'camix[tensorboard]'" in err
    assert not (paths.tmp / "train_out").exists()


def test_a_corrected_value_trains_in_the_same_out_dir_after_a_rejected_one(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    sets = [a for s in tiny_overrides(synthcity_root, out) for a in ("--set", s)]
    base = ["train", "-c", "configs/synthcity/source_only.yaml", *sets, "--no-progress"]
    # a fresh run rejected: no run directory; the corrected re-run trains there
    assert main([*base, "--set", "train.iterations=-5"]) == 2
    assert not out.exists()
    assert main(base) == 0
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # a rejected resume leaves every file of the run as it was; the corrected resume continues it
    assert main([*base, "--set", "train.iterations=4", "--set", "method.warmup_iterations=-1", "--resume", "auto"]) == 2
    assert "'method.warmup_iterations': -1 is out of range" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    assert main([*base, "--set", "train.iterations=4", "--resume", "auto"]) == 0
    logged = [line for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss/total"' in line]
    assert [int(line.split('"iteration": ')[1].split(",")[0]) for line in logged] == [1, 2, 3, 4]
    assert '"iteration": 4' in (out / "summary.json").read_text()
    assert "iterations: 4" in (out / "config.yaml").read_text()


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "camix", "study", "configs/synthcity/study.yaml", "--dry-run"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before camix has imported anything, let alone printed
        err = proc.stderr.read().decode()
    assert proc.returncode == 141 and "Traceback" not in err and err == ""
