"""``camix demo``: SynthCity end to end — generate (if missing), train CAMix, evaluate, write a report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from camix.config import Config, load_config

HELP = "the whole method in minutes on a CPU: SynthCity -> CAMix training -> evaluation -> markdown report"
DEMO_CONFIG = "configs/synthcity/camix.yaml"
DATA_DEFAULTS: dict[str, Any] = {"seed": 0, "num_source": 400, "num_target_train": 400, "num_target_val": 100}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--out``, ``--iterations``, ``--set``."""
    parser.add_argument("--data", default="data/synthcity", metavar="DIR", help="SynthCity folder (made if missing)")
    parser.add_argument("--out", default="runs/demo", metavar="DIR", help="run directory for the demo")
    parser.add_argument("--config", default=DEMO_CONFIG, metavar="FILE", help="config to train (default: CAMix)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def demo_config(args: argparse.Namespace) -> Config:
    """The demo's config with its data and output folders filled in."""
    data = Path(args.data)
    overrides = [
        f"out_dir={args.out}",
        f"data.source.root={data / 'gta'}",
        f"data.target.root={data / 'cityscapes'}",
        f"data.val.root={data / 'cityscapes'}",
        *args.overrides,
    ]
    return load_config(args.config, overrides)


def ensure_synthcity(folder: Path, progress: bool) -> dict[str, Any]:
    """Generate SynthCity into ``folder`` unless the same dataset (parameters and generator version) is there."""
    from camix.data.synthcity import ensure, is_current

    if is_current(folder, **DATA_DEFAULTS):
        print(f"SynthCity found in {folder}")
    else:
        print(f"generating SynthCity in {folder} ...")
    return dict(ensure(folder, progress=progress, **DATA_DEFAULTS))


def run(args: argparse.Namespace) -> int:
    """Generate, train, evaluate, report."""
    from camix.train import train

    started = time.perf_counter()
    cfg = demo_config(args)
    ensure_synthcity(Path(args.data), not args.no_progress)
    generated = time.perf_counter()
    summary = train(cfg, progress=not args.no_progress)
    if "interrupted" in summary:
        print(f"demo interrupted; resume with: camix train -c {cfg.out_dir}/config.yaml --resume auto")
        return 130
    report = Path(cfg.out_dir) / "REPORT.md"
    timings = {"data": generated - started, "train": time.perf_counter() - generated}
    write_report(report, cfg, summary, timings)
    print(f"\ndone in {sum(timings.values()) / 60:.1f} min: mIoU19 {summary['final']['miou19']:.1f} on SynthCity val")
    print(f"report:      {report}\ncheckpoint:  {summary['checkpoint']}\nmetrics:     {cfg.out_dir}/metrics.jsonl")
    return 0


def write_report(path: Path, cfg: Config, summary: dict[str, Any], timings: dict[str, float]) -> None:
    """A short markdown report of the demo run."""
    from camix.io import atomic_write_text

    final = summary["final"]
    rows = "\n".join(f"| {name} | {value:.1f} |" for name, value in final["iou"].items())
    text = f"""# camix demo: {cfg.method.mix if cfg.method.name == "mean_teacher" else cfg.method.name} on SynthCity

Source: `{cfg.data.source.root}` (GTA5 layout), target: `{cfg.data.target.root if cfg.data.target else "-"}`
(Cityscapes layout). Model `{cfg.model.name}`, {cfg.train.iterations} iterations,
crops {cfg.data.crop[0]}x{cfg.data.crop[1]}, batch {cfg.data.batch_size} + {cfg.data.batch_size}, seed {cfg.seed}.

Evaluated checkpoint: `{summary["checkpoint"]}` (last, student).

| metric | value |
|---|---|
| mIoU19 | {final["miou19"]:.1f} |
| mIoU16 | {final["miou16"]:.1f} |
| mIoU13 | {final["miou13"]:.1f} |
| best mIoU19 during training | {summary["best"]["miou19"]:.1f} (iteration {summary["best"]["iteration"]}) |
| data preparation | {timings["data"]:.0f} s |
| training + evaluation | {timings["train"]:.0f} s |

## Per-class IoU (%)

| class | IoU |
|---|---|
{rows}

Resolved config: `{cfg.out_dir}/config.yaml`; metrics log: `{cfg.out_dir}/metrics.jsonl`.
"""
    atomic_write_text(path, text)
