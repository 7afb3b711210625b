"""Failure handling: SIGKILL/SIGTERM during training, non-finite losses, and bad input as one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from camix import methods
from camix.checkpoint import find_resume, load_checkpoint
from camix.cli import main
from camix.train import NonFiniteLoss, Trainer
from tests.conftest import tiny_overrides


def train_command(root: Path, out: Path, *extra: str) -> list[str]:
    sets = [arg for item in tiny_overrides(root, out) for arg in ("--set", item)]
    more = [arg for item in extra for arg in ("--set", item)]
    return [sys.executable, "-m", "camix", "train", "-c", "configs/synthcity/source_only.yaml", *sets, *more]


def wait_for(path: Path, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "process died"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def long_run(root: Path, out: Path) -> subprocess.Popen[bytes]:
    command = train_command(root, out, "train.iterations=100000", "train.checkpoint_every=1", "train.eval_every=0")
    return subprocess.Popen([*command, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_leaves_a_loadable_checkpoint(synthcity_root: Path, tmp_path: Path) -> None:
    process = long_run(synthcity_root, tmp_path / "run")
    wait_for(tmp_path / "run" / "checkpoints" / "iter_0000003.pt", process)
    process.send_signal(signal.SIGKILL)  # mid-write of some later checkpoint, most likely
    process.wait(timeout=30)
    found = find_resume(tmp_path / "run")
    assert found is not None and load_checkpoint(found)["iteration"] >= 3
    leftovers = [p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")  # last.pt itself is never torn
    assert state["iteration"] >= 3, leftovers


def test_sigterm_finishes_the_iteration_saves_and_says_how_to_resume(synthcity_root: Path, tmp_path: Path) -> None:
    process = long_run(synthcity_root, tmp_path / "run")
    wait_for(tmp_path / "run" / "checkpoints" / "iter_0000002.pt", process)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "--resume auto" in out.decode()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["iteration"] >= 2
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert f'"iteration": {state["iteration"]},' in metrics  # the stop iteration was logged before saving


def test_non_finite_loss_stops_naming_iteration_and_term(tiny_config, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("source_only", "train.iterations=6", "train.checkpoint_every=2", "train.log_every=1")
    original = methods.source_only

    def poisoned(ctx, source, target=None):  # type: ignore[no-untyped-def]
        out = original(ctx, source, target)
        if ctx.iteration >= 3:  # the 4th iteration
            out.losses["seg"] = out.losses["seg"] * float("nan")
        return out

    monkeypatch.setitem(methods.STEPS, "source_only", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"loss 'seg' became nan by iteration 4"):
        Trainer(cfg, progress=False).fit()
    state = load_checkpoint(Path(cfg.out_dir) / "checkpoints" / "last.pt")
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_2(
    synthcity_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_config,  # type: ignore[no-untyped-def]
) -> None:
    base = train_command(synthcity_root, tmp_path / "run")[3:]  # drop "python -m camix"
    cases = {
        "unknown key": (["--set", "train.iteratons=3"], "unknown config key 'train.iteratons'"),
        "wrong type": (["--set", "train.iterations=many"], "config key 'train.iterations': expected int"),
        "missing dataset": (["--set", f"data.source.root={tmp_path / 'nope'}"], str(tmp_path / "nope")),
        "missing prior": (
            ["-c", "configs/synthcity/camix.yaml", "--set", f"data.prior={tmp_path / 'prior.pt'}"],
            "prior.pt",
        ),
        "corrupt checkpoint": (["--resume", str(tmp_path / "bad.pt")], "bad.pt"),
    }
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02 definitely not a checkpoint")
    for name, (extra, message) in cases.items():
        code, err = run_cli([*base, *extra, "--no-progress"], capsys)
        assert code == 2, name
        assert message in err, (name, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (name, err)


def test_checkpoint_of_another_model_or_class_count(tiny_config, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("source_only")
    Trainer(cfg, progress=False).fit()
    ckpt = str(Path(cfg.out_dir) / "checkpoints" / "last.pt")
    for override, key in (("model.num_classes=20", "num_classes"), ("model.name=deeplabv2_small", "name")):
        code = main(["evaluate", "-c", str(Path(cfg.out_dir) / "config.yaml"), "--ckpt", ckpt, "--set", override])
        err = capsys.readouterr().err
        assert code == 2 and f"model.{key}=" in err and err.count("\n") == 1, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_directory(tmp_path: Path, synthcity_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, err = run_cli([*train_command(synthcity_root, locked / "run")[3:], "--no-progress"], capsys)
    assert code == 2 and "not writable" in err


def test_unwritable_output_directory_even_as_root(
    tmp_path: Path, synthcity_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the run directory should go")
    code, err = run_cli([*train_command(synthcity_root, blocker / "run")[3:], "--no-progress"], capsys)
    assert code == 2 and "not writable" in err and str(blocker) in err


def test_debug_flag_shows_the_traceback(synthcity_root: Path, tmp_path: Path) -> None:
    from camix.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["--debug", *train_command(synthcity_root, tmp_path / "run")[3:], "--set", "train.bogus=1"])
