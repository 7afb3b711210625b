"""Using a trained model: load a checkpoint's network and config, evaluate it, segment image files.

* checkpoints: :func:`load_for_inference` (config + network + :class:`CheckpointInfo` from one read);
* evaluation on ``data.val``: :func:`evaluate_model`, :func:`save_evaluation` (``camix evaluate``);
* image files: :func:`find_inputs`, :func:`segment_image`, :func:`predict_files` (``camix predict``).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from camix.checkpoint import check_compatible, load_checkpoint
from camix.config import Config, config_from_tree, load_config, replace, to_dict
from camix.data.labels import TRAIN_ID_TO_LABEL_ID_LUT
from camix.errors import CamixError, CheckpointError
from camix.evaluate import EvalResult, TableLayout, csv_lines, csv_text, evaluate, iou_table, json_safe, predict_logits
from camix.io import atomic_write_bytes, atomic_write_text
from camix.models import build_model
from camix.runtime import select_device

SizeWH = tuple[int, int]


class PredictError(CamixError):
    """Unusable inputs or outputs of ``camix predict``."""


def parse_size(text: str) -> SizeWH:
    """``"1024x512"`` -> (1024, 512).

    Raises:
        ValueError: not two positive integers joined by ``x``.
    """
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"expected WIDTHxHEIGHT like 1024x512, got {text!r}")
    return int(parts[0]), int(parts[1])


# ----- checkpoints --------------------------------------------------------------------------------------------
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


def describe(path: str | Path, state: dict[str, Any], teacher: bool) -> str:
    """One line saying which checkpoint and network was evaluated."""
    return str(checkpoint_info(path, state, teacher))


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
    check_compatible(state, to_dict(cfg.model), path)
    key = "teacher" if teacher else "model"
    if state.get(key) is None:
        raise CheckpointError(
            f"checkpoint {path} holds no {'teacher' if teacher else 'student'} weights"
            + (" (best.pt keeps the student only; use last.pt)" if teacher else "")
        )
    model = build_model(cfg.model.name, cfg.model.num_classes, cfg.model.aspp_branches)
    try:
        model.load_state_dict(state[key])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit model {cfg.model.name} ({str(exc).splitlines()[0]})"
        ) from None
    return model.eval()


def load_network(cfg: Config, path: str | Path, *, teacher: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The student (or teacher) network of a camix checkpoint, on the CPU, in eval mode, and the raw state."""
    state = load_checkpoint(path)
    return network_from_state(cfg, state, path, teacher=teacher), state


# ----- evaluation ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """An evaluated checkpoint: the confusion matrix, what was evaluated and how."""

    result: EvalResult
    checkpoint: CheckpointInfo
    protocol: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Everything, JSON-friendly (scores in percent, nan as null)."""
        return json_safe(
            {
                "checkpoint": self.checkpoint.as_dict(),
                "protocol": self.protocol,
                **self.result.as_dict(),
                "confusion": self.result.confusion.cpu().tolist(),
            }
        )


def evaluation_protocol(cfg: Config, overlap: float, images: int) -> dict[str, Any]:
    """The settings that decide the numbers: dataset, sizes, flip, sliding window."""
    val = cfg.data.val
    return {
        "dataset": val.name,
        "root": val.root,
        "split": val.split,
        "images": images,
        "size": list(val.size) if val.size else None,
        "scale": val.scale,
        "label_size": val.label_size,
        "flip": cfg.eval.flip,
        "sliding_window": list(cfg.eval.sliding_window) if cfg.eval.sliding_window else None,
        "overlap": overlap if cfg.eval.sliding_window else None,
    }


def evaluate_model(
    cfg: Config, model: torch.nn.Module, info: CheckpointInfo, *, overlap: float = 1 / 3, progress: bool = True
) -> Evaluation:
    """Evaluate ``model`` on ``cfg.data.val`` with ``cfg.eval``'s protocol (batch size 1 for native-size labels)."""
    from camix.data.datasets import build_dataset

    device = select_device(cfg.train.device)
    dataset = build_dataset(cfg.data.val, crop=None, train=False)
    batch_size = 1 if cfg.data.val.label_size == "native" else cfg.eval.batch_size
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=cfg.data.workers)
    result = evaluate(
        model.to(device),
        loader,
        num_classes=cfg.model.num_classes,
        device=device,
        flip=cfg.eval.flip,
        window=cfg.eval.sliding_window,
        overlap=overlap,
        progress=progress,
    )
    return Evaluation(result, info, evaluation_protocol(cfg, overlap, len(dataset)))  # type: ignore[arg-type]


def evaluate_checkpoint(
    cfg: Config, path: str | Path, *, teacher: bool = False, progress: bool = True
) -> tuple[EvalResult, str]:
    """Evaluate a checkpoint on ``cfg.data.val``; returns the result and a description of what was evaluated."""
    model, state = load_network(cfg, path, teacher=teacher)
    evaluation = evaluate_model(cfg, model, checkpoint_info(path, state, teacher), progress=progress)
    return evaluation.result, str(evaluation.checkpoint)


def default_eval_dir(info: CheckpointInfo, cfg: Config) -> Path:
    """``<run_dir>/eval/<ckpt stem>[_teacher][_flip][_slidingWxH][_native]``."""
    name = info.path.stem + ("_teacher" if info.network == "teacher" else "")
    if cfg.eval.flip:
        name += "_flip"
    if cfg.eval.sliding_window:
        name += f"_sliding{cfg.eval.sliding_window[0]}x{cfg.eval.sliding_window[1]}"
    if cfg.data.val.label_size == "native":
        name += "_native"
    return run_dir_of(info.path) / "eval" / name


def with_protocol(cfg: Config, *, teacher: bool, flip: bool, window: SizeWH | None, native_labels: bool) -> Config:
    """``cfg`` with the evaluation switches of the command line applied (flags only ever turn things on)."""
    changes: dict[str, Any] = {"eval.model": "teacher" if teacher else cfg.eval.model}
    if flip:
        changes["eval.flip"] = True
    if window is not None:
        changes["eval.sliding_window"] = window
    if native_labels:
        changes["data.val.label_size"] = "native"
    return replace(cfg, **changes)


def save_evaluation(evaluation: Evaluation, out_dir: str | Path, layout: TableLayout) -> list[Path]:
    """Write ``eval.md``, ``eval.csv`` and ``eval.json`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    scores = evaluation.result.as_dict()
    name = evaluation.checkpoint.short
    text = f"# Evaluation\n\nCheckpoint: `{evaluation.checkpoint}`\n\nProtocol: `{json.dumps(evaluation.protocol)}`\n\n"
    atomic_write_text(out / "eval.md", text + iou_table([(name, scores)], layout, first="checkpoint") + "\n")
    atomic_write_text(out / "eval.csv", csv_text(csv_lines([(name, scores)], first="checkpoint")))
    atomic_write_text(out / "eval.json", json.dumps(evaluation.as_dict(), indent=2) + "\n")
    return [out / "eval.md", out / "eval.csv", out / "eval.json"]


# ----- image files --------------------------------------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class InputImage:
    """An image to segment and where its outputs go (``stem`` is relative to the output folder)."""

    path: Path
    stem: Path


def find_inputs(paths: Sequence[str | Path]) -> list[InputImage]:
    """Files as given; folders searched recursively for png/jpg, their sub-folders mirrored in the outputs.

    Raises:
        PredictError: a missing path or a dangling symbolic link (given or inside a folder), a folder without
            images, or two inputs that would write the same outputs.
    """
    found: list[InputImage] = []
    for given in map(Path, paths):
        if given.is_file():
            found.append(InputImage(given, Path(given.stem)))
        elif given.is_dir():
            candidates = sorted(p for p in given.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            dangling = [p for p in candidates if p.is_symlink() and not p.exists()]
            if dangling:
                more = f" (and {len(dangling) - 1} more)" if len(dangling) > 1 else ""
                raise PredictError(
                    f"{dangling[0]}: symbolic link to a missing file ({os.readlink(dangling[0])}){more}; "
                    "fix or remove the links"
                )
            images = [p for p in candidates if p.is_file()]
            if not images:
                raise PredictError(f"{given}: no {'/'.join(IMAGE_SUFFIXES)} images in this folder")
            found += [InputImage(p, p.relative_to(given).with_suffix("")) for p in images]
        elif given.is_symlink():
            raise PredictError(f"{given}: symbolic link to a missing file ({os.readlink(given)})")
        else:
            raise PredictError(f"{given}: no such file or folder")
    seen: dict[Path, Path] = {}
    for item in found:
        if item.stem in seen:
            raise PredictError(
                f"{seen[item.stem]} and {item.path} would both write {item.stem}_*.png; predict them apart"
            )
        seen[item.stem] = item.path
    return found


def output_paths(out_dir: str | Path, item: InputImage) -> dict[str, Path]:
    """``<stem>_labelIds.png`` (Cityscapes test server), ``<stem>_color.png`` and ``<stem>_overlay.png``."""
    base = Path(out_dir) / item.stem
    return {kind: base.parent / f"{base.name}_{kind}.png" for kind in ("labelIds", "color", "overlay")}


@torch.no_grad()
def segment_image(
    model: torch.nn.Module, rgb: np.ndarray, cfg: Config, size: SizeWH | None, device: torch.device
) -> np.ndarray:
    """TrainIds [H,W] uint8 of an RGB uint8 image [H,W,3], predicted at ``size`` (or the val size) and upsampled back.

    The network sees the image resized like ``cfg.data.val`` (``size`` wins); ``cfg.eval`` sets flip and window.
    """
    from camix.data.transforms import resize_image, target_size, to_caffe_tensor

    height, width = rgb.shape[:2]
    net_size = size or target_size((width, height), cfg.data.val.size, cfg.data.val.scale)
    resized = np.asarray(resize_image(Image.fromarray(rgb), net_size))
    image = to_caffe_tensor(resized)[None].to(device)
    logits = predict_logits(model, image, (height, width), cfg.eval.flip, cfg.eval.sliding_window)
    return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()


def png_bytes(array: np.ndarray) -> bytes:
    """An 8-bit grey [H,W] or RGB [H,W,3] array encoded as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_prediction(paths: dict[str, Path], rgb: np.ndarray, train_ids: np.ndarray) -> None:
    """Encode the three outputs in memory, then write each atomically (never a half-written file)."""
    from camix.visualize import label_to_rgb, overlay

    colour = label_to_rgb(train_ids)
    encoded = {
        "labelIds": png_bytes(TRAIN_ID_TO_LABEL_ID_LUT[train_ids]),
        "color": png_bytes(colour),
        "overlay": png_bytes(overlay(rgb, colour)),
    }
    for kind, data in encoded.items():
        atomic_write_bytes(paths[kind], data)


def check_readable(inputs: Sequence[InputImage]) -> None:
    """Read every image header before anything is written (a broken file is a one-line DataError)."""
    from camix.data.transforms import image_size

    for item in inputs:
        image_size(item.path)


def predict_files(
    model: torch.nn.Module,
    cfg: Config,
    inputs: Sequence[InputImage],
    out_dir: str | Path,
    *,
    size: SizeWH | None = None,
    progress: bool = True,
) -> int:
    """Segment every input and write its three PNGs under ``out_dir``; returns the number of images done."""
    from camix.data.transforms import open_image

    check_readable(inputs)
    device = select_device(cfg.train.device)
    model = model.to(device).eval()
    for item in tqdm(inputs, desc="predict", unit="img", disable=not progress, dynamic_ncols=True):
        rgb = np.asarray(open_image(item.path))
        write_prediction(output_paths(out_dir, item), rgb, segment_image(model, rgb, cfg, size, device))
    return len(inputs)
