"""The training run's construction as builders that return values: the networks, then the data and step context.

``Trainer`` (:mod:`camix.train`) calls them in an order that is part of the behaviour (see ``Trainer._setup``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from camix.config import Config
from camix.errors import ConfigError
from camix.methods import StepContext, build_context, method_of, uses_prior
from camix.models import build_model, load_pretrained
from camix.runtime import Dist
from camix.train_support import build_train_iterators, frozen_copy, load_or_build_prior, set_teacher_mode_


def autocast_factory(device: torch.device, amp: str) -> Any:
    """A zero-argument callable returning the autocast context for ``train.amp``."""
    if amp == "none":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype)


@dataclass
class Networks:
    """The run's networks: ``model`` and ``teacher`` hold the state (optimiser, EMA, checkpoints); ``student`` and
    ``teacher_forward`` are the callables of the forward passes (DDP-wrapped and/or compiled)."""

    model: nn.Module
    student: nn.Module
    teacher: nn.Module | None
    teacher_forward: nn.Module | None
    imagenet: nn.Module | None  # DAFormer's frozen initial network, when the FD loss is on


def build_networks(cfg: Config, device: torch.device, dist: Dist) -> Networks:
    """Student (pretrained weights loaded), EMA teacher and frozen ImageNet copy, on ``device``, wrapped for DDP.

    The global seed must be set before (the same initial weights on every rank).
    """
    model = build_model(cfg.model.name, cfg.model.num_classes, cfg.model.aspp_branches)
    if cfg.model.pretrained:
        load_pretrained(model, cfg.model.pretrained)
    # DAFormer's FD compares with the initial (ImageNet) network: a frozen copy, made before any training step
    imagenet = frozen_copy(model) if cfg.method.feature_distance.weight > 0 else None
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)  # type: ignore[call-overload]
    if imagenet is not None:
        imagenet = imagenet.to(device, memory_format=memory_format)  # type: ignore[call-overload]
    # ORDER: the teacher is copied before any SyncBatchNorm conversion, so it keeps per-rank (chunked) BatchNorm
    plain = copy.deepcopy(model) if method_of(cfg.method).teacher else None
    if dist.enabled and cfg.train.sync_bn:
        if device.type != "cuda":
            raise ConfigError("train.sync_bn=true needs CUDA devices (SyncBatchNorm has no CPU kernel)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    student: nn.Module = model
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        student = DistributedDataParallel(model, device_ids=ids)  # broadcasts rank 0's weights
    teacher = None
    if plain is not None:  # ORDER: loaded after the broadcast: one teacher on every rank
        plain.load_state_dict(model.state_dict())
        teacher = set_teacher_mode_(plain.requires_grad_(False), cfg.method.teacher_train_mode)
    teacher_forward = teacher
    if cfg.train.compile:  # compiled callables for the forward passes; the raw modules hold the state
        student = torch.compile(student)  # type: ignore[assignment]
        if teacher is not None:
            teacher_forward = torch.compile(teacher)  # type: ignore[assignment]
    return Networks(model, student, teacher, teacher_forward, imagenet)


def build_data(
    cfg: Config,
    nets: Networks,
    generator: torch.Generator,
    *,
    start_batch: int,
    run_dir: Path,
    device: torch.device,
    dist: Dist,
) -> tuple[Any, Any, StepContext]:
    """The source and target batch iterators (from batch ``start_batch``) and the step context (with the prior)."""
    source, target, target_size = build_train_iterators(
        cfg, dist, start_batch=start_batch, pin_memory=device.type == "cuda"
    )
    prior = None
    if uses_prior(cfg.method):
        assert target_size is not None
        prior = load_or_build_prior(cfg, target_size, run_dir, dist).to(device)
    context = build_context(
        cfg.method,
        student=nets.student,
        teacher=nets.teacher_forward,
        num_classes=cfg.model.num_classes,
        generator=generator,
        total_iterations=cfg.train.iterations,
        crop=cfg.data.crop,
        prior=prior,
        autocast=autocast_factory(device, cfg.train.amp),
        imagenet=nets.imagenet,
    )
    return source, target, context
