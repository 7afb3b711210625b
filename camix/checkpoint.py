"""Checkpoints: everything needed to continue a run exactly, written atomically, with rotation.

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
import zipfile
from pathlib import Path
from typing import Any

import torch

from camix.errors import CheckpointError
from camix.io import atomic_torch_save, atomic_write_bytes
from camix.models.weights import numpy_safe_globals

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


def check_compatible(state: dict[str, Any], model_cfg: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint made for another network or class count."""
    saved = state.get("config", {}).get("model", {})
    for key in ("name", "num_classes", "aspp_branches"):
        if key in saved and saved[key] != model_cfg.get(key):
            raise CheckpointError(
                f"checkpoint {path} was trained with model.{key}={saved[key]!r}, but the config says "
                f"{model_cfg.get(key)!r}; use the matching config or --set model.{key}={saved[key]}"
            )
