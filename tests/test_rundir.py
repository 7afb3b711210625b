"""The run directory: one parser of metrics.jsonl, summaries a kill can leave, the lock, claiming and clean-up."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from camix.rundir import (
    LOCK,
    RunDir,
    RunDirError,
    RunLock,
    claim,
    eval_records,
    io_failure,
    read_jsonl,
    resume_command,
)


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_metrics_reader_skips_torn_garbage_and_non_objects(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    good = [{"iteration": 1, "loss/total": 2.5}, {"iteration": 2, "eval/miou19": 40.0}]
    text = "".join(json.dumps(r) + "\n" for r in good).encode() + b'[1, 2]\n\xff\xfegarbage\n{"iteration": 3, "lo'
    path.write_bytes(text)
    assert read_jsonl(path) == good
    assert read_jsonl(tmp_path / "missing.jsonl") == []
    records = [*good, {"iteration": 2, "eval/miou19": 41.0}, {"iteration": "x", "eval/miou19": 1.0}]
    assert [r["eval/miou19"] for r in eval_records(records)] == [41.0]  # the latest per iteration; bad ones dropped


@pytest.mark.parametrize(
    ("content", "finished"),
    [
        (None, False),  # killed before the summary
        (b'{"iteration": 4, "final": {"miou19": 3', False),  # torn (not written atomically by someone else)
        (b"\x00\x01garbage", False),
        (b'{"iteration": 4, "final": null}', False),  # what a resumed finished run used to write
        (b'{"iteration": 4, "final": {"miou19": "high"}}', False),
        (b"[4]", False),
        (b'{"iteration": 4, "final": {"miou19": 31.5}}', True),
    ],
)
def test_finished_only_with_a_valid_summary(tmp_path: Path, content: bytes | None, finished: bool) -> None:
    run = RunDir(tmp_path)
    if content is not None:
        run.summary_file.write_bytes(content)
    assert run.is_finished() is finished
    assert run.is_finished(iterations=4) is finished
    assert not run.is_finished(iterations=5)


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    first = RunLock(tmp_path / "run")
    first.acquire()
    holder = json.loads((tmp_path / "run" / LOCK).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(RunDirError, match=rf"in use by PID {os.getpid()} on host {socket.gethostname()}"):
        RunLock(tmp_path / "run").acquire()
    first.release()
    assert not (tmp_path / "run" / LOCK).exists()
    with RunLock(tmp_path / "run") as again:
        assert again.held


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / LOCK).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "since": "then"}))
    with caplog.at_level(logging.INFO), RunLock(tmp_path) as lock:
        assert lock.held
    assert "no longer running" in caplog.text


def test_without_flock_the_holders_pid_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid, host, taken in (
            (sleeper.pid, socket.gethostname(), False),  # alive on this host
            (dead_pid(), "another-host", False),  # cannot be checked from here
            (dead_pid(), socket.gethostname(), True),  # stale: recovered
        ):
            (tmp_path / LOCK).write_text(json.dumps({"pid": pid, "host": host}))
            lock = RunLock(tmp_path)
            if taken:
                lock.acquire()
                assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
                lock.release()
            else:
                with pytest.raises(RunDirError, match=rf"PID {pid} on host {host}"):
                    lock.acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


def make_results(folder: Path) -> None:
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.pt").write_bytes(b"weights")
    (folder / "metrics.jsonl").write_text('{"iteration": 8, "loss/total": 1.0}\n')
    (folder / "config.yaml").write_text("seed: 0\n")


def test_claim_refuses_a_run_unless_resumed_or_restarted(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    make_results(folder)
    with pytest.raises(RunDirError, match=r"already holds a run stopped at iteration 8; continue it with --resume"):
        claim(folder, "seed: 1\n", resume=None, restart=False)
    assert (folder / "config.yaml").read_text() == "seed: 0\n"  # nothing touched
    assert not (folder / LOCK).exists()  # the lock is released after a refusal

    run, lock = claim(folder, "seed: 1\n", resume="auto", restart=False)
    assert (
        folder / "checkpoints" / "last.pt"
    ).read_bytes() == b"weights" and run.config_file.read_text() == "seed: 1\n"
    lock.release()

    run, lock = claim(folder, "seed: 2\n", resume=None, restart=True)
    lock.release()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and (aside[0] / "checkpoints" / "last.pt").read_bytes() == b"weights"
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml"] and run.config_file.read_text() == "seed: 2\n"


def test_claim_refuses_a_foreign_folder_and_removes_stale_temporary_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not a camix run directory"):
        claim(tmp_path, "seed: 0\n", resume="auto", restart=True)
    folder = tmp_path / "run"
    make_results(folder)
    stale = [folder / "checkpoints" / ".last.pt.k2j3h4.tmp", folder / ".metrics.jsonl.a8b9.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    _, lock = claim(folder, "seed: 0\n", resume="auto", restart=False)
    lock.release()
    assert not any(p.exists() for p in stale) and (folder / "checkpoints" / "last.pt").exists()


def test_resume_command_names_torchrun_under_ddp() -> None:
    assert resume_command("r/config.yaml", {}) == "camix train -c r/config.yaml --resume auto"
    two = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    assert (
        resume_command("r/config.yaml", two)
        == "torchrun --nproc_per_node=2 -m camix train -c r/config.yaml --resume auto"
    )
    nodes = resume_command("r/config.yaml", {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"})
    assert nodes.startswith("torchrun --nproc_per_node=4 --nnodes=2")


def test_io_failure_names_path_reason_and_last_good_checkpoint(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    error = io_failure(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.pt")), run, {})
    assert (
        str(error) == f"{tmp_path / 'x.pt'}: No space left on device while writing the run; no checkpoint was saved yet"
    )
    make_results(tmp_path / "r")
    error = io_failure(OSError(errno.EIO, "Input/output error"), RunDir(tmp_path / "r"), {})
    assert str(error).startswith(
        f"{tmp_path / 'r'}: Input/output error while writing the run; the last good checkpoint"
    )
    assert f"is {tmp_path / 'r' / 'checkpoints' / 'last.pt'}; resume with: camix train -c" in str(error)
