"""Process-level runtime: device choice, seeding, RNG state capture, torchrun (DDP) setup, and stop signals."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import logging
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from camix.errors import CamixError, ConfigError

LOG = logging.getLogger("camix.runtime")


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


_STORE: list[Any] = []  # the rendezvous store of the process group (to ask which rank stopped answering)


def init_distributed(device_spec: str, timeout: float = 300.0) -> Dist:
    """Join the torchrun process group when launched by torchrun (NCCL on GPUs, gloo on CPU).

    Args:
        device_spec: ``train.device``.
        timeout: seconds a collective waits for the other ranks before it fails (``train.dist_timeout``).
    """
    if not timeout > 0:
        raise ConfigError(f"train.dist_timeout={timeout}: give the seconds a collective may wait, e.g. 300")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_nccl = device_spec != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(info.local_rank)
        store, rank, size = next(dist.rendezvous("env://"))
        dist.init_process_group(
            backend="nccl" if use_nccl else "gloo",
            store=store,
            rank=rank,
            world_size=size,
            timeout=dt.timedelta(seconds=timeout),
        )
        _STORE[:] = [store]
    return info


_FAILURE = re.compile(r"timed out|timeout|connection (closed|reset)|broken pipe|peer|gloo|nccl", re.IGNORECASE)


def is_collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a collective operation that another rank never joined (or left)."""
    return isinstance(exc, getattr(dist, "DistError", ())) or bool(_FAILURE.search(str(exc)))


class CollectiveTimeout(CamixError):
    """A rank stopped answering in a distributed run (exit code 1)."""

    exit_code = 1


def silent_ranks(info: Dist, grace: float) -> list[int] | None:
    """After a failed collective: the ranks that did not report a failure of their own within ``grace`` seconds.

    Every rank whose collective fails writes a key into the rendezvous store; a rank that hangs (or died)
    never does. None when the store cannot be asked (e.g. it lived in the rank that hangs).
    """
    if not _STORE:
        return None
    store, prefix = _STORE[0], f"camix/failed/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
    try:
        store.set_timeout(dt.timedelta(seconds=max(1.0, grace)))
        store.set(f"{prefix}{info.rank}", "1")
        deadline = time.monotonic() + grace
        while True:
            missing = [r for r in range(info.world_size) if not store.check([f"{prefix}{r}"])]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)
    except Exception:  # the store is gone or frozen: say that we cannot tell
        return None


def collective_failure_message(exc: BaseException, info: Dist, timeout: float, hint: str) -> str:
    """One line: which rank stopped answering, how long this one waited, the cause, and ``hint``."""
    silent = silent_ranks(info, grace=min(5.0, max(1.0, timeout / 4)))
    if silent:
        who = f"rank {', '.join(map(str, silent))} stopped answering (hung or exited)"
    elif silent == []:
        who = "every rank saw the collective fail (a lost connection, or ranks running different operations)"
    else:
        who = "another rank stopped answering (which one is unknown: the rendezvous store did not answer)"
    reason = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return f"rank {info.rank}: {who}; collectives wait at most train.dist_timeout={timeout:g} s ({reason}); {hint}"


@contextlib.contextmanager
def guard_collectives(info: Dist, timeout: float, hint: str | Callable[[], str] = "") -> Iterator[None]:
    """Under DDP, turn a failed collective raised inside into :class:`CollectiveTimeout` naming the silent rank."""
    try:
        yield
    except RuntimeError as exc:
        if not info.enabled or not is_collective_failure(exc):
            raise
        text = hint() if callable(hint) else hint
        raise CollectiveTimeout(collective_failure_message(exc, info, timeout, text)) from None


def shutdown_distributed() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_MALLOC_TRIM_THRESHOLD, _MALLOC_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory() -> bool:
    """Let the C allocator keep freed blocks for reuse instead of handing them back to the kernel (Linux, glibc).

    On the CPU every forward and backward allocates activations of several MB and frees them; glibc's defaults
    return such blocks to the kernel (mmap/trim), and the next iteration pays a page fault for every page it
    touches again: about 28,000 faults and 12 % of a ResNet-101 forward at 2x256x256 (benchmarks/RESULTS.md).
    Raising the mmap and trim thresholds keeps those blocks in the heap; the peak resident memory does not grow
    (the same blocks are reused). Returns whether the setting took effect (False off glibc: nothing changes).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_MALLOC_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_MALLOC_TRIM_THRESHOLD, 2**31 - 1))


def start_process(
    device: str, *, timeout: float, threads: int | None, cudnn_benchmark: bool, seed: int
) -> tuple[Dist, torch.device]:
    """Set up this process for a run: join torchrun's group (when launched by it), pick this rank's device (on the
    CPU, :func:`keep_freed_memory`), set torch's CPU threads and cuDNN's autotuning, and seed every RNG (the same
    initial weights on every rank).

    Args:
        device: ``train.device``; timeout: ``train.dist_timeout``; threads: ``train.threads`` (None: torch's
            default); cudnn_benchmark: ``train.cudnn_benchmark``; seed: the run's seed.
    """
    info = init_distributed(device, timeout)
    chosen = select_device(device, info)
    if chosen.type == "cpu":
        keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    seed_everything(seed)
    return info, chosen


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


def restore_rank_rng(states: list[dict[str, Any]], generator: torch.Generator, info: Dist) -> bool:
    """Restore this rank's global RNGs and step generator from a checkpoint's per-rank ``states``.

    Returns False (with a warning, nothing restored) when the checkpoint was written by another number of
    processes: the run continues, but its data order and masks differ from an uninterrupted run.
    """
    if len(states) != info.world_size:
        LOG.warning(
            "checkpoint has RNG states for %d processes, this run has %d: the data order and "
            "masks will differ from an uninterrupted run",
            len(states),
            info.world_size,
        )
        return False
    mine = states[info.rank]
    set_rng_state(mine["global"])
    generator.set_state(mine["generator"])
    return True


def barrier(info: Dist) -> None:
    """Wait for every rank (no-op without DDP)."""
    if info.enabled:
        dist.barrier()


class StopSignal:
    """Turns SIGINT/SIGTERM into a request to stop after the current iteration; a second SIGINT aborts.

    With ``parent`` (the launcher's PID under torchrun), :meth:`poll` also turns the launcher's exit into a
    request: workers orphaned by a killed ``torchrun`` save and stop instead of writing on.
    """

    def __init__(self, parent: int | None = None) -> None:
        self.requested = False
        self.signal_name = ""
        self.parent = parent
        self._previous: dict[int, Any] = {}

    def poll(self) -> bool:
        """Whether a stop was requested (checking the launcher first)."""
        if self.parent is not None and not self.requested and os.getppid() != self.parent:
            self.requested, self.signal_name = True, "the exit of the torchrun launcher"
            LOG.warning("the launcher (PID %d) exited: saving a checkpoint and stopping", self.parent)
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.signal_name = True, signal.Signals(signum).name
        LOG.warning("%s received: finishing this iteration, then saving a checkpoint", self.signal_name)

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
