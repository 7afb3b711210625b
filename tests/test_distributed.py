"""Two-process DDP on CPU (gloo): ranks stay identical, only rank 0 writes, the loss scale matches one process."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from camix.config import Config
from camix.config_tree import replace
from camix.train import Trainer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker(rank: int, cfg: Config, port: int, dump: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    state = {"model": trainer.model.state_dict(), "teacher": trainer.teacher.state_dict() if trainer.teacher else None}
    torch.save(state, Path(dump) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def first_losses(run_dir: Path) -> dict[str, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(r for r in records if "loss/total" in r)


@pytest.mark.parametrize("name", ["camix", "daformer_camix", "camix_mic"])
def test_two_process_gloo_training(tiny_config, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(name, "train.iterations=3", "train.eval_every=3", "train.checkpoint_every=3")
    ddp_cfg = replace(cfg, out_dir=str(tmp_path / "ddp"))
    mp.spawn(worker, args=(ddp_cfg, free_port(), str(tmp_path)), nprocs=2, join=True)

    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for part in ("model", "teacher"):
        for key, value in rank0[part].items():
            if "running" in key or "num_batches" in key:
                continue  # BatchNorm statistics are per rank (batch statistics; SyncBN is optional)
            assert torch.equal(value, rank1[part][key]), f"{part}.{key} differs between ranks"

    files = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert files == ["checkpoints", "config.yaml", "metrics.jsonl", "summary.json"]
    records = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len([r for r in records if "loss/total" in r]) == 3  # one line per log step: rank 0 alone writes

    Trainer(cfg, progress=False).fit()  # the same config in one process
    single, ddp = first_losses(Path(cfg.out_dir)), first_losses(tmp_path / "ddp")
    assert ddp["loss/seg"] == pytest.approx(single["loss/seg"], rel=0.25)  # same initial weights, other images


def frozen_rank_worker(rank: int, cfg: Config, port: int, dump: str) -> None:
    """Stop early (as a signal would), resume, then rank 1 freezes in its step until rank 0 has given up."""
    from camix import methods
    from camix.errors import CamixError

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    out = Path(dump)
    stopped = Trainer(cfg, progress=False).fit(until=1)
    (out / f"stopped{rank}.txt").write_text(stopped["resume"])
    record = methods.METHODS[cfg.method.name]
    original = record.step

    def freezing(ctx, source, target=None):  # type: ignore[no-untyped-def]
        if rank == 1 and ctx.iteration == 1:
            deadline = time.monotonic() + 30
            while not (out / "rank0.txt").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return original(ctx, source, target)

    methods.METHODS[cfg.method.name] = dataclasses.replace(record, step=freezing)
    trainer = Trainer(cfg, resume="auto", progress=False)
    started = time.monotonic()
    try:
        trainer.fit()
        message = "finished"
    except CamixError as exc:
        message = f"{time.monotonic() - started:.1f}\n{exc}"
    (out / f"rank{rank}.txt").write_text(message)


def test_a_frozen_rank_is_named_after_the_collective_timeout(tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sets = ("train.iterations=3", "train.eval_every=0", "train.checkpoint_every=100", "train.dist_timeout=6")
    cfg = tiny_config("source_only", *sets)  # 6 s: enough for a slow rank on a loaded machine, not for a frozen one
    mp.spawn(frozen_rank_worker, args=(cfg, free_port(), str(tmp_path)), nprocs=2, join=True)
    hint = f"torchrun --nproc_per_node=2 -m camix train -c {cfg.out_dir}/config.yaml --resume auto"
    assert (tmp_path / "stopped0.txt").read_text() == hint  # the resume hint after a DDP stop names torchrun
    seconds, message = (tmp_path / "rank0.txt").read_text().split("\n", 1)
    assert "\n" not in message and message.startswith("rank 0: rank 1 stopped answering (hung or exited)")
    assert "train.dist_timeout=6 s" in message and hint in message
    assert 6 <= float(seconds) < 20  # the timeout plus at most 1.5 s waiting for the other ranks to report


def orphan_worker(rank: int, cfg: Config, port: int, dump: str) -> None:
    """A worker like torchrun's: no signal when its parent dies (mp.spawn's children get SIGINT; switched off)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, 0)  # PR_SET_PDEATHSIG = 0
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    summary = Trainer(cfg, progress=False).fit()
    (Path(dump) / f"stopped{rank}.txt").write_text(summary.get("interrupted", "finished"))


LAUNCHER = """
import sys, torch.multiprocessing as mp
from camix.config import load_config
from tests.test_distributed import orphan_worker
cfg = load_config(sys.argv[1], sys.argv[4:])
mp.spawn(orphan_worker, args=(cfg, int(sys.argv[2]), sys.argv[3]), nprocs=2, join=True)
"""


@pytest.mark.slow
def test_workers_of_a_killed_launcher_save_and_stop(synthcity_root: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from camix.rundir import RunLock, read_jsonl
    from tests.conftest import tiny_overrides

    run = tmp_path / "run"
    sets = [*tiny_overrides(synthcity_root, run), "train.iterations=100000", "train.checkpoint_every=1"]
    command = [sys.executable, "-c", LAUNCHER, "configs/synthcity/source_only.yaml", str(free_port()), str(tmp_path)]
    launcher = subprocess.Popen([*command, *sets, "train.eval_every=0"])
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "last.pt").exists():
        assert launcher.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    launcher.send_signal(signal.SIGKILL)  # torchrun killed: its workers are orphans
    launcher.wait()
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"stopped{r}.txt").exists() for r in (0, 1)):
        assert time.monotonic() < deadline, "the orphaned workers kept training"
        time.sleep(0.1)
    assert {(tmp_path / f"stopped{r}.txt").read_text() for r in (0, 1)} == {"the exit of the torchrun launcher"}
    written = len(read_jsonl(run / "metrics.jsonl"))
    time.sleep(1)
    assert len(read_jsonl(run / "metrics.jsonl")) == written  # nobody writes into the run any more
    with RunLock(run) as lock:
        assert lock.held
