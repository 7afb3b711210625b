"""benchmarks/train_step.py, synthcity_networks.py and gpu_check.sh run on CPU with a tiny model (so CI covers them).

The scripts run as the user runs them, in a subprocess: tests never import benchmarks/ (checked below).
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--device", "cpu", "--model", "deeplabv2_tiny", "--crop", "32x32", "--target-size", "64x64"]
METHODS = ("source_only", "dacs", "camix")  # what benchmarks/train_step.py times by default


def run(command: list[str], **extra_env: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "2", **extra_env}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def benchmark_imports(source: str) -> list[int]:
    """Line numbers of the imports of ``benchmarks`` (or a module in it) in Python ``source``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            names = [node.module]
        else:
            continue
        if any(name == "benchmarks" or name.startswith("benchmarks.") for name in names):
            lines.append(node.lineno)
    return lines


def test_import_check_finds_every_form_of_import() -> None:
    source = "import benchmarks\nimport os, benchmarks.step\nfrom benchmarks import x\nfrom benchmarks.a import b\n"
    assert benchmark_imports(source) == [1, 2, 3, 4]
    assert benchmark_imports("import benchmarks_x\nfrom camix import benchmarks\nfrom . import benchmarks\n") == []


def test_no_test_module_imports_the_benchmarks() -> None:
    """The benchmarks are scripts that tests run; a test's helpers live in tests/."""
    found = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if (lines := benchmark_imports(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_train_step_self_check_passes() -> None:
    """The baseline's helpers (class choice with relations; the re-creation syncs, so it cannot run on meta)."""
    assert run([sys.executable, "benchmarks/train_step.py", "--self-check"]).strip() == "self-check passed"


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
    for method in METHODS:
        assert f"| {method} | fast |" in out
        assert f"| {method} | baseline |" in out
    speedups = [line.rsplit("|", 2)[-2].strip() for line in out.splitlines() if "| baseline |" in line]
    assert all(s.endswith("x") and float(s[:-1]) > 0 for s in speedups)
    assert "appended" not in out
    assert (results.read_bytes() if results.exists() else None) == before  # --no-record leaves it alone


def test_record_appends_dated_sections(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    argv = [*TINY, "--methods", "source_only", "--iters", "1", "--warmup", "0", "--results", str(results)]
    run([sys.executable, "benchmarks/train_step.py", *argv], OMP_WAIT_POLICY="PASSIVE")
    numerics = ["--check-numerics", "--numerics-iters", "2", "--numerics-pretrain", "1"]
    out = run([sys.executable, "benchmarks/train_step.py", *argv, *numerics])
    text = results.read_text()
    assert text.startswith("# Benchmark results")
    assert text.count("# Benchmark results") == 1
    assert text.count("## ") == 2
    assert "train_step.py" in text and "torch " in text
    assert "OMP_WAIT_POLICY=PASSIVE" in text.split("## ")[1]  # it changes CPU timings, so it is recorded
    assert "| source_only | seg |" in text  # the numerics table of the second run
    assert "max rel. diff" in out


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_teacher_passes_script_times_every_arrangement() -> None:
    argv = ["--model", "deeplabv2_tiny", "--crop", "32x32", "--iters", "1", "--warmup", "0", "--no-record"]
    out = run([sys.executable, "benchmarks/teacher_passes.py", *argv])
    rows = [line for line in out.splitlines() if line.startswith("| ") and "arrangement" not in line]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == ["separate", "3", "batched", "joint"]
    assert all(float(row.split(" | ")[1]) > 0 and float(row.split(" | ")[2].strip(" |")) > 0 for row in rows)


@pytest.mark.parametrize("released", [False, True])
def test_profile_script_accounts_for_the_whole_step(released: bool) -> None:
    argv = ["--model", "deeplabv2_tiny", "--crop", "32x32", "--target-size", "64x64", "--warmup", "1"]
    out = run([sys.executable, "benchmarks/profile_step.py", *argv, *(["--released"] if released else [])])
    assert ("(the released loop)" if released else "(camix)") in out
    shares = [
        float(line.split(" | ")[2].split()[0]) for line in out.splitlines() if line.startswith("| ") and " % |" in line
    ]
    assert shares[-1] == 100 and abs(sum(shares[:-1]) - 100) < 0.5  # the kinds add up to the whole
    assert "convolution (forward)" in out and "page faults:" in out


def test_gpu_check_script_smoke() -> None:
    out = run(["bash", "benchmarks/gpu_check.sh", "--smoke"])
    assert "| camix | baseline |" in out
    assert "| dacs | baseline |" not in out  # baseline for CAMix only
    assert "| camix | con |" in out and "== done" in out
    assert "| daformer_camix | fast |" in out and out.count("| hrda_camix | fast |") == 2  # batched, separate
    assert "images/s" in out and "failed" not in out


def test_train_step_times_a_packaged_config_and_refuses_a_missing_one() -> None:
    argv = ["--device", "cpu", "--model", "deeplabv2_tiny", "--crop", "32x32", "--iters", "1", "--warmup", "0"]
    out = run(
        [sys.executable, "benchmarks/train_step.py", *argv, "--config", "configs/gta2cs/dacs.yaml", "--no-record"]
    )
    assert "config configs/gta2cs/dacs.yaml, model deeplabv2_tiny, crop 32x32" in out and "| dacs | fast |" in out
    for extra, words in (
        (["--config", "configs/nope.yaml"], "no such file"),
        (["--config", "configs/gta2cs/dacs.yaml", "--baseline"], "drop --baseline"),
    ):
        done = subprocess.run(
            [sys.executable, "benchmarks/train_step.py", *argv, *extra], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


def test_synthcity_networks_script_times_both_networks(synthcity_root: Path) -> None:
    argv = ["--data", str(synthcity_root), "--runs", "dacs", "daformer_camix", "--iters", "1", "--warmup", "0"]
    out = run([sys.executable, "benchmarks/synthcity_networks.py", *argv, "--no-record"])
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| ")]
    body = [r for r in rows[1:] if not r[0].startswith("---")]  # rows[0]: the header
    assert [(r[0], r[1], r[2]) for r in body] == [
        ("dacs", "deeplabv2_tiny", "sgd"),
        ("daformer_camix", "daformer_mittiny", "adamw"),
    ]
    assert all(float(r[4]) > 0 for r in body)  # s / iteration (median)
    assert "| daformer_camix | daformer_mittiny | adamw | 489,875 |" in out


def test_batchnorm_script_times_both_kernels_and_bounds_the_error() -> None:
    out = run([sys.executable, "benchmarks/batchnorm_cpu.py", "--iters", "1", "--no-record"])
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| 2x")]
    assert len(rows) == 4
    assert all(float(row[1]) > 0 and float(row[2]) > 0 for row in rows)
    assert all(float(row[5].strip(" |")) < 1e-4 for row in rows)  # camix's largest error against float64


@pytest.mark.parametrize("flush", [False, True])
def test_step_pairs_script_alternates_and_reports_the_median_ratio(tmp_path: Path, flush: bool) -> None:
    results = tmp_path / "RESULTS.md"
    argv = ["--model", "deeplabv2_tiny", "--crop", "32x32", "--target-size", "64x64", "--pairs", "3"]
    argv += ["--released-flush"] if flush else []
    out = run([sys.executable, "benchmarks/step_pairs.py", *argv, "--results", str(results)])
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| ") and "pair" not in line]
    rows = [row for row in rows if not row[0].startswith("|---")]
    assert [row[0].strip("| ") for row in rows] == ["1", "2", "3"]
    assert all(float(row[1]) > 0 and float(row[2]) > 0 for row in rows)
    ratios = sorted(float(row[3].strip(" |")) for row in rows)
    median = float(out.split("Median of the pairs' ratios: **")[1].split("**")[0])
    assert median == ratios[1]  # the middle of the three pairs' ratios
    assert "step_pairs.py" in results.read_text() and "OMP_WAIT_POLICY=" in results.read_text()
    assert ("the released loop flushes subnormal gradients at its logits too" in out) == flush
