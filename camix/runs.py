"""Training runs on disk: their configs and evaluation records, labels, and groups of seeds.

A run directory (written by ``camix train``) holds ``config.yaml`` (the resolved config), ``metrics.jsonl``
(loss and eval records) and ``checkpoints/``. Runs whose resolved configs are equal apart from ``seed`` and
``out_dir`` form a :class:`Group` (one method, several seeds). Tables and figures of them: ``camix.report``.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from camix.errors import CamixError
from camix.evaluate import METRICS
from camix.labels import CLASS_NAMES
from camix.methods import paper_label
from camix.rundir import RunDir, eval_records, read_jsonl

Labeler = Callable[[Path, Mapping[str, Any]], str]
GROUP_IGNORE: tuple[str, ...] = ("seed", "out_dir", "train.tensorboard")  # settings that do not change results
SEED_SUFFIX = re.compile(r"[_-](seed|s)\d+$")


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
    trains_on_target = data.get("source", {}).get("name") == data.get("val", {}).get("name")
    return paper_label(str(method.get("name")), method.get("mix", "none"), trains_on_target)


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
    return eval_records(read_jsonl(metrics_file), network)


def load_run(run_dir: str | Path, label: str | None = None, labeler: Labeler = dir_label) -> Run:
    """Read a run directory.

    Raises:
        ReportError: no ``config.yaml``/``metrics.jsonl``, or no evaluation record yet.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"{path}: {'a file' if path.exists() else 'no such folder'}; give a run directory")
    run = RunDir(path)
    metrics_file = run.metrics_file
    for needed in (run.config_file, metrics_file):
        if not needed.is_file():
            raise ReportError(f"{path} is not a camix run directory: {needed.name} is missing")
    try:
        config = yaml.safe_load(run.config_file.read_text(encoding="utf-8")) or {}
        evals = run.evals()
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReportError(f"{path}: cannot read its config.yaml or metrics.jsonl ({reason})") from None
    if not isinstance(config, dict):
        raise ReportError(f"{run.config_file}: not a camix config (expected a mapping of keys)")
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
        names = class_names_of_scores(scores[0]) if scores else CLASS_NAMES
        per_class = {name: _nanmean([s["iou"].get(name, math.nan) for s in scores]) for name in names}
        return {**{m: _nanmean([s.get(m, math.nan) for s in scores]) for m in METRICS}, "iou": per_class}

    def checkpoint_note(self, which: str = "last") -> str:
        """``last @ 1500`` / ``best-on-val @ 1000, 1500`` (the iterations of the scored checkpoints)."""
        iterations = sorted({run.scores(which)["iteration"] for run in self.runs})
        return f"{'last' if which == 'last' else 'best-on-val'} @ {', '.join(map(str, iterations))}"


def class_names_of_scores(scores: Mapping[str, Any]) -> tuple[str, ...]:
    """The class names of an evaluation's scores: the 19 Cityscapes classes, or a folder dataset's (in its order)."""
    names = tuple(scores.get("iou", {}))
    return names if names and names != CLASS_NAMES else CLASS_NAMES


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
