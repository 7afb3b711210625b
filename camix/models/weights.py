"""Load pretrained weights into a DeepLab-v2 model from the formats the community passes around.

Accepted files (all local, never downloaded):

- ``deeplab``: a flat state dict with the model's own names, e.g. the MS-COCO init
  ``resnet101COCO-41f33a49.pth``. A classifier whose shape differs (another class count) is skipped.
- ``deeplab-imagenet``: the ImageNet init ``DeepLab_resnet_pretrained_init-f81d91e8.pth``, whose keys
  carry a leading ``Scale.`` component (stripped); its ``layer5`` is never used.
- ``torchvision``: a torchvision-style ResNet ImageNet state dict (same names for ``conv1``, ``bn1``,
  ``layer1``-``layer4``); ``fc`` is skipped. torchvision puts the stride of a bottleneck on the 3x3
  conv, DeepLab on the first 1x1: shapes agree, so it loads, but the features differ a little.
- ``mit-imagenet``: SegFormer's ImageNet MiT encoders ``mit_b0.pth`` ... ``mit_b5.pth`` (flat, or inside
  ``state_dict``), for the ``daformer_*`` networks: their names are the encoder's, loaded under the model's
  ``backbone.`` prefix; the ImageNet classifier ``head.*`` is skipped. Every encoder tensor must match in name
  and shape, and none may be left over: anything else is a ``CheckpointError`` (another MiT size, usually).
- ``camix``: a training checkpoint, i.e. a dict whose ``model`` (or ``state_dict``) entry is the state
  dict (other entries such as ``teacher``, ``optimizer`` or ``config`` are ignored).

Wrapper prefixes (``module.`` from DataParallel/DDP, ``_orig_mod.`` from ``torch.compile``) are stripped.
A tensor whose shape differs from the model's is skipped in every format, never fatal: an init's
classifier with another class count is routine (logged at info level); a camix checkpoint whose
classifier does not fit, or any backbone tensor skipped or missing, is logged as a warning.
``strict=True`` turns any skipped or missing tensor into an error (use it to evaluate a checkpoint that
must match exactly). Nothing is copied unless at least one conv kernel matches in name and shape.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from camix.errors import CheckpointError
from camix.models.deeplabv2 import CLASSIFIER_PREFIX

logger = logging.getLogger("camix.models")

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
IMAGENET_INIT_PREFIX = "Scale."
NESTED_KEYS = ("model", "state_dict")
MIT_FORMAT = "mit-imagenet"
MIT_MARKER = "patch_embed1.proj.weight"
MIT_HEAD = "head."  # the ImageNet classifier of the MiT checkpoints  # the first tensor of every MiT encoder checkpoint
NOT_COUNTED = "num_batches_tracked"  # BatchNorm counters: absent from the 2017 files, never reported missing
MAX_EXAMPLES = 3

REASON_UNUSED_CLASSIFIER = "classifier of an ImageNet checkpoint (not used for segmentation)"
REASON_SHAPE = "shape differs from the model"
REASON_UNKNOWN = "no such tensor in the model"
REASON_NOT_TENSOR = "not a tensor"


@dataclass
class LoadReport:
    """What ``load_pretrained`` did.

    Attributes:
        path: The file read.
        format: ``deeplab``, ``deeplab-imagenet``, ``torchvision`` or ``camix``.
        loaded: Model keys that received a checkpoint tensor.
        skipped: Checkpoint keys not used, grouped by reason.
        missing: Model keys (BatchNorm counters aside) that kept their initial values.
        mismatched: For keys skipped for their shape: (checkpoint shape, model shape).
        notes: Remarks about the format, e.g. the torchvision stride convention.
    """

    path: str
    format: str
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def num_loaded(self) -> int:
        """Number of tensors copied into the model."""
        return len(self.loaded)

    @property
    def num_skipped(self) -> int:
        """Number of checkpoint tensors not used."""
        return sum(len(keys) for keys in self.skipped.values())


def load_pretrained(model: nn.Module, path: str | Path, *, strict: bool = False, trusted: bool = False) -> LoadReport:
    """Copy the matching tensors of a weights file into ``model`` and report what happened.

    Args:
        model: The network (a ``DeepLabV2``), modified in place.
        path: A local ``.pth`` file in one of the formats of the module docstring.
        strict: Raise instead of warning when a checkpoint tensor is skipped or a model tensor is missing.
        trusted: If the file holds Python objects besides tensors (which ``weights_only`` loading refuses),
            unpickle it fully. Only for files whose origin you trust: unpickling can run code.

    Returns:
        A ``LoadReport``; the same counts are logged on the ``camix.models`` logger.

    Raises:
        CheckpointError: The file is missing or not a PyTorch checkpoint, no weight tensor (conv kernel)
            matches the model in name and shape, or ``strict`` is set and the match is incomplete.
    """
    path = Path(path)
    state, fmt = _state_dict_of(_read(path, trusted), path)
    if fmt == MIT_FORMAT:
        state = _under_backbone(model, state, path)
    report = _match(model, state, fmt, path)
    if not any(state[key].dim() >= 2 for key in report.loaded):  # biases and BN vectors alone are coincidences
        raise CheckpointError(_nothing_matched(model, report, path))
    if fmt == MIT_FORMAT:
        _require_whole_encoder(model, report, path)
    if strict and (report.skipped or report.missing):
        raise CheckpointError(f"{path}: {_summary(report)}; strict loading needs an exact match")
    model.load_state_dict({key: state[key] for key in report.loaded}, strict=False)
    _log(report)
    return report


def _read(path: Path, trusted: bool) -> Any:
    """``torch.load`` on CPU, weights only unless ``trusted``; every failure becomes a ``CheckpointError``."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        raise CheckpointError(f"{path}: {what}; model.pretrained must name a local .pth file (camix never downloads)")
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if trusted:
            return _read_untrusted(path)
        if "Weights only" in str(exc) and zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path}: holds Python objects besides tensors, which safe loading refuses; re-save it as a "
                "plain state dict, or load it with trusted=True if you trust its origin"
            ) from exc
        raise CheckpointError(_unreadable(path, exc)) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, ... on non-checkpoints
        raise CheckpointError(_unreadable(path, exc)) from exc


def numpy_safe_globals() -> list[Any]:
    """Numpy array and dtype constructors, allowed in safe loading: camix checkpoints hold numpy RNG states."""
    reconstruct = np.zeros(1).__reduce__()[0]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    dtype_classes = [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")] if dtypes else []
    return [reconstruct, np.ndarray, np.dtype, *dtype_classes]


def _read_untrusted(path: Path) -> Any:
    """Full unpickling, for files the user vouched for."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(_unreadable(path, exc)) from exc


def _unreadable(path: Path, exc: BaseException) -> str:
    """One-line message for a file that torch cannot read."""
    return (
        f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}); the file may be truncated or of "
        "another type: point model.pretrained to a .pth state dict"
    )


def _state_dict_of(raw: Any, path: Path) -> tuple[dict[str, Any], str]:
    """The flat state dict inside a loaded object, with prefixes stripped, and the format it came in."""
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path}: holds a {type(raw).__name__}, not a state dict; save model.state_dict()")
    fmt = "deeplab"
    for key in NESTED_KEYS:
        if isinstance(raw.get(key), Mapping):
            raw, fmt = raw[key], "camix"
            break
    state = {str(key): value for key, value in raw.items()}
    for prefix in WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key.removeprefix(prefix): value for key, value in state.items()}
    if any(key.startswith(IMAGENET_INIT_PREFIX) for key in state):
        return {key.removeprefix(IMAGENET_INIT_PREFIX): value for key, value in state.items()}, "deeplab-imagenet"
    if "fc.weight" in state and not any(key.startswith("layer5.") for key in state):
        return state, "torchvision"
    if MIT_MARKER in state:
        return state, MIT_FORMAT
    return state, fmt


def _under_backbone(model: nn.Module, state: dict[str, Any], path: Path) -> dict[str, Any]:
    """A MiT encoder checkpoint's names moved under the model's ``backbone_prefix`` (``head.*`` kept as is)."""
    prefix = getattr(model, "backbone_prefix", None)
    if prefix is None:
        variant = getattr(model, "variant", type(model).__name__)
        raise CheckpointError(
            f"{path}: a MiT encoder checkpoint, but model {variant} has no MiT encoder; "
            "use a daformer_* model (model.name)"
        )
    return {key if key.startswith(MIT_HEAD) else prefix + key: value for key, value in state.items()}


def _require_whole_encoder(model: nn.Module, report: LoadReport, path: Path) -> None:
    """Every encoder tensor loaded and nothing left over (the ImageNet classifier aside), else one-line error."""
    prefix = getattr(model, "backbone_prefix", "")
    unexpected = [key for reason, keys in report.skipped.items() if reason != REASON_UNUSED_CLASSIFIER for key in keys]
    missing = [key for key in report.missing if key.startswith(prefix)]
    if unexpected or missing:
        variant = getattr(model, "variant", type(model).__name__)
        parts = [f"{len(unexpected)} unexpected ({_examples(unexpected, report)})"] if unexpected else []
        parts += [f"{len(missing)} missing ({_examples(missing)})"] if missing else []
        raise CheckpointError(
            f"{path}: this MiT checkpoint does not fit the encoder of {variant}: {'; '.join(parts)}; "
            "use the mit_bN.pth that matches model.name (daformer_mitbN)"
        )


def _skip_reason(key: str, value: Any, target: dict[str, Tensor], fmt: str) -> str | None:
    """Why checkpoint tensor ``key`` is not loaded, or None when it is."""
    if (fmt == "deeplab-imagenet" and key.startswith("layer5.")) or (fmt == "torchvision" and key.startswith("fc.")):
        return REASON_UNUSED_CLASSIFIER
    if fmt == MIT_FORMAT and key.startswith(MIT_HEAD):
        return REASON_UNUSED_CLASSIFIER
    if not isinstance(value, Tensor):
        return REASON_NOT_TENSOR
    if key not in target:
        return REASON_UNKNOWN
    if value.shape != target[key].shape:
        return REASON_SHAPE
    return None


def _match(model: nn.Module, state: dict[str, Any], fmt: str, path: Path) -> LoadReport:
    """Sort every checkpoint key into loaded or skipped-with-reason, and list what the model misses."""
    target = model.state_dict()
    report = LoadReport(path=str(path), format=fmt)
    for key, value in state.items():
        reason = _skip_reason(key, value, target, fmt)
        if reason is None:
            report.loaded.append(key)
        else:
            report.skipped.setdefault(reason, []).append(key)
        if reason == REASON_SHAPE:
            report.mismatched[key] = (list(value.shape), list(target[key].shape))
    done = set(report.loaded)
    report.missing = [key for key in target if key not in done and not key.endswith(NOT_COUNTED)]
    if fmt == "torchvision" and getattr(model, "block_type", "") == "Bottleneck":
        report.notes.append(
            "torchvision ResNets stride the 3x3 conv of a bottleneck, DeepLab the first 1x1: the weights load "
            "but were trained with the other convention"
        )
    return report


def _examples(keys: list[str], report: LoadReport | None = None) -> str:
    """The first few keys (with both shapes when they clash), then how many more."""
    mismatched = report.mismatched if report is not None else {}
    described = [f"{k} {mismatched[k][0]} vs model {mismatched[k][1]}" if k in mismatched else k for k in keys]
    shown = ", ".join(described[:MAX_EXAMPLES])
    return shown + (f", +{len(keys) - MAX_EXAMPLES} more" if len(keys) > MAX_EXAMPLES else "")


def _summary(report: LoadReport) -> str:
    """One line: loaded, skipped by reason, missing."""
    parts = [f"loaded {report.num_loaded} tensors ({report.format} format)"]
    parts += [f"skipped {len(keys)}: {reason} ({_examples(keys, report)})" for reason, keys in report.skipped.items()]
    if report.missing:
        parts.append(f"{len(report.missing)} model tensors keep their initial values ({_examples(report.missing)})")
    return "; ".join(parts)


def _expected(keys: list[str], report: LoadReport) -> bool:
    """Whether leaving ``keys`` out is routine: only the classifier, from an init file (not a camix checkpoint).

    A MiT encoder file never holds DAFormer's decoder, so its ``decode_head.*`` is routinely missing.
    """
    heads = ("decode_head.",) if report.format == MIT_FORMAT else (CLASSIFIER_PREFIX,)
    return report.format != "camix" and all(key.startswith(heads) for key in keys)


def _log(report: LoadReport) -> None:
    """Counts at info level; a warning for skipped or missing tensors unless only an init's classifier is concerned.

    A new classifier is routine when fine-tuning an MS-COCO/ImageNet init; a camix checkpoint whose classifier
    does not fit, or any backbone tensor that is skipped or missing, deserves a warning.
    """
    logger.info("%s: loaded %d tensors (%s format)", report.path, report.num_loaded, report.format)
    for reason, keys in report.skipped.items():
        routine = reason != REASON_SHAPE or _expected(keys, report)
        level = logging.INFO if routine else logging.WARNING
        logger.log(level, "%s: skipped %d tensors: %s (%s)", report.path, len(keys), reason, _examples(keys, report))
    if report.missing:
        level = logging.INFO if _expected(report.missing, report) else logging.WARNING
        logger.log(
            level,
            "%s: %d model tensors not in the file keep their initial values (%s)",
            report.path,
            len(report.missing),
            _examples(report.missing),
        )
    for note in report.notes:
        logger.info("%s: note: %s", report.path, note)


def _nothing_matched(model: nn.Module, report: LoadReport, path: Path) -> str:
    """One-line message for a file none of whose tensors fits the model."""
    variant = getattr(model, "variant", type(model).__name__)
    clashes = report.skipped.get(REASON_SHAPE, [])
    if clashes:
        detail = f"{len(clashes)} names match but not their shapes, e.g. {_examples(clashes[:1], report)}"
        advice = "weights of another variant or width? build the model they were trained with"
    else:
        detail = f"its {report.num_skipped} keys look like {_examples(next(iter(report.skipped.values()), []))}"
        advice = "use a DeepLab-v2, torchvision ResNet or camix checkpoint"
    return f"{path}: no tensor matches model {variant} ({detail}); {advice}"
