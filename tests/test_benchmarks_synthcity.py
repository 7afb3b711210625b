"""benchmarks/synthcity/: paired.py, probe_data.py, ghost_probe.py and confusion.py, run as the user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from camix.data.synthcity import generate
from tests.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    command = [sys.executable, f"benchmarks/synthcity/{name}", *argv]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def fake_run(root: Path, name: str, miou: float, road: float) -> None:
    """A run directory with one evaluation at iteration 10 (only what ``camix.runs.load_run`` reads)."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 0\n")
    record = {"iteration": 10, "eval/model": "student", "eval/miou19": miou, "eval/iou": {"road": road}}
    (run / "metrics.jsonl").write_text(json.dumps({"iteration": 5, "loss": 1.0}) + "\n" + json.dumps(record) + "\n")


def test_paired_pools_seeds_over_folders(tmp_path: Path) -> None:
    for root, seed, (a, ra), (b, rb) in (
        ("g0", 0, (40.0, 50.0), (38.0, 53.0)),
        ("g0", 1, (41.0, 51.0), (37.0, 50.0)),
        ("g1", 0, (35.0, 60.0), (36.0, 60.0)),
    ):
        fake_run(tmp_path / root, f"dacs_seed{seed}", a, ra)
        fake_run(tmp_path / root, f"cutmix_seed{seed}", b, rb)
    fake_run(tmp_path / "g1", "dacs_seed2", 90.0, 90.0)  # no cutmix_seed2: not a pair
    done = script("paired.py", str(tmp_path / "g0"), str(tmp_path / "g1"), "--rows", "dacs", "cutmix")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "| dacs - cutmix (3 pairs) | mean | s.e. |"
    # mIoU19 differences +2, +4, -1: mean 5/3, std 2.517, s.e. 2.517 / sqrt(3) = 1.453
    assert lines[2] == "| mIoU19 | +1.7 | 1.5 |"
    # road differences -3, +1, 0: mean -2/3, std 2.082, s.e. 1.202
    assert lines[3] == "| road | -0.7 | 1.2 |"


def test_paired_without_pairs_says_so(tmp_path: Path) -> None:
    done = script("paired.py", str(tmp_path), "--rows", "dacs", "cutmix")
    assert done.returncode == 2
    assert "no pair dacs_seedN / cutmix_seedN" in done.stderr


def test_probe_data_changes_the_target_only(tmp_path: Path) -> None:
    argv = ["--version", "2.0", "--seed", "3", "--size", "64", "32", "--counts", "2", "2", "1"]
    done = script("probe_data.py", "--out", str(tmp_path / "probe"), *argv, "--target", "style.colour_shift=0")
    assert done.returncode == 0, done.stderr
    generate(tmp_path / "own", seed=3, size=(64, 32), num_source=2, num_target_train=2, num_target_val=1,
             version="2.0", progress=False)  # fmt: skip
    source = sorted((tmp_path / "own" / "gta").rglob("*.png"))
    assert len(source) == 4  # 2 images + 2 labels
    for path in source:
        assert (tmp_path / "probe" / path.relative_to(tmp_path / "own")).read_bytes() == path.read_bytes()
    images = sorted((tmp_path / "own" / "cityscapes" / "leftImg8bit").rglob("*.png"))
    probe = [tmp_path / "probe" / p.relative_to(tmp_path / "own") for p in images]
    assert all(a.read_bytes() != b.read_bytes() for a, b in zip(images, probe, strict=True))
    meta = json.loads((tmp_path / "probe" / "synthcity.json").read_text())
    own = json.loads((tmp_path / "own" / "synthcity.json").read_text())
    assert meta["version"] == "2.0" and meta["domains"]["target"]["style"]["colour_shift"] == 0.0
    assert own["domains"]["target"]["style"]["colour_shift"] == 0.3
    meta["domains"]["target"]["style"]["colour_shift"] = 0.3  # the one knob changed
    assert meta["domains"] == own["domains"]


def test_probe_data_rejects_bad_knobs(tmp_path: Path) -> None:
    out = str(tmp_path / "probe")
    for target, message in (
        ("style.colour=0", "style has no knob 'colour'"),
        ("style.noise=x", "'x' is not a number"),
        ("style.noise=99", "style.noise must lie in [0.0, 40.0]"),
        ("colour_shift=0", "write scene.<knob>=<value> or style.<knob>=<value>"),
    ):
        done = script("probe_data.py", "--out", out, "--target", target)
        assert done.returncode == 2 and message in done.stderr, (target, done.stderr)
    assert not (tmp_path / "probe").exists()


def test_ghost_probe_trains_dacs_and_confusion_reads_it(synthcity_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "dacs_seed0"
    # threshold 0: every teacher pixel is confident, so the target pixels carry loss from the first step
    sets = [f"--set={o}" for o in tiny_overrides(synthcity_root, run)] + ["--set=method.pseudo_threshold=0"]
    done = script("ghost_probe.py", "-c", "configs/synthcity/dacs.yaml", *sets, "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "checkpoints" / "last.pt").is_file()
    plain = tmp_path / "plain"
    done = subprocess.run(
        [sys.executable, "-m", "camix", "train", "-c", "configs/synthcity/dacs.yaml", *sets, f"--set=out_dir={plain}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    # the same seed draws the same masks; the probe drops the ghost pixels' (non-negative) terms from the loss
    first = [json.loads((d / "metrics.jsonl").read_text().splitlines()[0]) for d in (run, plain)]
    assert first[0]["iteration"] == first[1]["iteration"] == 1
    assert first[0]["loss/seg"] == first[1]["loss/seg"]
    assert 0.0 < first[0]["loss/con"] < first[1]["loss/con"]
    flip = [f"--set=out_dir={tmp_path / 'flip'}", "--set=method.augment.flip=true"]
    flipped = script("ghost_probe.py", "-c", "configs/synthcity/dacs.yaml", *sets, *flip)
    assert flipped.returncode != 0 and "augment.flip=false" in flipped.stderr + flipped.stdout
    argv = ["--rows", "dacs", "cutmix", "--classes", "road", "--seeds", "0"]
    done = script("confusion.py", str(tmp_path / "runs"), *argv)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "ground truth road:"
    recall = float(lines[1].split("recall ")[1].split(" ")[0])
    assert lines[1].strip().startswith("dacs") and "(1 runs)" in lines[1] and 0.0 <= recall <= 100.0
    assert lines[2].split() == ["cutmix", "(0", "runs)", "no", "runs"]
