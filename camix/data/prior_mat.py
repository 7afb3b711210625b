"""Import the spatial prior the CAMix authors ship as MATLAB files (CBST's layout) into camix's prior format.

Two layouts, as the released code reads them:

* GTA5: one file with the variable ``prior_array`` of shape ``[C, H, W]`` (19 x 1024 x 2048);
* SYNTHIA: one file per class, ``probarray_cls0.mat`` ... ``probarray_cls18.mat``, each with the variable
  ``array`` of shape ``[H, W]`` (760 x 1280); the released code stacks them and upsamples the stack bilinearly
  (``align_corners=True``) to 1024 x 2048, which ``size`` reproduces.

The values are kept as shipped (the modulated pseudo-label only compares them across classes at each pixel).
Reading ``.mat`` files needs scipy (``pip install camix[scipy]``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from camix.errors import ConfigError, DataError
from camix.labels import NUM_CLASSES

PER_CLASS = re.compile(r"probarray_cls(\d+)\.mat")


def _loadmat(path: Path) -> dict[str, Any]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ConfigError("--from-mat needs scipy to read MATLAB files: pip install 'camix[scipy]'") from None
    try:
        return dict(loadmat(str(path)))
    except NotImplementedError:
        raise DataError(f"{path}: a MATLAB v7.3 (HDF5) file; save it again as v7 (save -v7) and retry") from None
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: cannot read it as a MATLAB file ({str(exc).splitlines()[0]})") from None


def _variable(path: Path, data: dict[str, Any], name: str, dims: int) -> np.ndarray:
    value = data.get(name)
    if not isinstance(value, np.ndarray) or value.ndim != dims or not np.issubdtype(value.dtype, np.number):
        found = ", ".join(k for k in data if not k.startswith("__")) or "none"
        raise DataError(f"{path}: expected a {dims}-D numeric variable '{name}' (variables found: {found})")
    if not np.isfinite(value).all():
        raise DataError(f"{path}: '{name}' holds NaN or infinite values")
    return value


def per_class_files(folder: Path, num_classes: int = NUM_CLASSES) -> list[Path]:
    """``probarray_cls0.mat`` ... ``probarray_cls{C-1}.mat`` in ``folder``; DataError naming the first missing one."""
    files = [folder / f"probarray_cls{k}.mat" for k in range(num_classes)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: per-class prior file not found ({len(missing)} of {num_classes} missing)")
    return files


def read_mat_prior(path: str | Path, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """The prior ``[C, H, W]`` (float32) in a ``prior_array`` file, or in a folder (or one file) of per-class files.

    Raises:
        DataError: missing files, wrong variables or shapes, non-finite values.
        ConfigError: scipy is not installed.
    """
    source = Path(path)
    if source.is_dir() or PER_CLASS.fullmatch(source.name):
        folder = source if source.is_dir() else source.parent
        slices = []
        for file in per_class_files(folder, num_classes):
            slices.append(_variable(file, _loadmat(file), "array", 2))
        if len({s.shape for s in slices}) != 1:
            raise DataError(f"{folder}: the per-class prior files have different sizes")
        stacked = np.stack(slices)
    elif source.is_file():
        stacked = _variable(source, _loadmat(source), "prior_array", 3)
        if stacked.shape[0] != num_classes:
            raise DataError(
                f"{source}: 'prior_array' has {stacked.shape[0]} classes, expected {num_classes} (C x H x W)"
            )
    else:
        raise DataError(f"{source}: no such file or folder (give prior_array.mat or the folder of probarray_cls*.mat)")
    return torch.from_numpy(np.ascontiguousarray(stacked, dtype=np.float32))


def resize_prior(prior: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[C, H, W]`` to ``size_hw`` with ``align_corners=True`` (the released SYNTHIA loader)."""
    if tuple(prior.shape[-2:]) == tuple(size_hw):
        return prior
    return F.interpolate(prior.unsqueeze(0), size=size_hw, mode="bilinear", align_corners=True).squeeze(0)
