"""The one explicit training loop (docs/architecture.md: a batch through a training step).

Each iteration: poly learning rate -> one batch per domain -> the method's step returns named losses ->
sum, backpropagate, optimiser step -> EMA teacher update. Every ``log_every`` iterations the losses are
brought to the host once, checked for finiteness and logged; checkpoints are written only after such a
check, so the newest checkpoint on disk is always a good one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import torch
from tqdm import tqdm

from camix.checkpoint import save_best, save_checkpoint, training_state
from camix.config import Config
from camix.config_tree import to_dict
from camix.data.batch import Batch, to_device
from camix.errors import DataError, NonFiniteLoss
from camix.evaluate import evaluate_distributed, evaluation_failure
from camix.methods import method_of
from camix.optim import poly_lr_
from camix.preflight import preflight
from camix.rundir import claim_run, resume_command, resume_hint, scores_of
from camix.rundir import io_errors as io_errors_of
from camix.runtime import (
    StopSignal,
    all_gather_objects,
    all_reduce_,
    guard_collectives,
    is_collective_failure,
    rng_state,
    start_process,
)
from camix.step import logged_values, optimisation_step
from camix.step_context import StepOutput
from camix.tensorboard import TensorBoardLog
from camix.train_setup import build_run
from camix.visualize import debug_panel

LOG = logging.getLogger("camix.train")


class Trainer:
    """Holds the state of one run; :meth:`fit` is the loop.

    The run directory is locked from construction until :meth:`fit` returns (or :meth:`close`).
    """

    def __init__(self, cfg: Config, *, resume: str | None = None, restart: bool = False, progress: bool = True) -> None:
        self.cfg, self.show_progress = cfg, progress
        preflight(cfg, resume)  # bad values and missing files are refused before the run directory is touched
        engine = cfg.train
        self.dist, self.device = start_process(  # the global seed: the same initial weights on every rank
            engine.device,
            timeout=engine.dist_timeout,
            threads=engine.threads,
            cudnn_benchmark=engine.cudnn_benchmark,
            seed=cfg.seed,
        )
        self.board = TensorBoardLog(None)  # replaced once the run directory and the start iteration are known
        self.run, self.lock = claim_run(cfg, self.dist, resume=resume, restart=restart)
        self.run_dir, self.leg_start = self.run.path, time.perf_counter()
        with self._closed_on_error():
            self._setup(resume)

    @contextlib.contextmanager
    def _closed_on_error(self) -> Iterator[None]:
        """Release the run directory (and close the log) when building the run fails."""
        try:
            yield
        except BaseException:
            self.close()
            raise

    def _setup(self, resume: str | None) -> None:
        """Build (or restore) the run's state (:func:`camix.train_setup.build_run`) and hold its parts."""
        state = build_run(self.cfg, self.run, self.device, self.dist, resume, progress=self.show_progress)
        self.model, self.student, self.teacher = state.nets.model, state.nets.student, state.nets.teacher
        self.optimizer, self.scaler, self.generator = state.optimizer, state.scaler, state.generator
        self.counters, self.context, self.log, self.board = state.counters, state.context, state.log, state.board
        self.source_iter, self.target_iter = state.source, state.target

    @property
    def iteration(self) -> int:
        """Iterations done (the checkpoint's counter)."""
        return self.counters.iteration

    def close(self) -> None:
        """Close the TensorBoard log and release the run directory's lock (idempotent)."""
        self.board.close()
        if self.lock is not None:
            self.lock.release()

    # ----- checkpoints --------------------------------------------------------------------------------
    def _seconds(self) -> float:
        """Wall seconds of this run so far, over every resumed leg (up to each leg's last checkpoint)."""
        return self.counters.seconds_before + time.perf_counter() - self.leg_start

    def save(self, snapshot: bool = True) -> None:
        """Write ``last.pt`` (and a numbered snapshot); collective under DDP, rank 0 writes."""
        rng = all_gather_objects({"global": rng_state(), "generator": self.generator.get_state()}, self.dist)
        if self.dist.enabled and self.teacher is not None:  # BN statistics of rank 0 for every rank's teacher
            for buffer in self.teacher.buffers():
                torch.distributed.broadcast(buffer, src=0)
        state = training_state(
            self.cfg,
            self.counters,
            model=self.model,
            teacher=self.teacher,
            optimizer=self.optimizer,
            scaler=self.scaler,
            rng=rng,
            world_size=self.dist.world_size,
            seconds=self._seconds(),
        )
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

    def run_iteration(self, iteration: int) -> tuple[Batch, Batch | None, StepOutput, torch.Tensor, float]:
        """Iteration ``iteration`` (0-based) of the schedule: its learning rate, one batch per domain on the device,
        then the method's step -> summed loss -> backward -> optimiser step -> EMA teacher (Eq. 3).

        Returns the two batches, the step's output, the summed loss (detached, on the device) and the learning
        rate. The loop (:meth:`fit`) runs it once per iteration; ``camix train --smoke`` runs single iterations.
        """
        cfg = self.cfg
        optim, channels_last = cfg.optim, cfg.train.channels_last
        total = cfg.train.iterations
        lr = poly_lr_(
            self.optimizer, optim.lr, optim.power, iteration, total, optim.warmup_iterations, optim.warmup_ratio
        )
        source = to_device(next(self.source_iter), self.device, channels_last=channels_last)
        target = None
        if self.target_iter is not None:
            target = to_device(next(self.target_iter), self.device, channels_last=channels_last)
        self.context.iteration = iteration
        out, loss = optimisation_step(
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
        return source, target, out, loss, lr

    def _fit(self, until: int | None) -> dict[str, Any]:
        cfg, total, counters = self.cfg, self.cfg.train.iterations, self.counters
        every = cfg.train  # every.log_every, every.eval_every, ...
        bar = tqdm(
            total=total,
            initial=counters.iteration,
            desc=f"train {cfg.method.name}/{cfg.method.mix}",
            disable=not (self.show_progress and self.dist.is_main),
            dynamic_ncols=True,
            unit="it",
        )
        sums: dict[str, torch.Tensor] = {}  # the logged values, summed on the device between two logs
        tick, since_log, scores = time.perf_counter(), 0, None
        with StopSignal(parent=os.getppid() if self.dist.enabled else None) as stop:
            if self._evaluation_pending():  # resumed from a checkpoint whose evaluation never finished
                scores = self._evaluate_and_log(bar, stop)
                if scores is None:
                    bar.close()
                    return self._interrupted(stop.signal_name)
            while counters.iteration < total:
                source, target, out, loss, lr = self.run_iteration(counters.iteration)
                counters.iteration += 1
                bar.update(1)
                for name, value in logged_values(out, loss).items():  # no host synchronisation
                    sums[name] = sums.get(name, 0) + value
                since_log += 1
                if self._due(every.debug_every) and self.dist.is_main:
                    self._debug_panel(source, target, out)
                # the schedule: log (the losses checked before any save), save, evaluate, stop
                at_end = counters.iteration == total
                stopping = self._should_stop(stop) or counters.iteration == until
                eval_due = (self._due(every.eval_every) or at_end) and not stopping  # resumed runs evaluate
                save_due = self._due(every.checkpoint_every) or at_end or stopping or eval_due
                if self._due(every.log_every) or eval_due or save_due:
                    seconds = (time.perf_counter() - tick) / since_log
                    self._log(sums, since_log, lr=lr, seconds=seconds, bar=bar)
                    sums, tick, since_log = {}, time.perf_counter(), 0
                if save_due:  # before evaluating: a failing or killed evaluation loses nothing
                    self.save(snapshot=self._due(every.checkpoint_every) or at_end or stopping)
                if eval_due:
                    scores = self._evaluate_and_log(bar, stop)
                    stopping = stopping or scores is None
                if stopping:
                    bar.close()
                    return self._interrupted(stop.signal_name or f"until={until}")
        bar.close()
        return self._summary(scores)

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

    def _due(self, every: int) -> bool:
        return every > 0 and self.iteration % every == 0

    def _should_stop(self, stop: StopSignal) -> bool:
        flag = torch.tensor([1.0 if stop.poll() else 0.0])
        if self.dist.enabled:
            flag = all_reduce_(flag.to(self.device), self.dist, op="max").cpu()
        return bool(flag.item())

    def _debug_panel(self, source: Batch, target: Batch | None, out: StepOutput) -> None:
        panel = self.run_dir / "debug" / f"iter_{self.iteration:07d}.png"
        debug_panel(panel, out.tiles)
        self.board.image("debug/panel", panel, self.iteration)

    def _log(self, sums: dict[str, torch.Tensor], count: int, *, lr: float, seconds: float, bar: tqdm) -> None:
        """Bring the mean of the logged values to the host (once), check the losses are finite, write the record."""
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
        record = {"iteration": self.iteration, "lr": lr, "sec_per_iter": seconds}
        record.update({(name if "/" in name else f"loss/{name}"): value for name, value in values.items()})
        self.log.write(record)
        self.board.scalars(record)
        bar.set_postfix(loss=f"{values['total']:.3f}", s_it=f"{seconds:.2f}")

    def _evaluate_and_log(self, bar: tqdm, stop: StopSignal) -> dict[str, Any] | None:
        """Evaluate at this iteration (its checkpoint already saved): the scores, or None when a stop signal ended
        it early. Writes ``best.pt`` (and ``best_<metric>.pt``) before the record."""
        try:
            result = evaluate_distributed(self.model, self.cfg, self.device, self.dist, stop=lambda: stop.requested)
        except (DataError, OSError, RuntimeError) as exc:
            if self.dist.enabled and is_collective_failure(exc):
                raise
            raise evaluation_failure(exc, self.iteration, self._resume_hint) from None
        if result is None:
            return None
        scores = result.as_dict()
        for name in self.counters.improved(scores, self.cfg.train.best_metrics):
            if self.dist.is_main:  # best.pt before the record: a logged evaluation always has its best.pt
                state = {"iteration": self.iteration, "config": to_dict(self.cfg), "model": self.model.state_dict()}
                state.update({"teacher": None, "metrics": scores, "kind": "best"})
                save_best(state, self.run_dir, name=name)
        record = {"iteration": self.iteration, "eval/model": "student", **{f"eval/{k}": v for k, v in scores.items()}}
        self.log.write(record)
        self.board.scalars(record)
        if self.dist.is_main:
            title = "mIoU19" if "miou16" in scores else "mIoU"  # a folder dataset's classes: the mean over them
            bar.write(
                f"iteration {self.iteration}: {title} {scores['miou19']:.2f} (best {self.counters.best['miou19']:.2f})"
            )
        return scores

    def _summary(self, scores: dict[str, Any] | None) -> dict[str, Any]:
        """The summary of a finished run, with the last evaluation's ``scores`` when this leg evaluated (written
        once; a finished run resumed again returns it unchanged)."""
        existing = self.run.summary() if self.dist.is_main and scores is None else None
        if existing is not None and existing["iteration"] == self.iteration:
            LOG.info("%s: the run had already finished at iteration %d", self.run_dir, self.iteration)
            return existing
        if scores is None and self.dist.is_main:  # resumed after the final evaluation: take it from the log
            records = [r for r in self.run.evals() if r["iteration"] == self.iteration]
            scores = scores_of(records[-1]) if records else None
        started = dt.datetime.fromtimestamp(self.counters.started, dt.timezone.utc)
        summary = {
            "run_dir": str(self.run_dir),
            "iteration": self.iteration,
            "final": scores,
            "best": self.counters.best,
            "checkpoint": str(self.run.checkpoints / "last.pt"),
            "started": started.isoformat(timespec="seconds"),
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
