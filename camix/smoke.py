"""``camix train --smoke``: does a whole setup run, and how long will it take?

With the real config at full size (network, data, resizing, crops, AMP), in a temporary run directory that is removed
afterwards: two training iterations, one more just after the warm-up when the config has one (the ClassMix warm-up of
``method.warmup_iterations`` or the learning-rate warm-up of ``optim.warmup_iterations``: the step changes there),
and an evaluation of two validation images. It reports seconds per iteration (the second iteration's: the first one
pays one-off costs), the peak memory (the accelerator's peak allocation, or the process's peak resident memory on
the CPU) and the estimated wall time of the whole schedule with its evaluations. The run directory of the config is
never touched; what a real run caches in the dataset roots (the spatial prior, RCS statistics) is computed and
cached as a real run would.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from camix.config import Config
from camix.config_tree import replace
from camix.data.datasets import find_samples
from camix.errors import CamixError
from camix.evaluate import evaluate_distributed
from camix.train import Trainer

T = TypeVar("T")
SMOKE_VAL_IMAGES = 2


class SmokeFailed(CamixError):
    """A part of the smoke run failed (one line naming it); exit code 1."""

    exit_code = 1


@dataclasses.dataclass
class SmokeResult:
    """What a smoke run measured (seconds, bytes)."""

    device: str
    setup_seconds: float
    iteration_seconds: list[float]  # iterations 1 and 2
    after_warmup: tuple[int, float] | None  # (iteration, seconds) of the iteration just after the warm-up
    eval_seconds_per_image: float
    val_images: int
    peak_bytes: int
    peak_kind: str
    iterations: int
    evaluations: int

    @property
    def seconds_per_iteration(self) -> float:
        """The second iteration's seconds (the first one pays one-off costs)."""
        return self.iteration_seconds[-1]

    @property
    def estimate_seconds(self) -> float:
        """The whole schedule: iterations before and after the warm-up at their measured rates, plus evaluations."""
        before = self.seconds_per_iteration
        if self.after_warmup is None:
            training = before * self.iterations
        else:
            start, after = self.after_warmup
            training = before * start + after * (self.iterations - start)
        return training + self.evaluations * self.val_images * self.eval_seconds_per_image


def evaluations_of(cfg: Config) -> int:
    """How many evaluations the schedule runs (every ``eval_every`` iterations, and always after the last)."""
    total, every = cfg.train.iterations, cfg.train.eval_every
    return 1 if every <= 0 else total // every + (total % every != 0)


def warmup_end(cfg: Config) -> int | None:
    """The first iteration after the config's warm-up (ClassMix or learning rate), or None when it has none."""
    end = max(cfg.method.warmup_iterations, cfg.optim.warmup_iterations)
    return end if 0 < end < cfg.train.iterations else None


def _timed(what: str, call: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """(result, seconds) of ``call``, synchronising the accelerator; SmokeFailed naming ``what`` when it raises."""
    start = time.perf_counter()
    try:
        result = call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except CamixError as exc:
        raise SmokeFailed(f"{what} failed: {exc}") from None
    except (RuntimeError, OSError, ValueError, AssertionError, MemoryError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SmokeFailed(f"{what} failed: {type(exc).__name__}: {reason}") from None
    return result, time.perf_counter() - start


def _iteration(trainer: Trainer, index: int) -> float:
    """Run iteration ``index`` (0-based) of the schedule as the loop does (:meth:`Trainer.run_iteration`); returns
    the summed loss."""
    loss = trainer.run_iteration(index)[3]
    value = float(loss.detach())
    if not math.isfinite(value):
        raise SmokeFailed(f"iteration {index + 1} gave a non-finite loss ({value})")
    return value


def _run_iteration(trainer: Trainer, index: int, what: str) -> float:
    """Seconds of iteration ``index``; SmokeFailed naming ``what`` when it fails."""
    return _timed(what, lambda: _iteration(trainer, index), trainer.device)[1]


def _peak(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "accelerator peak allocation"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss if sys.platform == "darwin" else rss * 1024), "process peak resident memory"


def smoke(cfg: Config, *, progress: bool = False) -> SmokeResult:
    """Run the smoke test of ``cfg`` in a temporary run directory (removed afterwards) and measure it.

    Raises:
        CamixError: a config or dataset problem found before anything runs (the usual one-line errors).
        SmokeFailed: a part that failed (setup, an iteration, the evaluation), named.
    """
    folder = Path(tempfile.mkdtemp(prefix="camix-smoke-"))
    try:
        return _smoke(replace(cfg, out_dir=str(folder / "run")), progress)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _smoke(cfg: Config, progress: bool) -> SmokeResult:
    start = time.perf_counter()
    trainer = Trainer(cfg, progress=progress)  # preflight first: bad input is the usual one line
    try:
        setup = time.perf_counter() - start
        device = trainer.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = [_run_iteration(trainer, i, f"training iteration {i + 1}") for i in (0, 1)]
        end = warmup_end(cfg)
        after = None
        if end is not None:
            after = (end, _run_iteration(trainer, end, f"training iteration {end + 1} (after the warm-up)"))
        few = replace(cfg, **{"data.val.limit": SMOKE_VAL_IMAGES})

        def evaluate() -> Any:
            return evaluate_distributed(trainer.model, few, device, trainer.dist)

        _, eval_seconds = _timed(f"the evaluation of {SMOKE_VAL_IMAGES} validation images", evaluate, device)
        peak, kind = _peak(device)
        val_images = len(find_samples(cfg.data.val))
        evaluated = min(SMOKE_VAL_IMAGES, val_images)
        return SmokeResult(
            device=str(device),
            setup_seconds=setup,
            iteration_seconds=times,
            after_warmup=after,
            eval_seconds_per_image=eval_seconds / max(1, evaluated),
            val_images=val_images,
            peak_bytes=peak,
            peak_kind=kind,
            iterations=cfg.train.iterations,
            evaluations=evaluations_of(cfg),
        )
    finally:
        trainer.close()


def human_seconds(seconds: float) -> str:
    """``42.0 s``, ``12.5 min``, ``3.2 h``, ``2.1 days``."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_smoke(result: SmokeResult) -> str:
    """The lines ``camix train --smoke`` prints."""
    first, second = result.iteration_seconds
    lines = [
        f"device: {result.device}; setup (networks, data, prior) {result.setup_seconds:.1f} s",
        f"iterations 1 and 2: {first:.2f} s, {second:.2f} s -> {result.seconds_per_iteration:.2f} s per iteration",
    ]
    if result.after_warmup is not None:
        index, seconds = result.after_warmup
        lines.append(f"iteration {index + 1} (after the warm-up): {seconds:.2f} s")
    lines.append(
        f"evaluation: {result.eval_seconds_per_image:.2f} s per image ({result.val_images} validation images, "
        f"{result.evaluations} evaluations)"
    )
    lines.append(f"peak memory: {result.peak_bytes / 2**30:.2f} GiB ({result.peak_kind})")
    lines.append(
        f"estimated wall time of {result.iterations} iterations and {result.evaluations} evaluations: "
        f"{human_seconds(result.estimate_seconds)}"
    )
    return "\n".join(lines)
