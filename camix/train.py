"""The one explicit training loop (docs/architecture.md: a batch through a training step).

Each iteration: poly learning rate -> one batch per domain -> the method's step returns named losses ->
sum, backpropagate, optimiser step -> EMA teacher update. Every ``log_every`` iterations the losses are
brought to the host once, checked for finiteness and logged; checkpoints are written only after such a
check, so the newest checkpoint on disk is always a good one.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from camix import functional as Fn
from camix.checkpoint import check_compatible, find_resume, load_checkpoint, save_best, save_checkpoint
from camix.config import Config, to_dict
from camix.errors import CamixError, CheckpointError, DataError
from camix.evaluate import EvalResult, evaluate_distributed, evaluation_failure
from camix.methods import StepContext, StepFn, StepOutput, method_of
from camix.optim import build_optimizer
from camix.preflight import check_resume, preflight
from camix.rundir import MetricsLog, resume_command, resume_hint, scores_of
from camix.rundir import io_errors as io_errors_of
from camix.runtime import (
    Dist,
    all_gather_objects,
    all_reduce_,
    guard_collectives,
    init_distributed,
    is_collective_failure,
    rng_state,
    seed_everything,
    select_device,
    set_rng_state,
)
from camix.tensorboard import TensorBoardLog
from camix.train_setup import build_data, build_networks
from camix.train_support import (
    StopSignal,
    prepare_run_dir,
    save_debug_panel,
)
from camix.validation import validate_config

LOG = logging.getLogger("camix.train")


class NonFiniteLoss(CamixError):
    """A loss became NaN or infinite; the run stops and keeps its last good checkpoint (exit code 1)."""

    exit_code = 1


def poly_lr_(
    optimizer: torch.optim.Optimizer,
    base_lr: float,
    power: float,
    iteration: int,
    total: int,
    warmup: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """Poly decay after an optional linear warm-up (:func:`camix.functional.warmup_poly_lr`) for each group, times
    its ``lr_mult``; returns the base lr."""
    lr = Fn.warmup_poly_lr(iteration, total, base_lr, power, warmup, warmup_ratio)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    return lr


def optimisation_step(
    ctx: StepContext,
    step: StepFn,
    source: dict[str, Any],
    target: dict[str, Any] | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    teacher: nn.Module | None = None,
    model: nn.Module | None = None,
    ema_alpha_max: float = 0.99,
) -> tuple[StepOutput, torch.Tensor]:
    """One iteration on a batch already on the device: step -> summed loss -> backward -> SGD step -> EMA (Eq. 3).

    No host synchronisation (with bf16 or no autocast; fp16's GradScaler checks for infs on the host).

    Args:
        ctx: the step's context, ``ctx.iteration`` set (it picks the EMA decay).
        step: a method's step function (``camix.methods.METHODS``).
        source: the source batch; ``target``: the target batch or None.
        optimizer: steps the student; ``scaler``: the (possibly disabled) gradient scaler.
        teacher: the raw EMA teacher module, updated in place from ``model`` (the raw student), when given.
        ema_alpha_max: the EMA decay's ceiling.

    Returns:
        The step's output and the summed loss (not detached).
    """
    out = step(ctx, source, target)
    total = torch.stack(list(out.losses.values())).sum()
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.step(optimizer)
    scaler.update()
    if teacher is not None and model is not None:
        Fn.ema_update_(teacher, model, Fn.ema_alpha(ctx.iteration, ema_alpha_max))
    return out, total


class Trainer:
    """Holds the state of one run; :meth:`fit` is the loop.

    The run directory is locked from construction until :meth:`fit` returns (or :meth:`close`).
    """

    def __init__(self, cfg: Config, *, resume: str | None = None, restart: bool = False, progress: bool = True) -> None:
        self.cfg, self.progress = cfg, progress
        self.dist: Dist = init_distributed(cfg.train.device, cfg.train.dist_timeout)
        self.device = select_device(cfg.train.device, self.dist)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
        seed_everything(cfg.seed)  # the same initial weights on every rank
        validate_config(cfg)  # bad values and missing files are refused before the run directory is touched
        preflight(cfg)
        check_resume(resume, cfg)
        self.board = TensorBoardLog(None)  # replaced once the run directory and the start iteration are known
        self.run, self.lock = prepare_run_dir(cfg, self.dist, resume=resume, restart=restart)
        try:
            self._setup(resume)
        except BaseException:
            self.close()
            raise

    def _setup(self, resume: str | None) -> None:
        """Build the run's state. The order is part of the behaviour (resume is bit-exact because of it):

        1. the global seed before the models (``__init__``): the same initial weights on every rank;
        2. the teacher copied before the SyncBatchNorm conversion, loaded after DDP's broadcast (``build_networks``);
        3. the step generator after the models; resume before the data: the loaders start at the resumed batch;
        4. the global RNGs re-seeded, then restored from the checkpoint, after the data: building loaders and the
           prior draws from them.
        """
        cfg = self.cfg
        self.run_dir = self.run.path
        self.log = MetricsLog(self.run, enabled=self.dist.is_main)
        self.started, self.seconds_before, self.leg_start = time.time(), 0.0, time.perf_counter()
        self.last_scores: dict[str, Any] | None = None
        self._lr = cfg.optim.lr
        nets = build_networks(cfg, self.device, self.dist)
        self.model, self.student, self.teacher = nets.model, nets.student, nets.teacher
        self.optimizer = build_optimizer(self.model, cfg.optim, cfg.train.amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.amp == "fp16")
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed * 1009 + self.dist.rank)
        self.iteration, self.best = 0, {"miou19": -1.0, "iteration": -1}
        self.best_by: dict[str, dict[str, float]] = {}  # train.best_metrics other than mIoU19
        with self._io_errors():
            rng_states = self._resume(resume)  # ORDER: before build_data (the loaders' start batch)
            board = self.run_dir / "tensorboard" if cfg.train.tensorboard and self.dist.is_main else None
            self.board = TensorBoardLog(board, purge_step=self.iteration + 1)  # events after the start: this run's
            self.source_iter, self.target_iter, self.context = build_data(
                cfg,
                nets,
                self.generator,
                start_batch=self.iteration,
                run_dir=self.run_dir,
                device=self.device,
                dist=self.dist,
            )
        # Setup (loaders, prior) may draw from the global RNGs: start the loop from a known state.
        seed_everything(cfg.seed + self.dist.rank)
        if rng_states is not None:  # ORDER: after build_data and the re-seed
            self._restore_rng(rng_states)

    def close(self) -> None:
        """Close the TensorBoard log and release the run directory's lock (idempotent)."""
        self.board.close()
        if self.lock is not None:
            self.lock.release()

    # ----- construction -------------------------------------------------------------------------------
    # ----- checkpoints --------------------------------------------------------------------------------
    def _resume(self, resume: str | None) -> list[dict[str, Any]] | None:
        """Load a checkpoint's weights, optimiser and counters; returns its RNG states (restored later)."""
        if resume is None:
            return None
        path = find_resume(self.run_dir) if resume == "auto" else Path(resume)
        if path is None:
            LOG.info("--resume auto: no checkpoint in %s, starting from scratch", self.run_dir)
            return None
        state = load_checkpoint(path)
        check_compatible(state, to_dict(self.cfg.model), path)
        try:
            self.model.load_state_dict(state["model"])
            if self.teacher is not None and state.get("teacher") is not None:
                self.teacher.load_state_dict(state["teacher"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this model ({str(exc).splitlines()[0]})") from None
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.iteration, self.best = state["iteration"], state.get("best", self.best)
        clock = state.get("clock") or {}
        self.started, self.seconds_before = clock.get("started", self.started), float(clock.get("seconds", 0.0))
        self.best_by = state.get("best_by", {})
        self.log.truncate_after(self.iteration)
        for record in self.run.evals():  # an evaluation at the checkpoint's iteration ran after it was saved
            if record["eval/miou19"] > self.best["miou19"]:
                self.best = {"miou19": record["eval/miou19"], "iteration": record["iteration"]}
        LOG.info("resumed from %s at iteration %d", path, self.iteration)
        return list(state.get("rng", []))

    def _restore_rng(self, states: list[dict[str, Any]]) -> None:
        if len(states) != self.dist.world_size:
            LOG.warning(
                "checkpoint has RNG states for %d processes, this run has %d: the data order and "
                "masks will differ from an uninterrupted run",
                len(states),
                self.dist.world_size,
            )
            return
        mine = states[self.dist.rank]
        set_rng_state(mine["global"])
        self.generator.set_state(mine["generator"])

    def _state(self) -> dict[str, Any]:
        rng = all_gather_objects({"global": rng_state(), "generator": self.generator.get_state()}, self.dist)
        if self.dist.enabled and self.teacher is not None:  # BN statistics of rank 0 for every rank's teacher
            for buffer in self.teacher.buffers():
                torch.distributed.broadcast(buffer, src=0)
        data = {
            "seed": self.cfg.seed,
            "world_size": self.dist.world_size,
            "samples_per_rank": self.iteration * self.cfg.data.batch_size,
        }
        return {
            "data": data,  # the data order is a function of (seed, rank, position): see camix.data.sampling
            "iteration": self.iteration,
            "config": to_dict(self.cfg),
            "model": self.model.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rng,
            "best": self.best,
            "clock": {"started": self.started, "seconds": self._seconds()},
            "best_by": self.best_by,
        }

    def _seconds(self) -> float:
        """Wall seconds of this run so far, over every resumed leg (up to each leg's last checkpoint)."""
        return self.seconds_before + time.perf_counter() - self.leg_start

    def save(self, snapshot: bool = True) -> None:
        """Write ``last.pt`` (and a numbered snapshot); collective under DDP, rank 0 writes."""
        state = self._state()
        if self.dist.is_main:
            save_checkpoint(state, self.run_dir, keep=self.cfg.train.keep_checkpoints, snapshot=snapshot)

    # ----- the loop -----------------------------------------------------------------------------------
    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train until ``train.iterations`` (or stop early at ``until``, saving a checkpoint, as a signal would).

        Returns the final summary (scores in percent), or ``{"interrupted": ...}`` when stopped early. The
        run directory's lock is released on return. I/O errors become one line naming the file and the last
        good checkpoint (exit code 2); a rank that stops answering under DDP is named (exit code 1).
        """
        try:
            timeout = self.cfg.train.dist_timeout
            with self._io_errors(), guard_collectives(self.dist, timeout, lambda: self._resume_hint):
                return self._fit(until)
        finally:
            self.close()

    def _fit(self, until: int | None) -> dict[str, Any]:
        cfg, total = self.cfg, self.cfg.train.iterations
        bar = tqdm(
            total=total,
            initial=self.iteration,
            desc=f"train {cfg.method.name}/{cfg.method.mix}",
            disable=not (self.progress and self.dist.is_main),
            dynamic_ncols=True,
            unit="it",
        )
        sums: dict[str, torch.Tensor] = {}
        tick, done_since_log = time.perf_counter(), 0
        with StopSignal(parent=os.getppid() if self.dist.enabled else None) as stop:
            if self._evaluation_pending() and self._evaluate_and_log(bar, stop) is None:
                bar.close()
                return self._interrupted(stop.signal_name)
            while self.iteration < total:
                losses = self.train_step()
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0) + value.detach()
                self.iteration += 1
                done_since_log += 1
                bar.update(1)
                at_end = self.iteration == total
                stopping = self._should_stop(stop) or self.iteration == until
                eval_due = (self._due(cfg.train.eval_every) or at_end) and not stopping  # resumed runs evaluate
                save_due = self._due(cfg.train.checkpoint_every) or at_end or stopping or eval_due
                if self._due(cfg.train.log_every) or eval_due or save_due:  # losses checked before any save
                    seconds = (time.perf_counter() - tick) / done_since_log
                    self._log_losses(sums, done_since_log, seconds, bar)
                    sums, tick, done_since_log = {}, time.perf_counter(), 0
                if save_due:  # before evaluating: a failing or killed evaluation loses nothing
                    self.save(snapshot=self._due(cfg.train.checkpoint_every) or at_end or stopping)
                if eval_due and self._evaluate_and_log(bar, stop) is None:
                    stopping = True
                if stopping:
                    bar.close()
                    return self._interrupted(stop.signal_name or f"until={until}")
        bar.close()
        return self._summary()

    def _eval_due_at(self, iteration: int) -> bool:
        every = self.cfg.train.eval_every
        return iteration > 0 and (iteration == self.cfg.train.iterations or (every > 0 and iteration % every == 0))

    def _evaluation_pending(self) -> bool:
        """A resumed checkpoint whose evaluation never finished (a kill, a stop or an error during it)."""
        if not self._eval_due_at(self.iteration):
            return False
        done = any(r["iteration"] == self.iteration for r in self.run.evals()) if self.dist.is_main else None
        return not all_gather_objects(done, self.dist)[0]  # rank 0 holds the log: every rank follows it

    @property
    def _resume_hint(self) -> str:
        return resume_hint(self.run) if self.dist.is_main else f"see rank 0; checkpoints: {self.run.checkpoints}"

    def _io_errors(self) -> Any:
        return io_errors_of(self.run)

    def train_step(self) -> dict[str, torch.Tensor]:
        """One iteration; returns the detached named losses (still on the device)."""
        cfg = self.cfg
        optim = cfg.optim
        lr = poly_lr_(
            self.optimizer,
            optim.lr,
            optim.power,
            self.iteration,
            cfg.train.iterations,
            optim.warmup_iterations,
            optim.warmup_ratio,
        )
        source = self._to_device(next(self.source_iter))
        target = self._to_device(next(self.target_iter)) if self.target_iter is not None else None
        self.context.iteration = self.iteration
        out, total = optimisation_step(
            self.context,
            method_of(cfg.method).step,
            source,
            target,
            self.optimizer,
            self.scaler,
            teacher=self.teacher,
            model=self.model,
            ema_alpha_max=cfg.method.ema_alpha,
        )
        if cfg.train.debug_every and self.dist.is_main and (self.iteration + 1) % cfg.train.debug_every == 0:
            panel = self.run_dir / "debug" / f"iter_{self.iteration + 1:07d}.png"
            save_debug_panel(panel, source, target, out.extras)
            self.board.image("debug/panel", panel, self.iteration + 1)
        losses = {name: value.detach().float() for name, value in out.losses.items()}
        losses["total"] = total.detach().float()
        for key, name in (
            ("mask", "stat/target_area"),
            ("significance", "stat/significant"),
            ("weight", "stat/weight"),
        ):
            if key in out.extras:  # what the masks did: share of target pixels, of pixels kept by U_M, mean weight
                losses[name] = out.extras[key].detach().float().mean()
        self._lr = lr
        return losses

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        moved = {
            k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) and k != "box" else v
            for k, v in batch.items()
        }
        if self.cfg.train.channels_last:
            moved["image"] = moved["image"].contiguous(memory_format=torch.channels_last)
        return moved

    def _due(self, every: int) -> bool:
        return every > 0 and self.iteration % every == 0

    def _should_stop(self, stop: StopSignal) -> bool:
        flag = torch.tensor([1.0 if stop.poll() else 0.0])
        if self.dist.enabled:
            flag = all_reduce_(flag.to(self.device), self.dist, op="max").cpu()
        return bool(flag.item())

    def _log_losses(self, sums: dict[str, torch.Tensor], count: int, seconds: float, bar: tqdm) -> None:
        names = list(sums)
        means = torch.stack([sums[n] for n in names]) / count
        means = all_reduce_(means, self.dist) / self.dist.world_size
        values = dict(zip(names, means.tolist(), strict=True))
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise NonFiniteLoss(
                f"loss '{bad[0]}' became {values[bad[0]]} by iteration {self.iteration}; the run stopped and kept its "
                f"last good checkpoint in {self.run_dir / 'checkpoints'} (try a lower optim.lr or train.amp=none)"
            )
        record = {"iteration": self.iteration, "lr": self._lr, "sec_per_iter": seconds}
        record.update({(name if "/" in name else f"loss/{name}"): value for name, value in values.items()})
        self.log.write(record)
        self.board.scalars(record)
        bar.set_postfix(loss=f"{values['total']:.3f}", s_it=f"{seconds:.2f}")

    def _evaluate_and_log(self, bar: tqdm, stop: StopSignal) -> EvalResult | None:
        """Evaluate at this iteration (its checkpoint already saved); None when a stop signal ended it early."""
        try:
            result = evaluate_distributed(self.model, self.cfg, self.device, self.dist, stop=lambda: stop.requested)
        except (DataError, OSError, RuntimeError) as exc:
            if self.dist.enabled and is_collective_failure(exc):
                raise
            raise evaluation_failure(exc, self.iteration, self._resume_hint) from None
        if result is None:
            return None
        scores = result.as_dict()
        self.last_scores = scores
        for metric in dict.fromkeys(("miou19", *self.cfg.train.best_metrics)):  # best.pt, then best_<metric>.pt
            best = self.best if metric == "miou19" else self.best_by.get(metric, {metric: -1.0, "iteration": -1})
            if scores[metric] <= best[metric]:
                continue
            best = {metric: scores[metric], "iteration": self.iteration}
            if metric == "miou19":
                self.best = best
            else:
                self.best_by[metric] = best
            if self.dist.is_main:  # best.pt before the record: a logged evaluation always has its best.pt
                state = {"iteration": self.iteration, "config": to_dict(self.cfg), "model": self.model.state_dict()}
                state.update({"teacher": None, "metrics": scores, "kind": "best"})
                save_best(state, self.run_dir, name="best.pt" if metric == "miou19" else f"best_{metric}.pt")
        record = {"iteration": self.iteration, "eval/model": "student", **{f"eval/{k}": v for k, v in scores.items()}}
        self.log.write(record)
        self.board.scalars(record)
        if self.dist.is_main:
            bar.write(f"iteration {self.iteration}: mIoU19 {scores['miou19']:.2f} (best {self.best['miou19']:.2f})")
        return result

    def _summary(self) -> dict[str, Any]:
        """The summary of a finished run (written once; a finished run resumed again returns it unchanged)."""
        existing = self.run.summary() if self.dist.is_main and self.last_scores is None else None
        if existing is not None and existing["iteration"] == self.iteration:
            LOG.info("%s: the run had already finished at iteration %d", self.run_dir, self.iteration)
            return existing
        scores = self.last_scores
        if scores is None and self.dist.is_main:  # resumed after the final evaluation: take it from the log
            records = [r for r in self.run.evals() if r["iteration"] == self.iteration]
            scores = scores_of(records[-1]) if records else None
        summary = {
            "run_dir": str(self.run_dir),
            "iteration": self.iteration,
            "final": scores,
            "best": self.best,
            "checkpoint": str(self.run.checkpoints / "last.pt"),
            "started": dt.datetime.fromtimestamp(self.started, dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(self._seconds(), 3),
        }
        if scores is not None:
            self.log.write_summary(summary)
        return summary

    def _interrupted(self, signal_name: str) -> dict[str, Any]:
        message = f"stopped by {signal_name} at iteration {self.iteration}; {self._resume_hint}"
        if self.dist.is_main:
            LOG.warning(message)
        return {
            "run_dir": str(self.run_dir),
            "iteration": self.iteration,
            "interrupted": signal_name,
            "resume": resume_command(self.run.config_file),
        }


def train(cfg: Config, *, resume: str | None = None, restart: bool = False, progress: bool = True) -> dict[str, Any]:
    """Build a :class:`Trainer` for ``cfg`` and run it to the end (or to a stop signal).

    Args:
        cfg: the resolved config.
        resume: None for a new run (refused when ``out_dir`` already holds one), ``"auto"`` or a checkpoint.
        restart: move a previous run in ``out_dir`` aside and start over.
        progress: show a progress bar.
    """
    return Trainer(cfg, resume=resume, restart=restart, progress=progress).fit()
