"""Two-process DDP on CPU (gloo): ranks stay identical, only rank 0 writes, the loss scale matches one process."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from camix.config import Config, replace
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


@pytest.mark.parametrize("name", ["camix", "daformer_camix"])
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
