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
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from camix.data.labels import CLASS_NAMES
from camix.errors import CamixError
from camix.evaluate import (
    METRIC_TITLES,
    METRICS,
    TableLayout,
    csv_text,
    format_number,
    iou_table,
    json_safe,
    layout_for,
    markdown_table,
)
from camix.io import atomic_write_text
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

if TYPE_CHECKING:
    from camix.config import Config

Labeler = Callable[[Path, Mapping[str, Any]], str]
GROUP_IGNORE: tuple[str, ...] = ("seed", "out_dir")
SEED_SUFFIX = re.compile(r"[_-](seed|s)\d+$")
MIX_LABELS: dict[str, str] = {
    "none": "Mean Teacher",
    "cutmix": "+ CutMix",
    "cowmix": "+ CowMix",
    "classmix": "+ DACS",
    "inverse_classmix": "+ iDACS",
    "camix": "+ CAMix",
}


class ReportError(CamixError):
    """A run directory that cannot be reported."""


# ----- labels --------------------------------------------------------------------------------------------------
def dir_label(run_dir: Path, config: Mapping[str, Any]) -> str:
    """The run directory's name without a trailing seed suffix (``camix_seed1`` -> ``camix``)."""
    name = Path(run_dir).resolve().name
    return SEED_SUFFIX.sub("", name) or name


def method_label(run_dir: Path, config: Mapping[str, Any]) -> str:
    """The paper's name of the method: ``Source only``, ``Oracle``, ``Mean Teacher``, ``+ CutMix`` ... ``+ CAMix``."""
    method, data = config.get("method", {}), config.get("data", {})
    if method.get("name") == "source_only":
        trains_on_target = data.get("source", {}).get("name") == data.get("val", {}).get("name")
        return "Oracle" if trains_on_target else "Source only"
    return MIX_LABELS.get(method.get("mix", "none"), str(method.get("mix")))


LABELERS: dict[str, Labeler] = {"dir": dir_label, "method": method_label}


# ----- runs and groups -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One training run: its resolved config, its evaluation records (one per iteration, sorted) and a label."""

    path: Path
    config: dict[str, Any]
    evals: tuple[dict[str, Any], ...]
    label: str

    @property
    def seed(self) -> Any:
        """The run's ``seed``."""
        return self.config.get("seed")

    def checkpoint(self, which: str = "last") -> Path:
        """``checkpoints/last.pt`` or ``checkpoints/best.pt``."""
        return self.path / "checkpoints" / f"{which}.pt"

    def scores(self, which: str = "last") -> dict[str, Any]:
        """The eval record of the last iteration (``last``) or of the best mIoU19 (``best``, i.e. ``best.pt``)."""
        record = self.evals[-1] if which == "last" else max(self.evals, key=lambda r: _nan_low(r["eval/miou19"]))
        return {
            "iteration": record["iteration"],
            **{m: float(record.get(f"eval/{m}", math.nan)) for m in METRICS},
            "iou": {name: float(v) for name, v in record.get("eval/iou", {}).items()},
        }


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def read_evals(metrics_file: Path, network: str = "student") -> tuple[dict[str, Any], ...]:
    """The eval records of ``metrics.jsonl`` for ``network``, the latest per iteration, sorted by iteration."""
    by_iteration: dict[int, dict[str, Any]] = {}
    for line in metrics_file.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a torn last line after a crash
            continue
        if "eval/miou19" in record and record.get("eval/model", "student") == network:
            by_iteration[int(record["iteration"])] = record
    return tuple(by_iteration[k] for k in sorted(by_iteration))


def load_run(run_dir: str | Path, label: str | None = None, labeler: Labeler = dir_label) -> Run:
    """Read a run directory.

    Raises:
        ReportError: no ``config.yaml``/``metrics.jsonl``, or no evaluation record yet.
    """
    path = Path(run_dir)
    config_file, metrics_file = path / "config.yaml", path / "metrics.jsonl"
    for needed in (config_file, metrics_file):
        if not needed.is_file():
            raise ReportError(f"{path} is not a camix run directory: {needed.name} is missing")
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    evals = read_evals(metrics_file)
    if not evals:
        raise ReportError(f"{metrics_file} has no evaluation yet; finish the run or set train.eval_every")
    return Run(path, config, evals, label if label is not None else labeler(path, config))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@dataclass(frozen=True)
class Group:
    """Runs of one config that differ only in seed (and output folder)."""

    label: str
    runs: tuple[Run, ...]

    @property
    def n(self) -> int:
        """Number of runs (seeds)."""
        return len(self.runs)

    def values(self, metric: str = "miou19", which: str = "last") -> list[float]:
        """``metric`` of every run."""
        return [run.scores(which)[metric] for run in self.runs]

    def mean_std(self, metric: str = "miou19", which: str = "last") -> tuple[float, float]:
        """Mean and sample standard deviation (n-1) over runs; the std is nan for a single run."""
        values = self.values(metric, which)
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan

    def mean_scores(self, which: str = "last") -> dict[str, Any]:
        """Scores averaged over runs (per-class IoU ignoring runs where the class was absent)."""
        scores = [run.scores(which) for run in self.runs]
        per_class = {name: _nanmean([s["iou"].get(name, math.nan) for s in scores]) for name in CLASS_NAMES}
        return {**{m: _nanmean([s[m] for s in scores]) for m in METRICS}, "iou": per_class}

    def checkpoint_note(self, which: str = "last") -> str:
        """``last @ 1500`` / ``best-on-val @ 1000, 1500`` (the iterations of the scored checkpoints)."""
        iterations = sorted({run.scores(which)["iteration"] for run in self.runs})
        return f"{'last' if which == 'last' else 'best-on-val'} @ {', '.join(map(str, iterations))}"


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan


def group_runs(runs: Sequence[Run], ignore: Sequence[str] = GROUP_IGNORE) -> list[Group]:
    """Group runs whose flattened configs agree on every key except ``ignore``; groups keep the runs' order."""
    keyed: dict[str, list[Run]] = {}
    for run in runs:
        kept = {k: v for k, v in flatten(run.config).items() if k.split(".")[0] not in ignore and k not in ignore}
        keyed.setdefault(json.dumps(kept, sort_keys=True, default=str), []).append(run)
    return disambiguate([Group(members[0].label, tuple(members)) for members in keyed.values()])


def differences(group: Group, other: Group) -> dict[str, Any]:
    """Config keys whose value in ``group`` differs from ``other`` (seed and out_dir excluded)."""
    mine, theirs = flatten(group.runs[0].config), flatten(other.runs[0].config)
    return {k: v for k, v in mine.items() if k not in GROUP_IGNORE and theirs.get(k, object()) != v}


def disambiguate(groups: Sequence[Group]) -> list[Group]:
    """Append ``[key=value, ...]`` to labels that several groups share, from the keys that set them apart."""
    result = []
    for group in groups:
        twins = [g for g in groups if g.label == group.label and g is not group]
        if not twins:
            result.append(group)
            continue
        keys = sorted({k for twin in twins for k in differences(group, twin)})
        values = flatten(group.runs[0].config)
        note = ", ".join(f"{k}={values.get(k)}" for k in keys) or "same config"
        result.append(Group(f"{group.label} [{note}]", group.runs))
    return result


def find_group(groups: Sequence[Group], label: str | None) -> Group:
    """The group named ``label`` (None: the first)."""
    if label is None:
        return groups[0]
    for group in groups:
        if group.label == label:
            return group
    raise ReportError(f"--baseline {label!r} is not a row; choose one of: {', '.join(g.label for g in groups)}")


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
    if layout is None:
        layout = layout_for("synthia" if default_metric(groups) == "miou13" else "gta5")
    return iou_table([(g.label, g.mean_scores(which)) for g in groups], layout)


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

    from camix.config import load_config
    from camix.data.datasets import build_dataset
    from camix.evaluate import predict_logits
    from camix.predict import load_for_inference
    from camix.runtime import select_device

    cfg = cfg if cfg is not None else load_config(runs[0].path / "config.yaml")
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
    header = ["method", "n", "seeds", "metric", "mean", "std", "gain", "checkpoint", *METRICS, *CLASS_NAMES]
    body = [[row[k] for k in header[:11]] + [row["iou"][c] for c in CLASS_NAMES] for row in rows]
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
