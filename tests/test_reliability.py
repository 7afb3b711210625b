"""Failure handling: SIGKILL/SIGTERM during training, non-finite losses, and bad input as one-line errors."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from camix import methods
from camix.checkpoint import find_resume, load_checkpoint
from camix.cli import main
from camix.errors import DataError, NonFiniteLoss
from camix.rundir import RunDir, RunLock, read_jsonl
from camix.train import Trainer
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

    record = dataclasses.replace(methods.METHODS["source_only"], step=poisoned)
    monkeypatch.setitem(methods.METHODS, "source_only", record)
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


# ----- a run directory has one owner, and no fault loses or mixes results -------------------------------------------
def cli_args(root: Path, out: Path, *sets: str) -> list[str]:
    return [*train_command(root, out, *sets)[3:], "--no-progress"]


def test_a_second_run_into_a_run_in_progress_is_refused(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    process = long_run(synthcity_root, run)
    try:
        wait_for(run / "checkpoints" / "iter_0000002.pt", process)
        for extra in ([], ["--resume", "auto"], ["--restart"]):
            code, err = run_cli([*cli_args(synthcity_root, run), *extra], capsys)
            assert code == 2 and err.count("\n") == 1, err
            assert f"{run} is in use by PID {process.pid} on host {socket.gethostname()}" in err
    finally:
        process.kill()
        process.wait()
    iterations = [r["iteration"] for r in read_jsonl(run / "metrics.jsonl") if "loss/total" in r]
    assert iterations == sorted(set(iterations))  # one writer: every iteration logged once
    with RunLock(run) as lock:  # the killed owner's lock is gone with it
        assert lock.held


def test_a_finished_run_is_never_overwritten_without_restart(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert run_cli(cli_args(synthcity_root, run), capsys)[0] == 0
    best, summary = (run / "checkpoints" / "best.pt").read_bytes(), (run / "summary.json").read_text()
    code, err = run_cli(cli_args(synthcity_root, run, "seed=1"), capsys)
    assert code == 2 and "already holds a run finished at iteration 2" in err and "--restart" in err
    assert (run / "checkpoints" / "best.pt").read_bytes() == best and (run / "summary.json").read_text() == summary
    assert run_cli([*cli_args(synthcity_root, run, "seed=1"), "--restart"], capsys)[0] == 0
    (old,) = tmp_path.glob("run.old-*")
    assert (old / "checkpoints" / "best.pt").read_bytes() == best and (old / "summary.json").read_text() == summary
    assert "seed: 1" in (run / "config.yaml").read_text() and "seed: 0" in (old / "config.yaml").read_text()
    assert RunDir(run).is_finished(2)


def test_resuming_a_finished_run_keeps_its_result(tiny_config) -> None:  # type: ignore[no-untyped-def]
    from camix.study import is_finished

    cfg = tiny_config("source_only")
    run = RunDir(Path(cfg.out_dir))
    first = Trainer(cfg, progress=False).fit()
    written = run.summary_file.read_text()
    again = Trainer(cfg, resume="auto", progress=False).fit()
    assert json.dumps(again["final"]) == json.dumps(first["final"])  # (nan IoUs of absent classes included)
    assert run.summary_file.read_text() == written and is_finished(cfg)
    # killed after the last checkpoint, before the final evaluation: resuming evaluates and finishes the run
    run.summary_file.unlink()
    kept = [r for r in run.metrics() if "eval/miou19" not in r]
    run.metrics_file.write_text("".join(json.dumps(r) + "\n" for r in kept))
    assert not is_finished(cfg)
    resumed = Trainer(cfg, resume="auto", progress=False).fit()
    assert resumed["final"]["miou19"] == first["final"]["miou19"] and is_finished(cfg)
    run.summary_file.write_text('{"iteration": 2, "final": null}')  # what a resume used to write
    assert not is_finished(cfg)


def test_a_failing_evaluation_keeps_the_saved_state_and_says_how_to_resume(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def bad_val_image(*args: object, **kwargs: object) -> None:
        raise DataError(f"{synthcity_root}/bad.png: cannot decode image")

    monkeypatch.setattr("camix.train.evaluate_distributed", bad_val_image)
    run, sets = tmp_path / "run", ("train.iterations=4", "train.eval_every=2", "train.checkpoint_every=100")
    code, err = run_cli(cli_args(synthcity_root, run, *sets), capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "the evaluation at iteration 2 failed" in err and "bad.png" in err
    assert f"camix train -c {run / 'config.yaml'} --resume auto" in err
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 2  # saved before evaluating
    monkeypatch.undo()
    assert run_cli([*cli_args(synthcity_root, run, *sets), "--resume", "auto"], capsys)[0] == 0
    assert [r["iteration"] for r in RunDir(run).evals()] == [2, 4]  # the failed evaluation is done first


def test_a_stop_signal_during_evaluation_stops_between_batches(tiny_config, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import camix.evaluate as evaluation

    cfg = tiny_config("source_only", "train.iterations=4", "train.checkpoint_every=4", "eval.batch_size=1")
    loaded: list[int] = []
    original = evaluation.build_dataset

    class Signalling(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __len__(self) -> int:
            return len(self.inner)

        def __getitem__(self, index: int) -> Any:
            loaded.append(index)
            if len(loaded) == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # e.g. a scheduler's pre-emption during the evaluation
            return self.inner[index]

    def dataset(cfg_: Any, crop: Any = None, train: bool = True) -> Any:  # the evaluation's (validation) datasets
        return Signalling(original(cfg_, crop=crop, train=train))

    monkeypatch.setattr(evaluation, "build_dataset", dataset)
    summary = Trainer(cfg, progress=False).fit()
    assert summary["interrupted"] == "SIGTERM" and summary["iteration"] == 2
    assert loaded == [0]  # of 4 validation images: the stop flag is read between batches
    run = RunDir(Path(cfg.out_dir))
    assert load_checkpoint(run.checkpoints / "last.pt")["iteration"] == 2 and not run.evals()
    monkeypatch.undo()
    Trainer(cfg, resume="auto", progress=False).fit()
    assert [r["iteration"] for r in run.evals()] == [2, 4]


def test_a_full_disk_is_one_line_naming_the_file_and_the_last_good_checkpoint(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync, saves = os.fsync, []

    def fsync(fd: int) -> None:
        if ".last.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            saves.append(fd)
            if len(saves) == 2:  # the second save of last.pt finds the disk full
                raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    run = tmp_path / "run"
    code, err = run_cli(cli_args(synthcity_root, run, "train.iterations=4", "train.eval_every=0"), capsys)
    last = run / "checkpoints" / "last.pt"
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{last}: No space left on device" in err and f"the last good checkpoint is {last}" in err
    assert f"camix train -c {run / 'config.yaml'} --resume auto" in err
    assert load_checkpoint(last)["iteration"] == 2 and not list(run.rglob("*.tmp"))


def test_stale_temporary_files_are_removed_when_a_run_starts(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("source_only")
    Trainer(cfg, progress=False).fit(until=1)
    stale = Path(cfg.out_dir) / "checkpoints" / ".last.pt.x7k2m9.tmp"  # a kill during a save leaves this
    stale.write_bytes(b"half a checkpoint")
    Trainer(cfg, resume="auto", progress=False).fit()
    assert not stale.exists()


def test_run_paths_that_are_not_utf8(tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/run\xff"))
    cfg = tiny_config("source_only", f"out_dir={folder}", "train.iterations=1", "train.eval_every=1")
    Trainer(cfg, progress=False).fit()
    assert main(["evaluate", "--ckpt", str(folder), "--no-progress"]) == 0
    assert main(["report", str(folder), "--out", str(folder / "report"), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "run\\udcff" in out and "Traceback" not in out
    assert "run\\udcff" in (folder / "eval" / "last" / "eval.md").read_text(encoding="utf-8")


def test_under_torchrun_only_rank_0_prints(
    synthcity_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")  # WORLD_SIZE stays 1: the command's printing alone is under test
    assert main(cli_args(synthcity_root, tmp_path / "r1")) == 0
    assert '"run_dir"' not in capsys.readouterr().out
    monkeypatch.setenv("RANK", "0")
    assert main(cli_args(synthcity_root, tmp_path / "r0")) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["iteration"] == 2
