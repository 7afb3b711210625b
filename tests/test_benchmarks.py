"""benchmarks/train_step.py and benchmarks/gpu_check.sh run on CPU with a tiny model (so CI covers them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import train_step

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--model", "deeplabv2_tiny", "--crop", "32x32", "--target-size", "64x64"]


def run(command: list[str]) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_train_step_script_prints_fast_and_baseline_rows() -> None:
    results = ROOT / "benchmarks" / "RESULTS.md"
    before = results.read_bytes() if results.exists() else None
    out = run(
        [
            sys.executable,
            "benchmarks/train_step.py",
            *TINY,
            "--iters",
            "2",
            "--warmup",
            "1",
            "--baseline",
            "--no-record",
        ]
    )
    for method in train_step.METHODS:
        assert f"| {method} | fast |" in out
        assert f"| {method} | baseline |" in out
    speedups = [line.rsplit("|", 2)[-2].strip() for line in out.splitlines() if "| baseline |" in line]
    assert all(s.endswith("x") and float(s[:-1]) > 0 for s in speedups)
    assert "appended" not in out
    assert (results.read_bytes() if results.exists() else None) == before  # --no-record leaves it alone


def test_record_appends_dated_sections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "RESULTS.md"
    argv = [*TINY, "--methods", "source_only", "--iters", "1", "--warmup", "0", "--results", str(results)]
    train_step.main(argv)
    train_step.main([*argv, "--check-numerics", "--numerics-iters", "2", "--numerics-pretrain", "1"])
    text = results.read_text()
    assert text.startswith("# Benchmark results")
    assert text.count("# Benchmark results") == 1
    assert text.count("## ") == 2
    assert "train_step.py" in text and "torch " in text
    assert "| source_only | seg |" in text  # the numerics table of the second run
    assert "max rel. diff" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_script_smoke() -> None:
    out = run(["bash", "benchmarks/gpu_check.sh", "--smoke"])
    assert "| camix | baseline |" in out
    assert "| dacs | baseline |" not in out  # baseline for CAMix only
    assert "| camix | con |" in out and "== done" in out


def test_synthcity_networks_script_times_both_networks(
    synthcity_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import synthcity_networks

    argv = ["--data", str(synthcity_root), "--runs", "dacs", "daformer_camix", "--iters", "1", "--warmup", "0"]
    rows = synthcity_networks.main([*argv, "--no-record"])
    assert [(r["run"], r["model"], r["optimizer"]) for r in rows] == [
        ("dacs", "deeplabv2_tiny", "sgd"),
        ("daformer_camix", "daformer_mittiny", "adamw"),
    ]
    assert all(float(r["median"]) > 0 for r in rows)  # type: ignore[arg-type]
    printed = capsys.readouterr().out
    assert "| daformer_camix | daformer_mittiny | adamw | 489,875 |" in printed
