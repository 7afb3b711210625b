"""Seconds per training iteration of source-only, DACS and CAMix at the paper's settings.

One iteration = poly learning rate, the method's step function (``camix.methods``), summed loss, backward, SGD step
and EMA update (``camix.step.optimisation_step``, as the training loop runs it), on batches already on
the device: 2 source + 2 target crops of random street-scene-like data (labels made of a sky, a skyline, a road with
sidewalks and a handful of objects and poles, so ClassMix and the contextual mask see realistic class counts;
``benchmarks/scenes.py``) and a spatial prior ``[19, H, W]`` at the target image size. The settings come from the
packaged ``configs/gta2cs/{source_only,dacs,camix}.yaml`` (CAMix without its ClassMix warm-up, N = 8 noisy teacher
passes, SRC loss, spatial prior, default relations, random initial weights, camix's deduplicated SGD), built by the
library's builders as ``Trainer`` builds them (``camix.train_setup.build_networks``,
``camix.optim.build_optimizer``, ``camix.methods.build_context``). The fast path is bf16 autocast + channels_last
(``--amp none``, ``--no-channels-last`` turn them off), eager unless ``--compile``, with cudnn.benchmark; these
options reach the builders as the config's ``train.amp``, ``train.channels_last`` and ``train.compile``. Times are
medians over ``--iters`` iterations after ``--warmup``; on CUDA also the peak allocated memory over the timed
iterations and the host synchronisations of one more iteration (``torch.cuda.set_sync_debug_mode``), by call site.
On a shared CPU, ``--threads 1`` gives steadier numbers.

``--baseline`` also times ``benchmarks/baseline_step.py`` (a re-creation of the released code's iteration) in
the same process on the same data and prints baseline/fast ratios. ``--check-numerics`` runs 10 iterations
from the same state in fp32 and in the fast path (bf16 autocast + channels_last) and prints the largest
relative difference of each loss term. Results are appended to ``benchmarks/RESULTS.md`` unless ``--no-record``.
``--self-check`` checks the baseline's own helpers and exits (status 1 on a failure; the tests run it).

    python benchmarks/train_step.py --device cuda --baseline --check-numerics      # H100: r101, 512x512
    python benchmarks/train_step.py --device cpu --iters 5 --no-record              # tiny model, 128x128
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import math
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from camix.commands.common import size_argument
from camix.config import Config, load_config
from camix.methods import build_context, method_of, relations_for
from camix.optim import build_optimizer, poly_lr_
from camix.runtime import Dist, keep_freed_memory
from camix.step import optimisation_step
from camix.step_context import StepContext, StepFn, flush_subnormal, upsampled_logits
from camix.teacher import passes_per_forward
from camix.train_setup import Networks, autocast_factory, build_networks

try:
    from benchmarks import baseline_step
    from benchmarks.scenes import Pool, make_pool
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    import baseline_step  # type: ignore[no-redef]
    from scenes import Pool, make_pool  # type: ignore[no-redef]

METHODS = ("source_only", "dacs", "camix")
RESULTS = Path(__file__).with_name("RESULTS.md")
RESULTS_HEADER = (
    "# Benchmark results\n\nDated sections appended by the scripts in this folder (newest last); each names its "
    "device, versions and the exact command. Append, never rewrite.\n"
)


# --------------------------------------------------------------------------------------------- fast path
@dataclass(frozen=True)
class PathOptions:
    """How the library's iteration runs: the config's ``train.amp``, ``train.channels_last``, ``train.compile`` and
    ``train.teacher_passes``."""

    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    teacher_passes: str = "auto"

    def overrides(self) -> list[str]:
        """The ``--set`` overrides that select this path."""
        flags = {"channels_last": self.channels_last, "compile": self.compile}
        teacher = f"train.teacher_passes={self.teacher_passes}"
        return [f"train.amp={self.amp}", *(f"train.{k}={str(v).lower()}" for k, v in flags.items()), teacher]


@dataclass
class FastSetup:
    """The pieces ``Trainer`` builds, for one method."""

    cfg: Config
    ctx: StepContext
    step: StepFn
    nets: Networks
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


def method_config(
    method: str, model_name: str | None, noise_passes: int, overrides: Sequence[str] = (), config: Path | None = None
) -> Config:
    """The packaged GTA5 -> Cityscapes config of ``method`` (or ``config``, e.g. ``configs/gta2cs/hrda_camix.yaml``);
    CAMix without its ClassMix warm-up; the network ``model_name`` unless None (the config's own).

    No pretrained weights (random initial weights), and camix's deduplicated SGD (the timed fast path; the
    packaged configs' ``optim.duplicate_backbone_params`` reproduces the released optimiser instead).
    """
    fixed = [
        *([f"model.name={model_name}"] if model_name else []),
        "model.pretrained=null",
        "optim.duplicate_backbone_params=false",
        "method.warmup_iterations=0",
        f"method.noise_passes={noise_passes}",
    ]
    return load_config(config or f"configs/gta2cs/{method}.yaml", [*fixed, *overrides])


def generator_device(device: torch.device) -> torch.device:
    """The step generator's device: the data's, except for ``meta`` (the test stand-in for a GPU), which has none."""
    return torch.device("cpu") if device.type == "meta" else device


def build_fast(
    method: str,
    opts: PathOptions,
    model_name: str | None,
    pool: Pool,
    device: torch.device,
    *,
    noise_passes: int = 8,
    config: Path | None = None,
) -> FastSetup:
    """Networks, optimiser and step context from the library's builders, as ``Trainer`` builds them."""
    crop_h, crop_w = pool.sources[0]["label"].shape[-2:]
    crop = f"data.crop={crop_w}x{crop_h}"
    cfg = method_config(method, model_name, noise_passes, [*opts.overrides(), crop], config)
    torch.manual_seed(cfg.seed)
    nets = build_networks(cfg, device, Dist())
    optimizer = build_optimizer(nets.model, cfg.optim, cfg.train.amp)
    ctx = build_context(
        cfg.method,
        student=nets.student,
        teacher=nets.teacher_forward,
        num_classes=cfg.model.num_classes,
        generator=torch.Generator(device=generator_device(device)).manual_seed(cfg.seed),
        total_iterations=cfg.train.iterations,
        crop=cfg.data.crop,
        prior=pool.prior,
        autocast=autocast_factory(device, cfg.train.amp),
        imagenet=nets.imagenet,
        teacher_group=passes_per_forward(cfg.train.teacher_passes, generator_device(device)),
        hrda=cfg.model.hrda,
        output_stride=int(getattr(nets.model, "output_stride", 8)),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16")
    return FastSetup(cfg, ctx, method_of(cfg.method).step, nets, optimizer, scaler)


def fast_iteration(setup: FastSetup, pool: Pool, i: int) -> dict[str, Tensor]:
    """One iteration of the training loop once the batch is on the device; returns the named losses."""
    cfg = setup.cfg
    poly_lr_(setup.optimizer, cfg.optim.lr, cfg.optim.power, i, cfg.train.iterations)
    source, target = pool.batch(i, cfg.train.channels_last)
    setup.ctx.iteration = i
    out, _ = optimisation_step(
        setup.ctx,
        setup.step,
        source,
        target if method_of(cfg.method).target else None,
        setup.optimizer,
        setup.scaler,
        teacher=setup.nets.teacher,
        model=setup.nets.model,
        ema_alpha_max=cfg.method.ema_alpha,
    )
    return {name: value.detach() for name, value in out.losses.items()}


def baseline_runner(
    method: str, args: argparse.Namespace, pool: Pool, device: torch.device, *, flush: bool = False
) -> Callable[[int], Any]:
    """One released-code iteration per call (``benchmarks/baseline_step.py``); with ``flush`` the
    gradient reaching its network's logits has its subnormal values zeroed, as camix's step does on the CPU
    (:func:`camix.step_context.flush_subnormal`), which the released code does not."""
    relations = relations_for(method_config(method, args.model, args.noise_passes).method.relations)
    state = baseline_step.build_released(
        args.model, method, device, pool.prior, relations, noise_passes=args.noise_passes
    )
    if flush:
        state.model.register_forward_hook(_flush_output_gradient)

    def run(i: int) -> dict[str, float]:
        source, target = pool.batch(i, channels_last=False)
        return baseline_step.released_iteration(state, source, target, i)

    return run


def _flush_output_gradient(module: nn.Module, inputs: Any, output: Tensor) -> None:
    """Forward hook: flush the subnormal values of the gradient that will reach ``output``."""
    if output.requires_grad:
        output.register_hook(flush_subnormal)


# ---------------------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Seconds per iteration and peak allocated GiB (CUDA only)."""

    method: str
    path: str
    times: list[float]
    peak_gib: float | None
    sync_sites: Counter[str] | None = None  # CUDA: where one more iteration synchronised with the host

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def sync(device: torch.device) -> None:
    """Wait for queued kernels so that wall time measures them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_iterations(
    run: Callable[[int], Any], device: torch.device, warmup: int, iters: int, label: tuple[str, str]
) -> Timing:
    """Median-ready wall times of ``iters`` calls after ``warmup`` calls; peak memory over the timed ones."""
    for i in range(warmup):
        run(i)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup, warmup + iters):
        start = time.perf_counter()
        run(i)
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Timing(label[0], label[1], times, peak, cuda_sync_sites(run, device, warmup + iters))


def cuda_sync_sites(run: Callable[[int], Any], device: torch.device, i: int) -> Counter[str] | None:
    """Where iteration ``i`` synchronises with the host (``torch.cuda.set_sync_debug_mode``); None off CUDA.

    Counts what PyTorch flags: reads of device values (``.item()``, ``bool(t)``, ``nonzero``...) and blocking
    copies between host and device.
    """
    if device.type != "cuda":
        return None
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run(i)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sites = [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
    return Counter(sites)


def release(device: torch.device) -> None:
    """Free cached blocks between runs so that each peak is its own."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def benchmark(args: argparse.Namespace, pool: Pool, device: torch.device) -> list[Timing]:
    """Fast path (and baseline) timings of every requested method.

    The baselines run first, with the C allocator as the process starts (the released code's process); then the
    fast paths, on the CPU with :func:`camix.runtime.keep_freed_memory` as ``camix train`` sets it.
    """
    opts = PathOptions(args.amp, args.channels_last, args.compile, args.teacher_passes)
    baselines = {}
    for method in args.methods if args.baseline else ():
        if method in (args.baseline_methods or args.methods):
            run = baseline_runner(method, args, pool, device)
            baselines[method] = time_iterations(run, device, args.warmup, args.iters, (method, "baseline"))
            del run
            release(device)
    if device.type == "cpu":
        keep_freed_memory()
    results = []
    for method in args.methods:
        setup = build_fast(method, opts, args.model, pool, device, noise_passes=args.noise_passes, config=args.config)
        fast_run = functools.partial(fast_iteration, setup, pool)
        results.append(time_iterations(fast_run, device, args.warmup, args.iters, (method, "fast")))
        del setup, fast_run
        release(device)
        if method in baselines:
            results.append(baselines[method])
    return results


# -------------------------------------------------------------------------------------------- numerics
@dataclass
class WarmStart:
    """The shared initial state of the numerics comparison."""

    state: dict[str, Tensor]
    iterations: int
    confident: float  # share of target pixels with max-prob >= 0.968 (what DACS's confidence weight counts)


def confident_share(model: nn.Module, pool: Pool) -> float:
    """Share of the first target batch's pixels on which ``model`` is confident (setup-time, host sync is fine)."""
    with torch.no_grad():
        prob = upsampled_logits(model, pool.targets[0]["image"]).softmax(1)
    return float((prob.max(1).values >= 0.968).float().mean().item())


def confident_state(args: argparse.Namespace, pool: Pool, device: torch.device) -> WarmStart:
    """Weights after fp32 source-only iterations at 10x the paper's lr, until 30% of target pixels are confident.

    A random network is never confident, so DACS's confidence weight (share of pixels with p >= 0.968) and with
    it the consistency loss would be 0 on both paths; a warm start makes the comparison bite. Stops after
    ``--numerics-pretrain`` iterations at most.
    """
    setup = build_fast("source_only", PathOptions(), args.model, pool, device)
    done, confident = 0, 0.0
    while done < args.numerics_pretrain and confident < 0.3:
        poly_lr_(setup.optimizer, 10 * setup.cfg.optim.lr, 0.9, 0, 1)
        source, _ = pool.batch(done, False)
        optimisation_step(setup.ctx, setup.step, source, None, setup.optimizer, setup.scaler)
        done += 1
        if done % 10 == 0 or done == args.numerics_pretrain:
            confident = confident_share(setup.nets.model, pool)
    return WarmStart(copy.deepcopy(setup.nets.model.state_dict()), done, confident)


def losses_from(
    method: str, opts: PathOptions, state: dict[str, Tensor], args: argparse.Namespace, pool: Pool, device: torch.device
) -> dict[str, list[float]]:
    """Loss terms of ``--numerics-iters`` iterations from ``state`` with fixed seeds."""
    setup = build_fast(method, opts, args.model, pool, device, noise_passes=args.noise_passes)
    setup.nets.model.load_state_dict(state)
    if setup.nets.teacher is not None:
        setup.nets.teacher.load_state_dict(state)
    torch.manual_seed(1234)  # kornia draws its augmentation parameters from the global (host) generator
    setup.ctx.generator.manual_seed(1234)
    rows = [fast_iteration(setup, pool, i) for i in range(args.numerics_iters)]
    names = list(rows[0])
    values = torch.stack([torch.stack([row[n].float() for n in names]) for row in rows]).double().cpu()
    result = {name: values[:, k].tolist() for k, name in enumerate(names)}
    result["total"] = values.sum(1).tolist()
    return result


def relative_difference(ref: list[float], fast: list[float]) -> float:
    """Largest ``|fast - ref| / |ref|`` over the iterations (0 where both are 0)."""
    worst = 0.0
    for a, b in zip(ref, fast, strict=True):
        if a != b:
            worst = max(worst, abs(b - a) / abs(a) if a != 0 else math.inf)
    return worst


@dataclass
class NumericsRow:
    """One loss term of one method: the fp32 and fast losses per iteration and their largest relative gap."""

    method: str
    term: str
    ref: list[float]
    fast: list[float]

    @property
    def max_rel_diff(self) -> float:
        return relative_difference(self.ref, self.fast)

    def markdown(self) -> str:
        diff = self.max_rel_diff
        verdict = "ok" if diff <= 0.02 else "OVER 2%"
        return (
            f"| {self.method} | {self.term} | {self.ref[0]:.4f} -> {self.ref[-1]:.4f} | {100 * diff:.3f}% | {verdict} |"
        )


@dataclass
class Numerics:
    """The comparison's rows and its warm start."""

    rows: list[NumericsRow]
    warm: WarmStart


def check_numerics(args: argparse.Namespace, pool: Pool, device: torch.device) -> Numerics:
    """Per method and loss term: fp32 (eager, contiguous) vs bf16 autocast + channels_last from the same state."""
    fast = PathOptions("bf16", True, args.compile, args.teacher_passes)
    warm = confident_state(args, pool, device)
    rows = []
    for method in args.methods:
        ref_losses = losses_from(method, PathOptions(), warm.state, args, pool, device)
        fast_losses = losses_from(method, fast, warm.state, args, pool, device)
        rows += [NumericsRow(method, term, ref, fast_losses[term]) for term, ref in ref_losses.items()]
        release(device)
    return Numerics(rows, warm)


# --------------------------------------------------------------------------------------------- report
def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0] if names else model
    return f"CPU {model} ({torch.get_num_threads()} torch threads)"


def omp_wait_policy() -> str:
    """``OMP_WAIT_POLICY`` as this process saw it: it changes CPU timings (passive threads sleep between ops)."""
    return f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"


def environment(device: torch.device) -> str:
    """Device, versions, OpenMP wait policy (CPU) and load, one line."""
    parts = [device_name(device), f"torch {torch.__version__}"]
    if device.type == "cpu":
        parts.append(omp_wait_policy())
    if device.type == "cuda":
        parts += [f"CUDA {torch.version.cuda}", f"cuDNN {torch.backends.cudnn.version()}"]
    if hasattr(os, "getloadavg"):
        parts.append("load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return ", ".join(parts)


def timing_table(results: list[Timing]) -> list[str]:
    """Markdown rows with the baseline/fast ratio on each baseline row."""
    fast = {r.method: r.median for r in results if r.path == "fast"}
    lines = [
        "| method | path | s/iter (median) | min | max | peak GiB | host syncs/iter | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        peak = f"{r.peak_gib:.2f}" if r.peak_gib is not None else "n/a"
        syncs = str(sum(r.sync_sites.values())) if r.sync_sites is not None else "n/a"
        ratio = f"{r.median / fast[r.method]:.2f}x" if r.path == "baseline" and r.method in fast else ""
        times = f"{r.median:.4f} | {min(r.times):.4f} | {max(r.times):.4f}"
        lines.append(f"| {r.method} | {r.path} | {times} | {peak} | {syncs} | {ratio} |")
    sites = Counter[str]()
    for r in results:
        if r.path == "fast" and r.sync_sites:
            sites.update(r.sync_sites)
    if sites:
        lines += ["", "Fast-path host syncs by call site: " + ", ".join(f"{k} x{v}" for k, v in sites.most_common(12))]
    return lines


def report(args: argparse.Namespace, device: torch.device, results: list[Timing], numerics: Numerics | None) -> str:
    """The dated section: settings, environment, command and tables."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    settings = (
        f"{f'config {args.config}, ' if args.config else ''}model {args.network}, "
        f"crop {args.crop[1]}x{args.crop[0]}, {args.batch}+{args.batch} images, 19 classes, "
        f"N={args.noise_passes}, target image {args.target_size[1]}x{args.target_size[0]}; fast path: amp "
        f"{args.amp}, channels_last {args.channels_last}, compile {args.compile}, teacher passes "
        f"{args.teacher_passes}; median of {args.iters} after "
        f"{args.warmup} warm-up"
    )
    lines = [
        f"## {now} — train_step on {device_name(device)}",
        "",
        f"- command: `{args.command}`",
        f"- environment: {environment(device)}",
        f"- settings: {settings}",
        "",
    ]
    if results:
        lines += [*timing_table(results), ""]
    if numerics is not None:
        lines += [
            f"Numerics: {args.numerics_iters} iterations from the same state (after {numerics.warm.iterations} fp32 "
            f"source-only iterations; teacher confident on {100 * numerics.warm.confident:.0f}% of target pixels), "
            "fp32 vs bf16 + channels_last:",
            "",
            "| method | loss | fp32 first -> last | max rel. diff | <= 2% |",
            "|---|---|---|---|---|",
            *(row.markdown() for row in numerics.rows),
            "",
        ]
    return "\n".join(lines)


def record(text: str, path: Path) -> None:
    """Append a section to the results file (created with a short header when missing)."""
    new = not path.exists()
    with path.open("a", encoding="utf-8") as handle:
        handle.write(RESULTS_HEADER if new else "")
        handle.write("\n" + text + "\n")


# ------------------------------------------------------------------------------------------ self-check
def self_check() -> list[str]:
    """Checks of the baseline's own helpers (``--self-check``); returns the failures, one line each."""
    failures = []
    labels = torch.tensor([[[5, 5, 6, 6], [0, 0, 1, 1], [2, 2, 3, 3], [255, 255, 4, 4]]])
    masks = baseline_step.host_class_masks(labels, {6: (5,), 5: (6,)}, torch.device("cpu"))
    chosen = set(labels[0][masks[0][0] > 0].tolist())
    if len(chosen) < 4:  # ceil(8 / 2) of the 8 labels (255 counts, as in the released code), then relations
        failures.append(f"host_class_masks chose {sorted(chosen)}: fewer than half of the 8 labels")
    if {5, 6} & chosen and not {5, 6} <= chosen:
        failures.append(f"host_class_masks chose {sorted(chosen)}: 5 and 6 are related, one came without the other")
    # The re-creation must be the slow, syncing control flow (boolean indexing, .item(), numpy masks): on the
    # meta device, whose tensors hold no data, it cannot run.
    meta = torch.device("meta")
    pool = make_pool(2, (32, 32), (64, 64), meta, count=1)
    run = baseline_runner("camix", parse_args(["--device", "cpu", "--noise-passes", "2"]), pool, meta)
    try:
        run(0)
        failures.append("the released code's re-creation ran on the meta device: it no longer reads the device")
    except (RuntimeError, NotImplementedError, TypeError):
        pass
    return failures


# ------------------------------------------------------------------------------------------------- CLI
def size(text: str) -> tuple[int, int]:
    """``WxH`` -> (height, width), read by the CLI's size parser."""
    w, h = size_argument(text)
    return h, w


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; device-dependent defaults are filled in afterwards."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", help="default: deeplabv2_r101 on cuda, deeplabv2_tiny on cpu")
    p.add_argument("--crop", type=size, help="WxH; default 512x512 on cuda, 128x128 on cpu")
    p.add_argument("--target-size", type=size, help="WxH of the target images (the prior's size); default 2048x1024")
    p.add_argument("--batch", type=int, default=2, help="images per domain")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument(
        "--config",
        type=Path,
        help="time this packaged config (e.g. configs/gta2cs/hrda_camix.yaml) instead of configs/gta2cs/<method>.yaml; "
        "its own network unless --model; one row, named after the file; not with --baseline or --check-numerics",
    )
    p.add_argument("--noise-passes", type=int, default=8)
    p.add_argument("--amp", choices=["none", "bf16"], default="bf16", help="fast path autocast (default bf16)")
    p.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=True, help="fast path (default on)"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the student and teacher forwards")
    p.add_argument(
        "--teacher-passes",
        default="auto",
        help="train.teacher_passes of the fast path: auto (per device), separate, batched or passes per forward",
    )
    p.add_argument("--baseline", action="store_true", help="also time the released code's iteration")
    p.add_argument(
        "--baseline-methods", nargs="+", choices=METHODS, help="methods timed in --baseline mode (default: all)"
    )
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--check-numerics", action="store_true", help="fp32 vs bf16+channels_last losses")
    p.add_argument("--numerics-only", action="store_true", help="skip the timings")
    p.add_argument("--numerics-iters", type=int, default=10)
    p.add_argument("--numerics-pretrain", type=int, default=300, help="at most this many warm-start iterations")
    p.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    p.add_argument("--self-check", action="store_true", help="check the baseline's helpers and exit (1 on failure)")
    p.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    args.command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/train_step.py", *given])
    cuda = args.device == "cuda"
    if args.config is not None:
        if args.baseline or args.check_numerics or args.numerics_only:
            p.error("--config times the library's step only: drop --baseline and --check-numerics")
        if not args.config.is_file():
            p.error(f"--config {args.config}: no such file (a config under configs/, e.g. configs/gta2cs/hrda.yaml)")
        cfg = load_config(args.config)
        args.methods = [args.config.stem]
        args.network = args.model or cfg.model.name
        args.crop = args.crop or (cfg.data.crop[1], cfg.data.crop[0])
    else:
        args.model = args.model or ("deeplabv2_r101" if cuda else "deeplabv2_tiny")
        args.network = args.model
    args.crop = args.crop or ((512, 512) if cuda else (128, 128))
    args.target_size = args.target_size or ((1024, 2048) if cuda else (2 * args.crop[0], 2 * args.crop[1]))
    return args


def main(argv: list[str] | None = None) -> None:
    """Build the data, time, check numerics, print and record."""
    args = parse_args(argv)
    if args.self_check:
        failures = self_check()
        print("\n".join(failures) or "self-check passed")
        sys.exit(1 if failures else 0)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True  # as Trainer's default (and the measurement of the released code)
    pool = make_pool(args.batch, args.crop, args.target_size, device)
    results = [] if args.numerics_only else benchmark(args, pool, device)
    numerics = check_numerics(args, pool, device) if args.check_numerics or args.numerics_only else None
    text = report(args, device, results, numerics)
    print(text)
    if not args.no_record:
        record(text, args.results)
        print(f"appended to {args.results}")


if __name__ == "__main__":
    main()
