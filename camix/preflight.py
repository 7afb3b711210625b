"""Checks of a training config against what it names on disk, run before a run directory is created or written.

:func:`camix.validation.validate_config` checks values and their relations without touching the disk; this module
checks what needs the model registry, the file system or an installed package: the model name, the pretrained
weights file, the dataset folders, a given spatial prior (class count, and size when the target size is fixed),
TensorBoard, and a ``--resume`` path. Listing the datasets' files is cheap; no image is decoded here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from camix.config import Config
from camix.errors import CheckpointError
from camix.methods import method_of, uses_prior
from camix.validation import ConfigKeyError

TENSORBOARD_HINT = "pip install 'camix[tensorboard]'"


def preflight(cfg: Config) -> None:
    """Every check of this module for ``cfg`` (see the module docstring).

    Raises:
        ConfigKeyError: a value naming something that does not exist or does not fit (with its key).
        DataError: a dataset folder that is missing, empty or misnamed, or a labelled split with missing labels.
    """
    check_model(cfg)
    check_datasets(cfg)
    check_prior(cfg)
    check_tensorboard(cfg.train.tensorboard)


def check_model(cfg: Config) -> None:
    """``model.name`` is registered; ``model.pretrained`` is a file."""
    from camix.models.registry import MODELS

    if cfg.model.name not in MODELS:
        raise ConfigKeyError(
            f"config key 'model.name': {cfg.model.name!r} is not a model; choose one of {', '.join(sorted(MODELS))}",
            "model.name",
        )
    pretrained = cfg.model.pretrained
    if pretrained is not None:
        _require_file(pretrained, "model.pretrained", "a local weights file (.pth); nothing is downloaded")


def check_datasets(cfg: Config) -> None:
    """The dataset folders exist with their layout and images; the labelled splits have every label file."""
    from camix.data.datasets import find_samples, require_labels

    for key in ("source", "val", "target"):
        dataset = getattr(cfg.data, key)
        if dataset is None or (key == "target" and not method_of(cfg.method).target):
            continue
        if not dataset.root.strip():
            raise ConfigKeyError(
                f"config key 'data.{key}.root' is empty; set it to the {dataset.name} folder", f"data.{key}.root"
            )
        samples = find_samples(dataset)
        if key != "target":  # the target's labels are never read
            require_labels(samples)


def check_prior(cfg: Config) -> None:
    """A given ``data.prior`` has ``model.num_classes`` maps, at the target image size when that size is fixed."""
    from camix.data.prior import load_prior_record
    from camix.errors import DataError

    path = cfg.data.prior
    if path is None or not uses_prior(cfg.method):
        return
    _require_file(path, "data.prior", "a spatial prior from `camix data prior`")
    try:
        shape = tuple(load_prior_record(path)["prior"].shape)
    except DataError as exc:
        raise ConfigKeyError(f"config key 'data.prior': {exc}", "data.prior") from None
    if shape[0] != cfg.model.num_classes:
        raise ConfigKeyError(
            f"config key 'data.prior': {path} holds {shape[0]} class maps but model.num_classes="
            f"{cfg.model.num_classes}; rebuild it with `camix data prior`",
            "data.prior",
            "model.num_classes",
        )
    target = cfg.data.target
    if target is not None and target.size is not None and shape[1:] != (target.size[1], target.size[0]):
        raise ConfigKeyError(
            f"config key 'data.prior': {path} is {shape[2]}x{shape[1]} (WxH) but the target images are resized to "
            f"data.target.size={target.size[0]}x{target.size[1]}; rebuild it with `camix data prior --size "
            f"{target.size[0]}x{target.size[1]}`",
            "data.prior",
            "data.target.size",
        )


def check_tensorboard(enabled: bool) -> None:
    """``train.tensorboard: true`` needs the tensorboard package."""
    if enabled and importlib.util.find_spec("tensorboard") is None:
        raise ConfigKeyError(
            f"config key 'train.tensorboard': true, but the tensorboard package is not installed; {TENSORBOARD_HINT} "
            "or set train.tensorboard=false",
            "train.tensorboard",
        )


def check_resume(resume: str | None, cfg: Config) -> None:
    """``--resume`` is ``auto``, nothing, or a loadable checkpoint of ``cfg``'s network (read once here)."""
    from camix.checkpoint import check_compatible, load_checkpoint
    from camix.config_tree import to_dict

    if resume is None or resume == "auto":
        return
    path = Path(resume)
    if path.is_dir():
        raise CheckpointError(f"--resume {resume}: a folder; give a checkpoint file (e.g. {path}/last.pt) or 'auto'")
    if not path.is_file():
        raise CheckpointError(f"--resume {resume}: no such checkpoint file; give an existing .pt file or 'auto'")
    check_compatible(load_checkpoint(path), to_dict(cfg.model), path)


def _require_file(path: str, key: str, what: str) -> None:
    given = Path(path).expanduser()
    if given.is_dir():
        raise ConfigKeyError(f"config key '{key}': {path} is a folder; it must be {what}", key)
    if not given.is_file():
        raise ConfigKeyError(f"config key '{key}': {path} does not exist; it must be {what}", key)
