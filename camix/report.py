"""Tables and figures of training runs: the paper's Tables 1-6 and Figures 3-4 from run directories.

A run directory (written by ``camix train``) holds ``config.yaml`` (the resolved config), ``metrics.jsonl``
(loss and eval records) and ``checkpoints/``. Runs whose resolved configs are equal apart from ``seed`` and
``out_dir`` form a :class:`Group` (one method, several seeds) reported as mean ± sample std over seeds.

Example (a study script)::

    runs = [load_run(d) for d in ["runs/mt", "runs/camix_s0", "runs/camix_s1"]]
    groups = group_runs(runs)
    print(comparison_table(groups))            # Tables 2, 4, 5, 6: method, mIoU, gain over the first row
    print(per_class_table(groups))             # Table 1: per-class IoU
    plot_curves(groups, "curves.png")          # Figure 4: mIoU against iteration
    qualitative_grid([g.runs[0] for g in groups], None, "qualitative.png")   # Figure 3

Labels: a :data:`Labeler` maps (run directory, config dict) to a name. :func:`dir_label` (the default) uses the
run directory's name without a ``_seedN``/``_sN`` suffix: the packaged configs set ``out_dir`` to
``runs/<benchmark>/<config stem>``, so this is the config file's stem. :func:`method_label` names the method
as in the paper (``Mean Teacher``, ``+ DACS``, ``+ CAMix``...). Pass ``label=`` to :func:`load_run` to override.
Groups that end up with the same label get the config keys that tell them apart appended.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camix.evaluate import METRICS
from camix.io import atomic_write_text, json_safe
from camix.labels import CLASS_NAMES
from camix.runs import (
    GROUP_IGNORE,
    LABELERS,
    Group,
    Labeler,
    ReportError,
    Run,
    class_names_of_scores,
    differences,
    dir_label,
    find_group,
    group_runs,
    load_run,
    method_label,
    read_evals,
)
from camix.tables import METRIC_TITLES, TableLayout, csv_text, format_number, iou_table, layout_for, markdown_table
from camix.visualize import (
    Curve,
    label_to_rgb,
    palette_legend,
    plot_curves_png,
    resize_tile,
    save_png,
    stack_vertically,
    titled_grid,
    to_rgb_uint8,
)

__all__ = [  # runs and groups live in camix.runs; re-exported here as one reporting API
    "GROUP_IGNORE",
    "LABELERS",
    "Group",
    "Labeler",
    "ReportError",
    "Run",
    "comparison_table",
    "dir_label",
    "group_curve",
    "group_runs",
    "load_run",
    "method_label",
    "per_class_table",
    "plot_curves",
    "qualitative_grid",
    "read_evals",
    "write_report",
]

if TYPE_CHECKING:
    from camix.config import Config


# ----- tables --------------------------------------------------------------------------------------------------
def default_metric(groups: Sequence[Group]) -> str:
    """``miou13`` when every run adapts from SYNTHIA (the paper's Tables 3 and 6), else ``miou19``."""
    sources = {run.config.get("data", {}).get("source", {}).get("name") for g in groups for run in g.runs}
    return "miou13" if sources == {"synthia"} else "miou19"


def comparison_rows(
    groups: Sequence[Group], baseline: str | None = None, metric: str = "miou19", which: str = "last"
) -> list[dict[str, Any]]:
    """One dict per group: label, n, seeds, mean, std, gain over the baseline, all mIoUs, per-class IoU, runs."""
    base_mean = find_group(groups, baseline).mean_std(metric, which)[0]
    rows = []
    for group in groups:
        mean, std = group.mean_std(metric, which)
        averaged = group.mean_scores(which)
        rows.append(
            {
                "method": group.label,
                "n": group.n,
                "seeds": [run.seed for run in group.runs],
                "metric": metric,
                "mean": mean,
                "std": std,
                "gain": mean - base_mean,
                "checkpoint": group.checkpoint_note(which),
                **{m: averaged[m] for m in METRICS},
                "iou": averaged["iou"],
                "runs": [str(run.path) for run in group.runs],
            }
        )
    return rows


def mean_pm_std(mean: float, std: float) -> str:
    """``55.2 ± 0.4``, or ``55.2`` when there is no std (one run)."""
    return format_number(mean) if math.isnan(std) else f"{format_number(mean)} ± {format_number(std)}"


def comparison_table(
    groups: Sequence[Group], baseline: str | None = None, metric: str = "miou19", which: str = "last"
) -> str:
    """Markdown in the style of the paper's Tables 2, 4, 5, 6: method, mIoU (mean ± std), gain, n, checkpoint."""
    base = find_group(groups, baseline).label
    body = [
        [
            row["method"],
            mean_pm_std(row["mean"], row["std"]),
            "-" if row["method"] == base else f"{row['gain']:+.1f}",
            str(row["n"]),
            row["checkpoint"],
        ]
        for row in comparison_rows(groups, baseline, metric, which)
    ]
    return markdown_table(["method", f"{METRIC_TITLES[metric]} (%)", "gain (%)", "n", "checkpoint"], body)


def per_class_table(groups: Sequence[Group], which: str = "last", layout: TableLayout | None = None) -> str:
    """Markdown in the layout of the paper's Table 1 (Table 3 for SYNTHIA): mean per-class IoU, then mIoUs."""
    rows = [(g.label, g.mean_scores(which)) for g in groups]
    if layout is None:
        names = class_names_of_scores(rows[0][1]) if rows else CLASS_NAMES
        layout = layout_for("synthia" if default_metric(groups) == "miou13" else "gta5", names)
    return iou_table(rows, layout)


# ----- figures -------------------------------------------------------------------------------------------------
def group_curve(group: Group, metric: str = "miou19") -> Curve:
    """Mean, min and max of ``metric`` over the group's runs at every evaluated iteration."""
    by_iteration: dict[int, list[float]] = {}
    for run in group.runs:
        for record in run.evals:
            by_iteration.setdefault(int(record["iteration"]), []).append(float(record[f"eval/{metric}"]))
    xs = sorted(by_iteration)
    return Curve(
        group.label,
        xs,
        [statistics.fmean(by_iteration[x]) for x in xs],
        [min(by_iteration[x]) for x in xs],
        [max(by_iteration[x]) for x in xs],
        group.n,
    )


def settling_table(curves: Sequence[Curve], threshold: float = 1.0) -> str:
    """Markdown: how much each curve's mean over seeds still moves in the last quarter of training.

    The last quarter is every evaluation at an iteration of at least 3/4 of the curve's last one; a curve has
    settled when its mean moves by less than ``threshold`` points over it (max - min).
    """
    body = []
    for curve in curves:
        end = max(curve.x)
        late = [m for x, m in zip(curve.x, curve.mean, strict=True) if x >= 0.75 * end]
        moves = max(late) - min(late)
        xs = [x for x in curve.x if x >= 0.75 * end]
        trail = " ".join(format_number(m) for m in late)
        settled = "yes" if moves < threshold else "no"
        body.append([curve.label, f"{xs[0]}-{end}", trail, format_number(moves), settled])
    headers = ["method", "last quarter (it.)", "mean over seeds at each evaluation", "moves by", "settled"]
    return markdown_table(headers, body)


def plot_curves(groups: Sequence[Group], path: str | Path, metric: str = "miou19", title: str = "") -> None:
    """The paper's Figure 4: ``metric`` on the validation split against iteration, one line per group (PNG)."""
    curves = [group_curve(g, metric) for g in groups]
    plot_curves_png(curves, path, ylabel=f"{METRIC_TITLES[metric]} (%)", title=title or "adaptation curves")


def qualitative_grid(
    runs: Sequence[Run],
    cfg: Config | None,
    path: str | Path,
    n_images: int = 3,
    *,
    which: str = "last",
    labels: Sequence[str] | None = None,
    tile_width: int = 384,
) -> list[str]:
    """The paper's Figure 3: image, ground truth and each run's prediction for ``n_images`` validation images.

    Args:
        runs: one column each, predicted with its ``checkpoints/<which>.pt`` (student) and its own saved config.
        cfg: whose ``data.val`` (and ``eval``) to use; None takes the first run's config.
        path: the PNG to write (a palette legend is drawn below the grid).
        n_images: rows, evenly spaced over the validation split.
        which: ``last`` or ``best``.
        labels: column titles (default: the runs' labels).
        tile_width: every tile is scaled to this width.

    Returns:
        The names of the images shown.
    """
    import torch

    from camix.checkpoint import load_for_inference
    from camix.config import load_config
    from camix.data.datasets import build_dataset
    from camix.evaluate import predict_logits
    from camix.rundir import RunDir
    from camix.runtime import select_device

    cfg = cfg if cfg is not None else load_config(RunDir(runs[0].path).config_file)
    dataset = build_dataset(cfg.data.val, crop=None, train=False)
    count = min(n_images, len(dataset))  # type: ignore[arg-type]
    items = [dataset[round(i * (len(dataset) - 1) / max(count - 1, 1))] for i in range(count)]  # type: ignore[arg-type]
    rows = [[resize_tile(to_rgb_uint8(it["image"]), tile_width, nearest=False)] for it in items]
    for row, item in zip(rows, items, strict=True):
        row.append(resize_tile(label_to_rgb(item["label"]), tile_width, nearest=True))
    device = select_device(cfg.train.device)
    for run in runs:
        model = load_for_inference(run.checkpoint(which))[1].to(device)
        for row, item in zip(rows, items, strict=True):
            with torch.no_grad():
                size = (int(item["label"].shape[-2]), int(item["label"].shape[-1]))
                image = item["image"][None].to(device)
                pred = predict_logits(model, image, size, cfg.eval.flip, cfg.eval.sliding_window).argmax(1)[0]
            row.append(resize_tile(label_to_rgb(pred), tile_width, nearest=True))
    grid = titled_grid(rows, ["image", "ground truth", *(labels or [r.label for r in runs])])
    save_png(stack_vertically([grid, palette_legend(grid.width)]), path)
    return [str(item["name"]) for item in items]


# ----- the whole report ----------------------------------------------------------------------------------------
def write_report(
    groups: Sequence[Group],
    out: str | Path,
    *,
    baseline: str | None = None,
    metric: str | None = None,
    which: str = "last",
    title: str = "camix report",
    table: str = "table",
    n_images: int = 3,
    figures: bool = True,
) -> list[Path]:
    """Write ``report.md``, ``<table>.csv``, ``<table>.json`` and (``figures``) ``curves.png``, ``qualitative.png``."""
    folder = Path(out)
    metric = metric or default_metric(groups)
    rows = comparison_rows(groups, baseline, metric, which)
    written = [folder / f"{table}.csv", folder / f"{table}.json"]
    atomic_write_text(written[0], rows_csv(rows))
    atomic_write_text(written[1], json.dumps(json_safe(rows), indent=2) + "\n")
    shown: list[str] = []
    if figures:
        plot_curves(groups, folder / "curves.png", metric, title)
        firsts = [g.runs[0] for g in groups]
        shown = qualitative_grid(firsts, None, folder / "qualitative.png", n_images, which=which,
                                 labels=[g.label for g in groups])  # fmt: skip
        written += [folder / "curves.png", folder / "qualitative.png"]
    text = report_markdown(groups, baseline=baseline, metric=metric, which=which, title=title, shown=shown)
    atomic_write_text(folder / "report.md", text)
    return [folder / "report.md", *written]


def rows_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The comparison rows as CSV: method, n, seeds, mean, std, gain, checkpoint, mIoU19/16/13, per-class IoU."""
    names = class_names_of_scores(rows[0]) if rows else CLASS_NAMES
    header = ["method", "n", "seeds", "metric", "mean", "std", "gain", "checkpoint", *METRICS, *names]
    body = [[row[k] for k in header[:11]] + [row["iou"].get(c) for c in names] for row in rows]
    return csv_text([header, *body])


def report_markdown(
    groups: Sequence[Group], *, baseline: str | None, metric: str, which: str, title: str, shown: Sequence[str]
) -> str:
    """The text of ``report.md``."""
    base = find_group(groups, baseline)
    scored = "last checkpoint" if which == "last" else "best-on-val checkpoint (best.pt)"
    parts = [
        f"# {title}\n",
        f"{sum(g.n for g in groups)} runs in {len(groups)} groups. Scores: the student's {scored} of each run as "
        "evaluated on `data.val` during training (`metrics.jsonl`); mean ± sample standard deviation over seeds "
        f"(n runs). Gain: over **{base.label}**.\n",
        f"## Comparison\n\n{comparison_table(groups, baseline, metric, which)}\n",
        f"## Per-class IoU (%)\n\n{per_class_table(groups, which)}\n",
    ]
    if shown:
        parts.append(f"## Adaptation curves\n\n![{METRIC_TITLES[metric]} against iteration](curves.png)\n")
        parts.append(f"## Qualitative results\n\n![predictions](qualitative.png)\n\nImages: {', '.join(shown)}.\n")
    parts.append("## Runs\n\n" + runs_table(groups, metric, which) + "\n")
    parts.append("## Config differences from the baseline\n\n" + differences_list(groups, base) + "\n")
    return "\n".join(parts)


def runs_table(groups: Sequence[Group], metric: str, which: str) -> str:
    """Every run: its group, folder, seed, scored iteration and score."""
    body = [
        [g.label, str(r.path), str(r.seed), str(r.scores(which)["iteration"]), format_number(r.scores(which)[metric])]
        for g in groups
        for r in g.runs
    ]
    return markdown_table(["method", "run", "seed", "iteration", f"{METRIC_TITLES[metric]} (%)"], body)


def differences_list(groups: Sequence[Group], base: Group) -> str:
    """One bullet per group with the config keys that differ from the baseline group."""
    lines = []
    for group in groups:
        if group is base:
            continue
        diff = differences(group, base)
        lines.append(f"- **{group.label}**: " + (", ".join(f"`{k}={v}`" for k, v in sorted(diff.items())) or "none"))
    return "\n".join(lines) or "(one group only)"
