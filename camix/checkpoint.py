"""Checkpoints: everything needed to continue a run exactly, written atomically, with rotation; and loading one
for inference (:func:`load_for_inference`: config + network + :class:`CheckpointInfo` from one read).

Layout inside a run directory::

    checkpoints/last.pt            the latest state (always loadable: written by atomic rename)
    checkpoints/iter_0005000.pt    numbered snapshots (separate copies of last.pt), the newest K kept
    checkpoints/best.pt            the best-on-val model by mIoU19 (labelled as such in reports)
    checkpoints/best_miou16.pt     the best by another metric, one per ``train.best_metrics`` entry
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from camix.config import Config, ModelConfig, config_from_tree, load_config
from camix.config_tree import to_dict
from camix.errors import CheckpointError
from camix.io import atomic_torch_save, atomic_write_bytes
from camix.models import build_network
from camix.models.weights import numpy_safe_globals
from camix.rundir import MetricsLog, RunDir

FORMAT = "camix-checkpoint/1"
LOG = logging.getLogger("camix.checkpoint")


def checkpoint_dir(run_dir: str | Path) -> Path:
    """The folder holding a run's checkpoints."""
    return Path(run_dir) / "checkpoints"


def save_checkpoint(state: dict[str, Any], run_dir: str | Path, *, keep: int, snapshot: bool = True) -> Path:
    """Write ``last.pt`` atomically, a numbered snapshot as a separate copy, and keep the newest ``keep`` snapshots.

    The snapshot is a file of its own (not a hard link), so damage to one file never reaches the other.
    """
    folder = checkpoint_dir(run_dir)
    last = folder / "last.pt"
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(last, data)
    if snapshot and keep > 0:
        atomic_write_bytes(folder / f"iter_{state['iteration']:07d}.pt", data)
        for old in sorted(folder.glob("iter_*.pt"))[:-keep]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    return last


def save_best(state: dict[str, Any], run_dir: str | Path, name: str = "best.pt") -> Path:
    """Write ``best.pt`` or ``name`` (model weights, config and the metric that made it best)."""
    path = checkpoint_dir(run_dir) / name
    atomic_torch_save({"format": FORMAT, **state}, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a camix checkpoint, with one-line errors for missing, corrupt and foreign files."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint {file} does not exist")
    try:  # safe loading: tensors, plain containers and numpy arrays only (no code runs from the file)
        with torch.serialization.safe_globals(numpy_safe_globals()):
            state = torch.load(file, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0].split(". ")[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"checkpoint {file} is corrupt or not a torch file ({reason}); use another one") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{file} is not a camix training checkpoint (for pretrained weights use model.pretrained)"
        )
    return state


def find_resume(run_dir: str | Path) -> Path | None:
    """The checkpoint ``--resume auto`` continues from: ``last.pt``, else the newest loadable snapshot."""
    folder = checkpoint_dir(run_dir)
    candidates = [folder / "last.pt", *sorted(folder.glob("iter_*.pt"), reverse=True)]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            load_checkpoint(candidate)
        except CheckpointError as exc:
            LOG.warning("skipping %s: %s", candidate, exc)
            continue
        return candidate
    return None


def check_compatible(state: dict[str, Any], model_cfg: ModelConfig, path: str | Path) -> None:
    """Refuse a checkpoint made for another network or class count."""
    saved = state.get("config", {}).get("model", {})
    for key in ("name", "num_classes", "aspp_branches"):
        if key in saved and saved[key] != getattr(model_cfg, key):
            raise CheckpointError(
                f"checkpoint {path} was trained with model.{key}={saved[key]!r}, but the config says "
                f"{getattr(model_cfg, key)!r}; use the matching config or --set model.{key}={saved[key]}"
            )
    if "name" in saved and (saved.get("hrda") is None) != (model_cfg.hrda is None):
        trained = "with" if saved.get("hrda") is not None else "without"
        raise CheckpointError(
            f"checkpoint {path} was trained {trained} HRDA (model.hrda), but the config says model.hrda="
            f"{'null' if model_cfg.hrda is None else 'on'}; use the checkpoint's config (omit -c) or set model.hrda"
        )


def check_resume(resume: str | None, model_cfg: ModelConfig) -> None:
    """``--resume`` is ``auto``, nothing, or a loadable checkpoint of the network ``model_cfg`` (read once here)."""
    if resume is None or resume == "auto":
        return
    path = Path(resume)
    if path.is_dir():
        raise CheckpointError(f"--resume {resume}: a folder; give a checkpoint file (e.g. {path}/last.pt) or 'auto'")
    if not path.is_file():
        raise CheckpointError(f"--resume {resume}: no such checkpoint file; give an existing .pt file or 'auto'")
    check_compatible(load_checkpoint(path), model_cfg, path)


# ----- loading for inference ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointInfo:
    """Which weights were used: the file, last / best-on-val / snapshot, the iteration, student or teacher."""

    path: Path
    kind: str
    iteration: int | None
    network: str

    def __str__(self) -> str:
        return f"{self.path} ({self.kind}, iteration {self.iteration}, {self.network})"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly fields."""
        return {"path": str(self.path), "kind": self.kind, "iteration": self.iteration, "network": self.network}

    @property
    def short(self) -> str:
        """``best-on-val @ 5000 (student)``; snapshots by file name."""
        kind = self.path.stem if self.kind == "snapshot" else self.kind
        return f"{kind} @ {self.iteration} ({self.network})"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given; a run directory (or its ``checkpoints/``) means its ``last.pt``."""
    given = Path(path)
    if given.is_dir():
        folder = given if given.name == "checkpoints" else given / "checkpoints"
        if not (folder / "last.pt").is_file():
            raise CheckpointError(f"{given} is a folder without {folder.name}/last.pt; give a checkpoint file or a run")
        return folder / "last.pt"
    return given


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory holding ``checkpoint`` (``<run>/checkpoints/x.pt`` -> ``<run>``)."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def checkpoint_info(path: str | Path, state: dict[str, Any], teacher: bool) -> CheckpointInfo:
    """Describe a loaded checkpoint: ``best-on-val`` for ``best.pt``, ``last`` for ``last.pt``, else ``snapshot``."""
    file = Path(path)
    kind = "best-on-val" if state.get("kind") == "best" else "last" if file.name == "last.pt" else "snapshot"
    return CheckpointInfo(file, kind, state.get("iteration"), "teacher" if teacher else "student")


def checkpoint_config(path: str | Path, state: dict[str, Any], overrides: Sequence[str] = ()) -> Config:
    """The resolved config saved in a checkpoint, with ``--set`` overrides applied (and validated)."""
    saved = dict(state.get("config") or {})
    return config_from_tree(saved, overrides, [(f"saved in checkpoint {path}; pass -c CONFIG to use another", saved)])


def load_for_inference(
    checkpoint: str | Path,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    teacher: bool | None = None,
) -> tuple[Config, torch.nn.Module, CheckpointInfo]:
    """Read a checkpoint once: its config (or ``config`` when given), its network in eval mode, and its description.

    Args:
        checkpoint: a checkpoint file, or a run directory (its ``checkpoints/last.pt``).
        config: a YAML config to use instead of the one saved in the checkpoint.
        overrides: ``--set`` overrides applied to the config.
        teacher: the EMA teacher instead of the student; None follows the config's ``eval.model``.
    """
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path)
    cfg = load_config(config, overrides) if config is not None else checkpoint_config(path, state, overrides)
    teacher = cfg.eval.model == "teacher" if teacher is None else teacher
    model = network_from_state(cfg, state, path, teacher=teacher)
    return cfg, model, checkpoint_info(path, state, teacher)


def network_from_state(cfg: Config, state: dict[str, Any], path: str | Path, *, teacher: bool) -> torch.nn.Module:
    """The student (or teacher) network of a loaded checkpoint, on the CPU, in eval mode."""
    check_compatible(state, cfg.model, path)
    key = "teacher" if teacher else "model"
    if state.get(key) is None:
        raise CheckpointError(
            f"checkpoint {path} holds no {'teacher' if teacher else 'student'} weights"
            + (" (best.pt keeps the student only; use last.pt)" if teacher else "")
        )
    model = build_network(cfg.model)
    try:
        model.load_state_dict(state[key])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit model {cfg.model.name} ({str(exc).splitlines()[0]})"
        ) from None
    return model.eval()


# ----- the training state a checkpoint carries ---------------------------------------------------------------
@dataclass
class Progress:
    """The loop's counters, saved in every checkpoint: the iteration, the best scores and the run's clock."""

    iteration: int = 0
    best: dict[str, float] = field(default_factory=lambda: {"miou19": -1.0, "iteration": -1})
    best_by: dict[str, dict[str, float]] = field(default_factory=dict)  # train.best_metrics other than mIoU19
    started: float = field(default_factory=time.time)  # epoch seconds of the run's first start
    seconds_before: float = 0.0  # wall seconds of the earlier legs of a resumed run

    def as_dict(self, seconds: float) -> dict[str, Any]:
        """The checkpoint's entries for these counters; ``seconds``: the run's wall seconds so far."""
        clock = {"started": self.started, "seconds": seconds}
        return {"iteration": self.iteration, "best": self.best, "clock": clock, "best_by": self.best_by}

    def improved(self, scores: dict[str, float], metrics: Sequence[str]) -> list[str]:
        """Record ``scores`` of an evaluation at this iteration; returns the best-model files they improve, in
        order: ``best.pt`` (mIoU19), then ``best_<metric>.pt`` for each other metric of ``metrics``."""
        files = []
        for metric in dict.fromkeys(("miou19", *metrics)):
            main = metric == "miou19"
            best = self.best if main else self.best_by.get(metric, {metric: -1.0, "iteration": -1})
            if scores[metric] <= best[metric]:
                continue
            best = {metric: scores[metric], "iteration": self.iteration}
            if main:
                self.best = best
            else:
                self.best_by[metric] = best
            files.append("best.pt" if main else f"best_{metric}.pt")
        return files

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Progress:
        """The counters of a loaded checkpoint (older checkpoints may lack the clock and the other metrics)."""
        progress = cls(iteration=state["iteration"], best_by=state.get("best_by", {}))
        progress.best = state.get("best", progress.best)
        clock = state.get("clock") or {}
        progress.started = clock.get("started", progress.started)
        progress.seconds_before = float(clock.get("seconds", 0.0))
        return progress


def training_state(
    cfg: Config,
    progress: Progress,
    *,
    model: torch.nn.Module,
    teacher: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    rng: list[dict[str, Any]],
    world_size: int,
    seconds: float,
) -> dict[str, Any]:
    """Everything ``last.pt`` holds to continue a run exactly: weights, optimiser, scaler, every rank's RNG states
    (``rng``), the counters and the data position (the data order is a function of (seed, rank, position), see
    :mod:`camix.data.sampling`)."""
    samples = progress.iteration * cfg.data.batch_size
    return {
        "data": {"seed": cfg.seed, "world_size": world_size, "samples_per_rank": samples},
        "iteration": progress.iteration,
        "config": to_dict(cfg),
        "model": model.state_dict(),
        "teacher": teacher.state_dict() if teacher is not None else None,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "rng": rng,
        **progress.as_dict(seconds),
    }


def resume_training(
    resume: str | None,
    run: RunDir,
    log: MetricsLog,
    model_cfg: ModelConfig,
    *,
    model: torch.nn.Module,
    teacher: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> tuple[Progress, list[dict[str, Any]] | None]:
    """Continue a run: load ``resume``'s (``auto``: the newest good checkpoint in ``run``) weights, optimiser and
    counters in place, cut the metrics log back to its iteration, and take the best score from the evaluations
    logged at it. Returns the counters and the checkpoint's per-rank RNG states (restored once the data is built);
    fresh counters and None for a new run, or when ``auto`` finds no checkpoint."""
    if resume is None:
        return Progress(), None
    path = find_resume(run.path) if resume == "auto" else Path(resume)
    if path is None:
        LOG.info("--resume auto: no checkpoint in %s, starting from scratch", run.path)
        return Progress(), None
    state = load_checkpoint(path)
    check_compatible(state, model_cfg, path)
    load_training_state(state, path, model=model, teacher=teacher, optimizer=optimizer, scaler=scaler)
    counters = Progress.from_state(state)
    log.truncate_after(counters.iteration)
    for record in run.evals():  # an evaluation at the checkpoint's iteration ran after it was saved
        if record["eval/miou19"] > counters.best["miou19"]:
            counters.best = {"miou19": record["eval/miou19"], "iteration": record["iteration"]}
    LOG.info("resumed from %s at iteration %d", path, counters.iteration)
    return counters, list(state.get("rng", []))


def load_training_state(
    state: dict[str, Any],
    path: Path,
    *,
    model: torch.nn.Module,
    teacher: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> None:
    """Load a checkpoint's student, teacher, optimiser and gradient scaler in place (resume).

    Raises:
        CheckpointError: the checkpoint's tensors do not fit these modules.
    """
    try:
        model.load_state_dict(state["model"])
        if teacher is not None and state.get("teacher") is not None:
            teacher.load_state_dict(state["teacher"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit this model ({str(exc).splitlines()[0]})") from None
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
