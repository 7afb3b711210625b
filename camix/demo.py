"""The SynthCity demo end to end: generate (if missing), pretrain, adapt with CAMix, evaluate, report.

Two runs, as on the real benchmarks where DeepLab-v2 starts from pretrained weights: ``<out>/pretrain`` trains
the small model on the labelled source only (the SynthCity stand-in for ImageNet/COCO weights), then
``<out>/camix`` adapts it to the target with CAMix. The report compares the two on the target val split.
Finished stages are reused when the demo runs again with the same settings. ``camix demo``
(:mod:`camix.commands.demo_cmd`) is the command line of :func:`run_demo`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camix.config import Config, load_config

PRETRAIN_CONFIG = "configs/synthcity/pretrain.yaml"
DEMO_CONFIG = "configs/synthcity/camix.yaml"
DATA_DEFAULTS: dict[str, Any] = {"seed": 0, "num_source": 400, "num_target_train": 400, "num_target_val": 100}


@dataclass(frozen=True)
class DemoResult:
    """What a finished demo produced: the two configs, their run summaries, the stage timings and the report."""

    pretrain: Config
    adapt: Config
    summaries: list[dict[str, Any]]
    timings: dict[str, float]
    report: Path


def demo_configs(
    data: Path, out: Path, config: str = DEMO_CONFIG, overrides: Sequence[str] = ()
) -> tuple[Config, Config]:
    """The pretraining and adaptation configs with the demo's data and output folders filled in."""
    roots = [
        f"data.source.root={data / 'gta'}",
        f"data.target.root={data / 'cityscapes'}",
        f"data.val.root={data / 'cityscapes'}",
    ]
    pretrain = load_config(PRETRAIN_CONFIG, [*roots, "data.target=null", f"out_dir={out / 'pretrain'}"])
    init = Path(pretrain.out_dir) / "checkpoints" / "last.pt"
    adapt = load_config(config, [*roots, f"model.pretrained={init}", f"out_dir={out / 'camix'}", *overrides])
    return pretrain, adapt


def ensure_synthcity(folder: Path, progress: bool) -> dict[str, Any]:
    """Generate SynthCity into ``folder`` unless the same dataset (parameters and generator version) is there."""
    from camix.data.synthcity import ensure, is_current

    if is_current(folder, **DATA_DEFAULTS):
        print(f"SynthCity found in {folder}")
    else:
        print(f"generating SynthCity in {folder} ...")
    return dict(ensure(folder, progress=progress, **DATA_DEFAULTS))


def train_stage(cfg: Config, title: str, progress: bool) -> dict[str, Any] | None:
    """Train one stage (or reuse it when finished with the same config); None when interrupted."""
    from camix.rundir import RunDir
    from camix.study import continue_run, is_finished

    summary = RunDir(Path(cfg.out_dir)).summary()
    if summary is not None and is_finished(cfg):
        print(f"{title}: reusing the finished run in {cfg.out_dir}")
        return summary
    print(f"{title}: {cfg.train.iterations} iterations -> {cfg.out_dir}")
    summary = continue_run(cfg, progress=progress)
    if "interrupted" in summary:
        print(f"demo interrupted; run camix demo again to continue from {cfg.out_dir}")
        return None
    return summary


def run_demo(
    data: Path, out: Path, config: str = DEMO_CONFIG, overrides: Sequence[str] = (), *, progress: bool = True
) -> DemoResult | None:
    """Generate (if missing), pretrain, adapt and write ``<out>/REPORT.md``; None when a stage was interrupted."""
    started = time.perf_counter()
    pretrain, adapt = demo_configs(data, out, config, overrides)
    ensure_synthcity(data, progress)
    timings = {"data": time.perf_counter() - started}
    summaries = []
    for cfg, title in ((pretrain, "1/2 source-only pretraining"), (adapt, "2/2 adaptation")):
        t0 = time.perf_counter()
        summary = train_stage(cfg, title, progress)
        if summary is None:
            return None
        summaries.append(summary)
        timings[title] = time.perf_counter() - t0
    report = out / "REPORT.md"
    write_report(report, pretrain, adapt, summaries, timings)
    return DemoResult(pretrain, adapt, summaries, timings, report)


QUALITATIVE = "qualitative.png"
CURVE = "curve.png"


def write_pictures(folder: Path, pretrain: Config, adapt: Config, method: str) -> None:
    """The report's two figures: ``qualitative.png`` (4 target val images: image, ground truth, the source-only
    model's and the adapted model's predictions; the paper's Figure 3) and ``curve.png`` (mIoU19 of the adapted
    student at each evaluation against the source-only model's; the paper's Figure 4)."""
    from camix.report import qualitative_grid
    from camix.runs import load_run
    from camix.visualize import Curve, plot_curves_png

    before, after = load_run(pretrain.out_dir, label="source only"), load_run(adapt.out_dir, label=method)
    qualitative_grid([before, after], adapt, folder / QUALITATIVE, n_images=4, tile_width=224)
    x = [0, *(r["iteration"] for r in after.evals)]
    start = float(before.evals[-1]["eval/miou19"])
    curves = [
        Curve(method, x, [start, *(float(r["eval/miou19"]) for r in after.evals)], [], []),
        Curve("source only (its final model)", [x[0], x[-1]], [start, start], [], []),
    ]
    plot_curves_png(curves, folder / CURVE, ylabel="mIoU19 on the target val split (%)", title="adaptation")


def write_report(
    path: Path, pretrain: Config, adapt: Config, summaries: list[dict[str, Any]], timings: dict[str, float]
) -> None:
    """A short markdown report of the demo: setup, scores before and after adaptation, the qualitative grid and
    the adaptation curve (PNG files beside it), per-class IoU, timings."""
    from camix.io import atomic_write_text
    from camix.methods import method_title

    before, after = (s["final"] for s in summaries)
    method = method_title(adapt.method)
    write_pictures(path.parent, pretrain, adapt, method)
    rows = "\n".join(f"| {name} | {before['iou'][name]:.1f} | {value:.1f} |" for name, value in after["iou"].items())
    times = "\n".join(f"| {name} | {seconds:.0f} s |" for name, seconds in timings.items())
    text = f"""# camix demo: {method} on SynthCity

Source `{adapt.data.source.root}` (GTA5 layout, labelled), target `{
        adapt.data.target.root if adapt.data.target else "-"
    }` (Cityscapes layout; train split unlabelled, val split for scores). Model `{adapt.model.name}`.

1. `{pretrain.out_dir}`: source-only from scratch, {pretrain.train.iterations} iterations (the stand-in for the
   ImageNet/COCO weights the paper starts from).
2. `{adapt.out_dir}`: {method} from that model, {adapt.train.iterations} iterations, crops
   {adapt.data.crop[0]}x{adapt.data.crop[1]}, batch {adapt.data.batch_size} + {adapt.data.batch_size}, seed {
        adapt.seed
    }.

Scores of the student's last checkpoint (`{summaries[1]["checkpoint"]}`) on the target val split:

| metric | source only | {method} |
|---|---|---|
| mIoU19 | {before["miou19"]:.1f} | {after["miou19"]:.1f} |
| mIoU16 | {before["miou16"]:.1f} | {after["miou16"]:.1f} |
| mIoU13 | {before["miou13"]:.1f} | {after["miou13"]:.1f} |

## Pictures

Four target val images: the image, its ground truth, the source-only model's prediction and {method}'s (the
paper's Figure 3; colours are the Cityscapes palette, legend below the grid):

![qualitative results]({QUALITATIVE})

mIoU19 of the {method} student at each evaluation, starting from the source-only model (the paper's Figure 4):

![adaptation curve]({CURVE})

## Per-class IoU (%)

| class | source only | {method} |
|---|---|---|
{rows}

## Time

| stage | wall time |
|---|---|
{times}

Resolved configs: `{pretrain.out_dir}/config.yaml`, `{adapt.out_dir}/config.yaml`; metrics logs next to them.
Compare methods with `camix study configs/synthcity/study.yaml` (the paper's Tables 2, 4, 5, 6; docs/synthcity.md
says what SynthCity can and cannot tell).
"""
    atomic_write_text(path, text)
