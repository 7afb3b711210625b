"""Every check of a training config before a run directory is created or written, each in the home of its part.

:func:`preflight` runs, in this order: the files the config names exist (weights, prior); every value's range
(:func:`camix.validation.check_ranges`) and every rule between fields of the config layer
(:func:`camix.config.check_rules`) — the two halves of :func:`camix.config.validate_config`, which ``load_config``
has run already, repeated for a config built in code; what the method needs of the config
(:func:`camix.methods.check_method_config`); a ``--resume`` checkpoint (:func:`camix.checkpoint.check_resume`);
a given spatial prior's shape (:func:`camix.data.prior.check_prior_file`); a folder dataset's class count
(:func:`camix.data.layouts.check_class_count`); the dataset folders, and the sizes of the labelled pairs
(:func:`camix.data.datasets.check_roots`); the model name (:func:`camix.models.registry.check_model_config`);
HRDA's sizes against the network (:func:`camix.models.registry.check_hrda_config`); TensorBoard
(:func:`camix.tensorboard.check_tensorboard`). Values come before the checks that read them. Listing the datasets'
files is cheap; no image is decoded here.
"""

from __future__ import annotations

from pathlib import Path

from camix.checkpoint import check_resume
from camix.config import Config, check_rules
from camix.data.datasets import check_roots
from camix.data.layouts import check_class_count
from camix.data.prior import check_prior_file
from camix.methods import check_method_config, method_of, uses_prior
from camix.models.registry import check_hrda_config, check_model_config
from camix.tensorboard import check_tensorboard
from camix.validation import ConfigKeyError, check_ranges


def preflight(cfg: Config, resume: str | None = None) -> None:
    """Every check of a training config (see the module docstring); also a ``load_config`` check.

    Args:
        cfg: the config.
        resume: ``--resume``: None, ``auto`` or a checkpoint of this config's network.

    Raises:
        ConfigKeyError: a bad value, what the method needs and the config lacks, or a value naming something that
            does not exist or does not fit (with its key).
        DataError: a dataset folder that is missing, empty or misnamed, or a labelled split with missing labels.
        CheckpointError: a ``resume`` checkpoint that is missing, unreadable or of another network.
    """
    model, data = cfg.model, cfg.data
    if model.pretrained is not None:
        _require_file(model.pretrained, "model.pretrained", "a local weights file (.pth); nothing is downloaded")
    if data.prior is not None:
        _require_file(data.prior, "data.prior", "a spatial prior from `camix data prior`")
    check_ranges(cfg, num_classes=model.num_classes)
    check_rules(cfg)
    class_names = check_class_count(data, model.num_classes)
    check_method_config(cfg, class_names)
    with_target, reads_prior = method_of(cfg.method).target, uses_prior(cfg.method)
    check_resume(resume, model)
    if data.prior is not None and reads_prior:
        check_prior_file(data.prior, model.num_classes, data.target)
    check_roots(data, with_target=with_target)
    check_model_config(model.name)
    check_hrda_config(cfg)
    check_tensorboard(cfg.train.tensorboard)


def _require_file(path: str, key: str, what: str) -> None:
    given = Path(path).expanduser()
    if given.is_dir():
        raise ConfigKeyError(f"config key '{key}': {path} is a folder; it must be {what}", key)
    if not given.is_file():
        raise ConfigKeyError(f"config key '{key}': {path} does not exist; it must be {what}", key)
