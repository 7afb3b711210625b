"""The training run's construction: :func:`build_run` returns everything the loop holds, built in an order that is
part of the behaviour (resume is bit-exact because of it); :func:`build_networks` and :func:`build_data` are its
two builders (the speed benchmarks call them too)."""

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

from camix.checkpoint import Progress, resume_training
from camix.config import Config
from camix.data.loaders import train_streams
from camix.data.prior import run_prior
from camix.errors import ConfigError
from camix.evaluate import class_names
from camix.methods import build_context, method_of, uses_prior
from camix.models import base_network, build_network, frozen_copy, load_pretrained, set_teacher_mode_
from camix.optim import build_optimizer
from camix.rundir import MetricsLog, RunDir, io_errors
from camix.runtime import Dist, restore_rank_rng, seed_everything
from camix.step_context import StepContext
from camix.teacher import passes_per_forward
from camix.tensorboard import TensorBoardLog


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
    model = build_network(cfg.model)
    if cfg.model.pretrained:  # into the registered network (HRDA's attention head starts from its own init)
        load_pretrained(base_network(model), cfg.model.pretrained)
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
    progress: bool = True,
) -> tuple[Any, Any, StepContext]:
    """The source and target batch iterators (from batch ``start_batch``) and the step context (with the prior;
    ``progress``: a progress bar while the prior is computed)."""
    streams = train_streams(
        cfg.data,
        seed=cfg.seed,
        with_target=method_of(cfg.method).target,
        info=dist,
        start_batch=start_batch,
        run_dir=run_dir,
        pin_memory=device.type == "cuda",
    )
    prior = None
    if uses_prior(cfg.method):
        assert streams.target_size is not None
        size = streams.target_size
        prior = run_prior(cfg.data, size, cfg.model.num_classes, run_dir, dist, progress=progress).to(device)
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
        teacher_group=passes_per_forward(cfg.train.teacher_passes, device),
        hrda=cfg.model.hrda,
        output_stride=int(getattr(nets.model, "output_stride", 8)),
        class_names=class_names(cfg),
    )
    return streams.source, streams.target, context


@dataclass
class RunState:
    """What the training loop holds: the networks, optimiser and scaler, the step generator and context, the counters,
    the endless batch streams, and the run's logs."""

    nets: Networks
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    counters: Progress
    source: Any
    target: Any
    context: StepContext
    log: MetricsLog
    board: TensorBoardLog


def build_run(
    cfg: Config, run: RunDir, device: torch.device, dist: Dist, resume: str | None, *, progress: bool = True
) -> RunState:
    """Build (or, with ``resume``, restore) a run's state. The order is part of the behaviour:

    1. the global seed before the models (:func:`camix.runtime.start_process`): the same weights on every rank;
    2. the teacher copied before the SyncBatchNorm conversion, loaded after DDP's broadcast (:func:`build_networks`);
    3. the step generator after the models; resume before the data: the streams start at the resumed batch;
    4. the global RNGs re-seeded, then restored from the checkpoint, after the data: building the streams and the
       prior draws from them.
    """
    log = MetricsLog(run, enabled=dist.is_main)
    nets = build_networks(cfg, device, dist)
    optimizer = build_optimizer(nets.model, cfg.optim, cfg.train.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16")
    generator = torch.Generator(device=device).manual_seed(cfg.seed * 1009 + dist.rank)
    with io_errors(run):
        counters, rng_states = resume_training(  # ORDER: before build_data (the streams' start batch)
            resume,
            run,
            log,
            cfg.model,
            model=nets.model,
            teacher=nets.teacher,
            optimizer=optimizer,
            scaler=scaler,
        )
        events = run.path / "tensorboard" if cfg.train.tensorboard and dist.is_main else None
        board = TensorBoardLog(events, purge_step=counters.iteration + 1)  # events after the start: this run's
        source, target, context = build_data(
            cfg,
            nets,
            generator,
            start_batch=counters.iteration,
            run_dir=run.path,
            device=device,
            dist=dist,
            progress=progress,
        )
    # Setup (streams, prior) may draw from the global RNGs: start the loop from a known state.
    seed_everything(cfg.seed + dist.rank)
    if rng_states is not None:  # ORDER: after build_data and the re-seed
        restore_rank_rng(rng_states, generator, dist)
    return RunState(nets, optimizer, scaler, generator, counters, source, target, context, log, board)
