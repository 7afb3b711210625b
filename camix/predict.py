"""Using a trained model: load a checkpoint's network and evaluate it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from camix.checkpoint import check_compatible, load_checkpoint
from camix.config import Config, to_dict
from camix.data.labels import CLASS_NAMES
from camix.errors import CheckpointError
from camix.evaluate import EvalResult, evaluate
from camix.models import build_model
from camix.runtime import select_device


def load_network(cfg: Config, path: str | Path, *, teacher: bool = False) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The student (or teacher) network of a camix checkpoint, on the CPU, in eval mode."""
    state = load_checkpoint(path)
    check_compatible(state, to_dict(cfg.model), path)
    key = "teacher" if teacher else "model"
    if state.get(key) is None:
        raise CheckpointError(f"checkpoint {path} holds no {'teacher' if teacher else 'student'} weights")
    model = build_model(cfg.model.name, cfg.model.num_classes, cfg.model.aspp_branches)
    try:
        model.load_state_dict(state[key])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit model {cfg.model.name} ({str(exc).splitlines()[0]})"
        ) from None
    return model.eval(), state


def describe(path: str | Path, state: dict[str, Any], teacher: bool) -> str:
    """One line saying which checkpoint and network was evaluated."""
    kind = "best-on-val" if state.get("kind") == "best" else "last"
    return f"{path} ({kind}, iteration {state.get('iteration')}, {'teacher' if teacher else 'student'})"


def evaluate_checkpoint(
    cfg: Config, path: str | Path, *, teacher: bool = False, progress: bool = True
) -> tuple[EvalResult, str]:
    """Evaluate a checkpoint on ``cfg.data.val``; returns the result and a description of what was evaluated."""
    from camix.data.datasets import build_dataset

    model, state = load_network(cfg, path, teacher=teacher)
    device = select_device(cfg.train.device)
    dataset = build_dataset(cfg.data.val, crop=None, train=False)
    loader = DataLoader(dataset, batch_size=cfg.eval.batch_size, num_workers=cfg.data.workers)
    result = evaluate(
        model.to(device),
        loader,
        num_classes=cfg.model.num_classes,
        device=device,
        flip=cfg.eval.flip,
        progress=progress,
    )
    return result, describe(path, state, teacher)


def format_table(result: EvalResult) -> str:
    """Per-class IoU and mIoU19/16/13 as an aligned text table (percent)."""
    scores = result.as_dict()
    width = max(len(name) for name in CLASS_NAMES)
    lines = [f"{'class':<{width}}  IoU"]
    lines += [f"{name:<{width}}  {value:5.1f}" for name, value in scores["iou"].items()]
    lines += [
        f"{'mIoU19':<{width}}  {scores['miou19']:5.1f}",
        f"{'mIoU16':<{width}}  {scores['miou16']:5.1f}",
        f"{'mIoU13':<{width}}  {scores['miou13']:5.1f}",
    ]
    return "\n".join(lines)
