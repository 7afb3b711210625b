"""Process-level runtime: device choice, seeding, RNG state capture, and torchrun (DDP) setup."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from camix.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """Where this process sits in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes logs and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1


def select_device(spec: str, dist_info: Dist | None = None) -> torch.device:
    """Resolve ``auto | cpu | cuda | cuda:N``; under torchrun each rank takes its local GPU."""
    local = dist_info.local_rank if dist_info is not None and dist_info.enabled else None
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={spec!r} but CUDA is not available; use train.device=cpu")
        if spec == "cuda" and local is not None:
            spec = f"cuda:{local}"
    try:
        return torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"train.device={spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None


def init_distributed(device_spec: str) -> Dist:
    """Join the torchrun process group when launched by torchrun (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_nccl = device_spec != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return info


def shutdown_distributed() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state of this process (python, numpy, torch CPU and CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def all_gather_objects(obj: Any, info: Dist) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (just ``[obj]`` without DDP)."""
    if not info.enabled:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_(tensor: torch.Tensor, info: Dist, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum`` or ``max``) across ranks; a no-op without DDP."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor
