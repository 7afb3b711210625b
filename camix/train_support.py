"""The pieces the training loop plugs together: claiming the run directory, stop signals, data, eval, prior,
panels, and the extra networks (DAFormer's frozen ImageNet copy, the teacher's mode)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from camix.config import Config, DatasetConfig, dump_config
from camix.config_tree import to_dict
from camix.data.batch import Batch
from camix.errors import CamixError, ConfigError, DataError, RunInUse
from camix.methods import MixedBatch, method_of
from camix.models.mit import DropPath
from camix.rundir import RunDir, RunDirError, RunLock, claim
from camix.runtime import Dist, all_gather_objects

LOG = logging.getLogger("camix.train")


def barrier(info: Dist) -> None:
    """Wait for every rank (no-op without DDP)."""
    if info.enabled:
        dist.barrier()


def prepare_run_dir(
    cfg: Config, info: Dist, *, resume: str | None = None, restart: bool = False
) -> tuple[RunDir, RunLock | None]:
    """Lock the run directory and save the resolved config (rank 0); every rank raises the same one-line error.

    See :func:`camix.rundir.claim` for what is refused; the lock is held until :meth:`RunLock.release`.
    """
    lock, error = None, None
    if info.is_main:
        try:
            _, lock = claim(cfg.out_dir, dump_config(cfg), resume=resume, restart=restart)
        except CamixError as exc:
            error = (isinstance(exc, RunInUse), str(exc))
    error = all_gather_objects(error, info)[0]
    if error is not None:
        in_use, message = error
        raise (RunInUse if in_use else RunDirError)(message)
    return RunDir(Path(cfg.out_dir)), lock


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


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with no trainable parameter (DAFormer's ImageNet model for the FD loss)."""
    return copy.deepcopy(model).requires_grad_(False).eval()


def set_teacher_mode_(teacher: nn.Module, train_mode: bool) -> nn.Module:
    """The teacher's mode; in train mode (batch statistics) its dropout and stochastic depth stay off, as DAFormer's."""
    teacher.train(train_mode)
    for module in teacher.modules():
        if isinstance(module, (nn.modules.dropout._DropoutNd, DropPath)):
            module.eval()
    return teacher


def _dataset(cfg: DatasetConfig, crop: tuple[int, int] | None, train: bool) -> Any:
    from camix.data.datasets import build_dataset

    return build_dataset(cfg, crop=crop, train=train)


def image_size(dataset: Any) -> tuple[int, int]:
    """(width, height) of a dataset's resized images, read from its first item without touching the RNG."""
    with torch.random.fork_rng(devices=[]):
        size = dataset[0]["size"]
    return int(size[0]), int(size[1])


def build_train_iterators(cfg: Config, info: Dist, *, start_batch: int, pin_memory: bool) -> tuple[Any, Any, Any]:
    """Endless source and target batch iterators starting at batch ``start_batch``, and the target image size."""
    from camix.data.sampling import infinite_loader

    common: dict[str, Any] = {
        "batch_size": cfg.data.batch_size,
        "workers": cfg.data.workers,
        "rank": info.rank,
        "world_size": info.world_size,
        "start_batch": start_batch,
        "pin_memory": pin_memory,
    }
    source_ds = _dataset(cfg.data.source, cfg.data.crop, True)
    if cfg.data.rcs is not None:  # DAFormer's Rare Class Sampling of the source images
        from camix.data.rcs import class_pixels_cache, load_or_count_class_pixels, rare_class_loader

        cache = class_pixels_cache(cfg.data.source, Path(cfg.out_dir))
        pixels = load_or_count_class_pixels(cfg.data.source, cache, progress=info.is_main)
        rcs_args = {k: v for k, v in common.items() if k != "world_size"}
        source = rare_class_loader(source_ds, pixels, cfg.data.rcs, seed=cfg.seed, **rcs_args)
    else:
        source = infinite_loader(source_ds, seed=cfg.seed, **common)
    if not method_of(cfg.method).target:
        return source, None, None
    if cfg.data.target is None:
        raise ConfigError(f"method.name={cfg.method.name} needs an unlabelled target dataset: set data.target")
    target_ds = _dataset(cfg.data.target, cfg.data.crop, True)
    target = infinite_loader(target_ds, seed=cfg.seed + 7_654_321, **common)
    return source, target, image_size(target_ds)


def prior_cache_path(cfg: Config, size: tuple[int, int], run_dir: Path, fingerprint: str | None = None) -> Path:
    """Where the spatial prior of ``data.source`` at ``size`` is cached: in the source root, else the run dir.

    The name holds a hash of the source config, the size, the class count, ``data.prior_smoothing`` and
    :func:`camix.data.prior.label_fingerprint` (every label file's name, size and modification time; pass
    ``fingerprint`` when already computed), so a regenerated or edited dataset gets a new prior.
    """
    from camix.data.prior import label_fingerprint

    data = label_fingerprint(cfg.data.source) if fingerprint is None else fingerprint
    key = json.dumps(
        [to_dict(cfg.data.source), list(size), cfg.model.num_classes, cfg.data.prior_smoothing, data], sort_keys=True
    )
    name = f"prior_{cfg.data.source.name}_{size[0]}x{size[1]}_{hashlib.sha1(key.encode()).hexdigest()[:8]}.pt"
    folder = Path(cfg.data.source.root) / ".camix_cache"
    try:
        folder.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):  # a probe of its own: other processes may probe too
            pass
        return folder / name
    except OSError:
        return run_dir / name


def load_or_build_prior(cfg: Config, size: tuple[int, int], run_dir: Path, info: Dist) -> torch.Tensor:
    """The spatial prior Q [C,H,W] at the target image size: ``data.prior`` if given, else built and cached.

    The cache is :func:`camix.data.prior.cached_prior` at :func:`prior_cache_path`: rank 0 decides the path and
    builds (or verifies) the file, every other rank waits and reads it.
    """
    from camix.data.prior import cached_prior, label_fingerprint, load_prior

    if cfg.data.prior:
        prior = load_prior(cfg.data.prior)
    else:
        fingerprint = label_fingerprint(cfg.data.source) if info.is_main else None
        # rank 0 decides where the cache is, so that every rank reads the file it writes
        path = all_gather_objects(prior_cache_path(cfg, size, run_dir, fingerprint) if info.is_main else None, info)[0]
        if info.is_main:
            if not path.is_file():
                LOG.info("computing the spatial prior of %s at %dx%d -> %s", cfg.data.source.root, *size, path)
            smoothing = cfg.data.prior_smoothing
            prior = cached_prior(cfg.data.source, size, path, smoothing=smoothing, fingerprint=fingerprint)
        barrier(info)
        if not info.is_main:
            prior = load_prior(path)
    expected = (cfg.model.num_classes, size[1], size[0])
    if tuple(prior.shape) != expected:
        raise DataError(
            f"spatial prior {cfg.data.prior} has shape {tuple(prior.shape)}, expected {expected} "
            f"(classes, target height, target width); rebuild it with camix data prior"
        )
    return prior.float()


def save_debug_panel(path: Path, source: Batch, target: Batch | None, mixed: MixedBatch | None) -> None:
    """The picture of the paper's Figure 2 for the first image of the batch."""
    from camix.visualize import debug_panel

    tiles = {"source": source["image"][0], "source label": source["label"][0]}
    if target is not None:
        tiles["target"] = target["image"][0]
    if mixed is not None:
        tiles.update(
            {"mixed image": mixed.image[0], "contextual mask M": mixed.mask[0], "mixed label Y_M": mixed.label[0]}
        )
        tiles.update({"significance U_M": mixed.significance[0], "teacher pseudo-label": mixed.pseudo_label[0]})
    debug_panel(path, tiles)
