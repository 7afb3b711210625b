"""Seconds per training iteration of DACS and CAMix on SynthCity: deeplabv2_tiny against daformer_mittiny.

Each row builds the ``Trainer`` of a packaged SynthCity config (``dacs``, ``camix``: deeplabv2_tiny with SGD;
``daformer``, ``daformer_camix``: the small DAFormer network with DAFormer's recipe, i.e. AdamW, warm-up, Rare
Class Sampling and the feature distance) on a SynthCity folder and times its training iterations — loading the
batches (``data.workers`` 0, as the configs), the method's step, backward, optimiser step and EMA update — as
the median over ``--iters`` iterations after ``--warmup``. The networks start from random weights (the cost does
not depend on them). The Rare Class Sampling statistics and the spatial prior are cached in the data folder's
``.camix_cache/`` like in training, so point ``--data`` at a folder you may write into. The times are the
loop's own ``sec_per_iter`` (logged after every iteration, ``train.log_every=1``) of ``Trainer.fit`` stopped
after the timed iterations (a checkpoint is saved then, after the last timed one). Results are appended to
``benchmarks/RESULTS.md`` unless ``--no-record``.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/synthcity_networks.py --data data/synthcity --iters 40
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from camix.config import load_config
from camix.models import count_parameters
from camix.study import cpu_name
from camix.train import Trainer

RUNS = ("dacs", "camix", "daformer", "daformer_camix")
RESULTS = Path(__file__).with_name("RESULTS.md")


def time_run(name: str, data: Path, out: Path, iters: int, warmup: int, threads: int) -> dict[str, object]:
    """Median seconds per training iteration of configs/synthcity/<name>.yaml, with its network's size."""
    overrides = [
        f"out_dir={out / name}",
        "model.pretrained=null",
        f"data.source.root={data / 'gta'}",
        f"data.target.root={data / 'cityscapes'}",
        f"data.val.root={data / 'cityscapes'}",
        f"train.threads={threads}",
        f"train.iterations={iters + warmup + 1}",  # fit stops one before the end: no final evaluation
        "train.log_every=1",
        "train.eval_every=0",
        "train.checkpoint_every=0",
    ]
    cfg = load_config(f"configs/synthcity/{name}.yaml", overrides)
    trainer = Trainer(cfg, progress=False)
    params = count_parameters(trainer.model)
    trainer.fit(until=iters + warmup)
    logged = [r for r in trainer.run.metrics() if "sec_per_iter" in r]
    seconds = [r["sec_per_iter"] for r in logged if r["iteration"] > warmup]
    return {
        "run": name,
        "model": cfg.model.name,
        "optimizer": cfg.optim.optimizer,
        "params": params,
        "median": statistics.median(seconds),
        "min": min(seconds),
    }


def table(rows: list[dict[str, object]]) -> str:
    """A markdown table, with each run's cost relative to DACS on deeplabv2_tiny."""
    base = next((float(r["median"]) for r in rows if r["run"] == "dacs"), float("nan"))  # type: ignore[arg-type]
    lines = [
        "| run | network | optimiser | parameters | s / iteration (median) | min | x dacs |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        median = float(r["median"])  # type: ignore[arg-type]
        lines.append(
            f"| {r['run']} | {r['model']} | {r['optimizer']} | {int(r['params']):,} | {median:.3f} | "  # type: ignore[call-overload]
            f"{float(r['min']):.3f} | {median / base:.1f} |"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


def record(text: str, argv: list[str]) -> None:
    """Append a dated section (machine, versions, load, command) to benchmarks/RESULTS.md."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (
        f"\n## SynthCity: DACS and CAMix, deeplabv2_tiny vs daformer_mittiny ({datetime.date.today().isoformat()})\n\n"
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"load average {load:.1f} at the end (a shared machine: other processes ran meanwhile).\n"
        f"Command: `python {shlex.join(['benchmarks/synthcity_networks.py', *argv])}`\n\n"
    )
    with RESULTS.open("a", encoding="utf-8") as handle:
        handle.write(header + text + "\n")


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    """Time every run of ``--runs`` and print (and record) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synthcity"), help="a SynthCity folder")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as out:
        rows = [time_run(name, args.data, Path(out), args.iters, args.warmup, args.threads) for name in args.runs]
    text = table(rows)
    print(text)
    if not args.no_record:
        record(text, argv)
    return rows


if __name__ == "__main__":
    main()
