"""The paper's comparison and ablations as one resumable study: many configs x seeds, then tables and a figure.

A study file (``configs/synthcity/study.yaml``) names the runs (a config file each), the seeds, the SynthCity
to generate, overrides for every run, and the tables to write (rows by run name, a baseline row). Finished runs
(a valid ``summary.json`` next to an unchanged ``config.yaml``) are skipped; interrupted ones resume from their last
checkpoint; a run directory holding a run of another config is moved aside (``<dir>.old-<time>``) and trained
anew. The results file holds the tables (mean ± std over seeds, gain over the baseline), the per-class IoU of the
main comparison and the adaptation curves (PNG plus its data as CSV).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch

from camix.config import Config, load_config
from camix.config_tree import from_dict, load_yaml_tree, to_dict
from camix.data.synthcity import GENERATOR_VERSION
from camix.errors import CamixError, ConfigError, RunInUse
from camix.io import atomic_write_text
from camix.rundir import RunDir
from camix.validation import NonNegativeFloat, NonNegativeInt, PositiveInt, Range, check_ranges

DEFAULT_DATA_PREFIX = "data/synthcity"
DEFAULT_COMMAND = "camix study configs/synthcity/study.yaml"


@dataclass(frozen=True)
class SynthCitySpec:
    """The SynthCity every run of the study trains on (generated when missing)."""

    dir: str = DEFAULT_DATA_PREFIX  # replaces the data/synthcity folder in every data root of the run configs
    seed: NonNegativeInt = 0
    size: tuple[Annotated[int, Range(32)], Annotated[int, Range(16)]] = (256, 128)  # [width, height]
    num_source: PositiveInt = 400
    num_target_train: PositiveInt = 400
    num_target_val: PositiveInt = 100
    gap: NonNegativeFloat = 1.0
    version: str = GENERATOR_VERSION  # the generator version (docs/synthcity.md)


@dataclass(frozen=True)
class StudyTable:
    """One table of the results: rows are run names, gains are over ``baseline``."""

    title: str
    rows: tuple[str, ...]
    baseline: str
    note: str = ""


@dataclass(frozen=True)
class StudyConfig:
    """A whole study."""

    title: str = "SynthCity study: the paper's Tables 2, 4, 5 and 6"  # the results file's heading
    out_dir: str = "runs/study"
    results: str = "benchmarks/synthcity/RESULTS.md"
    seeds: tuple[Annotated[int, Range(0, 2**32 - 1)], ...] = (0, 1, 2)
    synthcity: SynthCitySpec = field(default_factory=SynthCitySpec)
    overrides: tuple[str, ...] = ()  # --set overrides applied to every run
    run_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)  # run name -> its own extra overrides
    pretrain: str | None = None  # config of the initialisation trained first for each seed (model.pretrained)
    # initialisations of other networks: model name -> config; run "pretrain_<model>" starts that model's runs
    pretrains: dict[str, str] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # run name -> config file
    tables: tuple[StudyTable, ...] = ()
    per_class: tuple[str, ...] = ()  # rows of the per-class IoU table and of the curves figure


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> StudyConfig:
    """Read a study file; ``overrides`` are added to its ``overrides`` (applied to every run)."""
    tree = load_yaml_tree(path)
    try:
        study = from_dict(StudyConfig, tree, "study")
        check_ranges(study, "study.")
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in {path})") from None
    from camix.data.synthcity import GENERATOR_VERSIONS

    if study.synthcity.version not in GENERATOR_VERSIONS:
        raise ConfigError(
            f"study.synthcity.version: unknown SynthCity generator version {study.synthcity.version!r}; "
            f"choose one of {list(GENERATOR_VERSIONS)} (in {path})"
        )
    if not study.seeds or not study.runs:
        raise ConfigError(f"study file {path} names no {'seeds' if not study.seeds else 'runs'}; add some")
    known = set(study.runs) | ({PRETRAIN} if study.pretrain is not None else set()) | set(init_runs(study))
    unknown = sorted(set(study.run_overrides) - known)
    if unknown:
        raise ConfigError(f"study.run_overrides names unknown runs {unknown} (in {path})")
    for table in study.tables:
        missing = [name for name in (*table.rows, table.baseline) if name not in known]
        if missing:
            raise ConfigError(f"study table '{table.title}' names unknown runs {missing} (in {path})")
    return StudyConfig(**{**study.__dict__, "overrides": (*study.overrides, *overrides)})


def run_dir(study: StudyConfig, name: str, seed: int) -> Path:
    """Where run ``name`` with ``seed`` lives."""
    return Path(study.out_dir) / f"{name}_seed{seed}"


PRETRAIN = "pretrain"


def init_checkpoint(study: StudyConfig, init: str, seed: int) -> Path:
    """The checkpoint of initialisation run ``init`` that the other runs of ``seed`` start from."""
    return run_dir(study, init, seed) / "checkpoints" / "last.pt"


def init_runs(study: StudyConfig) -> dict[str, str]:
    """The initialisation runs of ``study.pretrains``: run name ``pretrain_<model>`` -> config file."""
    return {f"{PRETRAIN}_{model}": file for model, file in study.pretrains.items()}


def init_run(study: StudyConfig, model: str) -> str | None:
    """The run whose last checkpoint initialises ``model``'s runs: its own pretrain, else the study's, or None."""
    if model in study.pretrains:
        return f"{PRETRAIN}_{model}"
    return PRETRAIN if study.pretrain is not None else None


def config_file(study: StudyConfig, name: str) -> str:
    """The config file of run ``name`` (``pretrain`` and ``pretrain_<model>`` are the initialisations)."""
    if name == PRETRAIN and study.pretrain is not None:
        return study.pretrain
    return init_runs(study).get(name) or study.runs[name]


def run_config(study: StudyConfig, name: str, seed: int) -> Config:
    """The resolved config of one run of the study; errors name the run."""
    try:
        return _run_config(study, name, seed)
    except ConfigError as exc:
        raise ConfigError(f"study run '{name}' (seed {seed}): {exc}") from None


def _run_config(study: StudyConfig, name: str, seed: int) -> Config:
    """The resolved config of one run of the study (see :func:`run_config`)."""
    file = config_file(study, name)
    overrides = [*study.overrides, *study.run_overrides.get(name, ()), f"seed={seed}"]
    base = load_config(file, overrides)
    extra = []
    init = init_run(study, base.model.name)
    if name != PRETRAIN and name not in init_runs(study) and init is not None and base.model.pretrained is not None:
        extra.append(f"model.pretrained={init_checkpoint(study, init, seed)}")
    for key in ("source", "target", "val"):
        dataset = getattr(base.data, key)
        # the folder data/synthcity itself, not a sibling such as data/synthcity_512 (the HRDA configs' data)
        if dataset is not None and (dataset.root + "/").startswith(DEFAULT_DATA_PREFIX + "/"):
            extra.append(f"data.{key}.root={study.synthcity.dir}{dataset.root[len(DEFAULT_DATA_PREFIX) :]}")
    return load_config(file, [*overrides, *extra, f"out_dir={run_dir(study, name, seed)}"])


def same_config(cfg: Config) -> bool:
    """Whether ``cfg.out_dir`` holds a ``config.yaml`` that resolves to ``cfg`` (False when missing or unreadable)."""
    run = RunDir(Path(cfg.out_dir))
    if not run.config_file.is_file():
        return False
    try:
        return load_config(run.config_file) == cfg
    except (CamixError, OSError):
        return False


def is_finished(cfg: Config) -> bool:
    """A run of the very same resolved config with a valid summary of its last iteration.

    A missing, torn or garbage ``summary.json``, or one without final scores, is not finished.
    """
    return RunDir(Path(cfg.out_dir)).is_finished(cfg.train.iterations) and same_config(cfg)


def unfinished_init(study: StudyConfig, name: str, seed: int, cfg: Config) -> str | None:
    """The initialisation run that ``cfg`` starts from, when it has not finished (another process is training it)."""
    inits = ([PRETRAIN] if study.pretrain is not None else []) + list(init_runs(study))
    for init in inits:
        if init != name and cfg.model.pretrained == str(init_checkpoint(study, init, seed)):
            return None if is_finished(run_config(study, init, seed)) else init
    return None


def continue_run(cfg: Config, *, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` in its ``out_dir``: resume the run there, or move it aside first when its config differs."""
    from camix.train import train

    changed = RunDir(Path(cfg.out_dir)).has_results() and not same_config(cfg)
    if changed:
        print(f"{cfg.out_dir} holds a run of another config: it is moved aside and the run starts over")
    return train(cfg, resume=None if changed else "auto", restart=changed, progress=progress)


def plan(study: StudyConfig) -> list[tuple[str, int, Config]]:
    """Every (name, seed, config) of the study, seed-major so that partial studies cover every method.

    For each seed the initialisation (``pretrain``) comes first: the other runs of that seed start from it.
    """
    names = ([PRETRAIN] if study.pretrain is not None else []) + list(init_runs(study)) + list(study.runs)
    return [(name, seed, run_config(study, name, seed)) for seed in study.seeds for name in names]


def run_study(
    study: StudyConfig, *, progress: bool = True, only_report: bool = False, command: str = DEFAULT_COMMAND
) -> Path:
    """Train what is missing, then write the results file (naming ``command``); returns its path."""
    from camix.data.synthcity import ensure

    spec = study.synthcity
    if not only_report:
        ensure(
            spec.dir,
            progress=progress,
            seed=spec.seed,
            size=spec.size,
            num_source=spec.num_source,
            num_target_train=spec.num_target_train,
            num_target_val=spec.num_target_val,
            gap=spec.gap,
            version=spec.version,
        )
    jobs = plan(study)
    started, trained = time.perf_counter(), 0
    for index, (name, seed, cfg) in enumerate(jobs, 1):
        if is_finished(cfg) or only_report:
            print(f"[{index}/{len(jobs)}] {name} seed {seed}: done before")
            continue
        waiting = unfinished_init(study, name, seed, cfg)
        if waiting is not None:  # never start from a half-trained initialisation
            print(f"[{index}/{len(jobs)}] {name} seed {seed}: skipped, {waiting} seed {seed} is not finished")
            continue
        t0 = time.perf_counter()
        try:
            summary = continue_run(cfg, progress=progress)
        except RunInUse as exc:  # another `camix study` (or `camix train`) is training it: leave it to that one
            print(f"[{index}/{len(jobs)}] {name} seed {seed}: skipped, being trained by another process ({exc})")
            continue
        if "interrupted" in summary:
            print(f"study stopped during {name} seed {seed}; run the same command again to continue")
            raise SystemExit(130)
        trained += 1
        elapsed = time.perf_counter() - started
        left = sum(1 for _, _, c in jobs[index:] if not is_finished(c))
        score = (summary.get("final") or {}).get("miou19", math.nan)
        print(
            f"[{index}/{len(jobs)}] {name} seed {seed}: mIoU19 {score:.1f} in "
            f"{(time.perf_counter() - t0) / 60:.1f} min; elapsed {elapsed / 60:.0f} min, "
            f"about {elapsed / trained * left / 60:.0f} min left"
        )
    return write_results(study, jobs, command)


def _groups(study: StudyConfig, jobs: Sequence[tuple[str, int, Config]]) -> dict[str, Any]:
    from camix.report import GROUP_IGNORE, group_runs, load_run

    by_name: dict[str, list[Any]] = {}
    for name, _, cfg in jobs:
        if is_finished(cfg):  # runs still training (or trained with another config) are left out
            by_name.setdefault(name, []).append(load_run(cfg.out_dir, label=name))
    ignore = (*GROUP_IGNORE, "model.pretrained")  # each seed starts from its own pretrained model
    return {name: group_runs(runs, ignore=ignore)[0] for name, runs in by_name.items()}


def run_seconds(cfg: Config) -> float:
    """Mean seconds per iteration logged by a finished run."""
    values = [r.get("sec_per_iter") for r in RunDir(Path(cfg.out_dir)).metrics()]
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(numbers) / len(numbers) if numbers else float("nan")


def write_results(study: StudyConfig, jobs: Sequence[tuple[str, int, Config]], command: str = DEFAULT_COMMAND) -> Path:
    """The results markdown: tables, per-class IoU, curves (PNG + CSV), setup and timings."""
    from camix.report import comparison_table, group_curve, per_class_table, plot_curves, settling_table

    groups = _groups(study, jobs)
    out = Path(study.results)
    sections = [_header(study, jobs, command)]
    for table in study.tables:
        rows = [groups[name] for name in table.rows if name in groups]
        if rows and table.baseline in groups:
            sections.append(f"## {table.title}\n\n{table.note}\n\n{comparison_table(rows, baseline=table.baseline)}")
    main = [groups[name] for name in study.per_class if name in groups]
    if main:
        sections.append("## Per-class IoU (%) of the main comparison\n\n" + per_class_table(main))
        figure = out.with_name("curves.png")
        adapted = [groups[name] for name in adaptation_rows(study, study.per_class) if name in groups]
        plot_curves(adapted, figure, title="SynthCity: mIoU19 on target val during training")
        curves = [group_curve(g) for g in adapted]
        csv = ["method,iteration,mean,min,max"] + [
            f"{c.label},{x},{m:.3f},{lo:.3f},{hi:.3f}"
            for c in curves
            for x, m, lo, hi in zip(c.x, c.mean, c.low, c.high, strict=True)
        ]
        atomic_write_text(out.with_name("curves.csv"), "\n".join(csv) + "\n")
        sections.append(
            "## Adaptation curves (the paper's Figure 4)\n\n![curves](curves.png)\n\n"
            "Data: [curves.csv](curves.csv) (mean, min and max over seeds at each evaluation).\n\n"
            "Settling: how much each mean over seeds moves over the last quarter of training (settled: by less "
            "than 1 point).\n\n" + settling_table(curves)
        )
    sections.append(_timings(study, jobs))
    atomic_write_text(out, "\n\n".join(sections) + "\n" + kept_notes(out))
    return out


def adaptation_rows(study: StudyConfig, names: Sequence[str]) -> list[str]:
    """The runs of ``names`` that adapt, without the initialisation runs (``pretrain``, ``pretrain_<model>``): the
    curves and their settling share the adaptation's iteration axis, which an initialisation's does not."""
    inits = {PRETRAIN, *init_runs(study)}
    return [name for name in names if name not in inits]


NOTES_MARKER = "<!-- notes: everything below this line is kept when camix study rewrites this file -->"


def kept_notes(path: Path) -> str:
    """The hand-written part of an existing results file (from :data:`NOTES_MARKER` on), or ``""``."""
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    index = text.find(NOTES_MARKER)
    return "" if index < 0 else "\n" + text[index:]


def cpu_name() -> str:
    """The processor's model name (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _header(study: StudyConfig, jobs: Sequence[tuple[str, int, Config]], command: str) -> str:
    inits = {PRETRAIN, *init_runs(study)}
    # the adapting runs (one config per name: the seeds share these settings), or the first job when there are none
    trained = {name: c for name, _, c in jobs if name not in inits} or {jobs[0][0]: jobs[0][2]}
    cfg = next(iter(trained.values()))
    models = list(dict.fromkeys(c.model.name for c in trained.values()))
    counts = sorted({c.train.iterations for c in trained.values()})
    iterations = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} (each row's under 'checkpoint')"
    spec = study.synthcity
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    crops = per_run({name: f"{c.data.crop[0]}x{c.data.crop[1]}" for name, c in trained.items()})
    batch = per_run({name: f"{c.data.batch_size} + {c.data.batch_size}" for name, c in trained.items()})
    threads = cfg.train.threads or torch.get_num_threads()
    return f"""# {study.title}

Command: `{command}` ({when}, commit {git_commit()}, {cpu_name()},
{os.cpu_count()} cores, {threads} torch threads per run, torch {torch.__version__}; the training time is
under "Cost per run").

Setup: SynthCity {spec.version} {spec.size[0]}x{spec.size[1]} (seed {spec.seed}, gap {spec.gap}: {spec.num_source}
source, {spec.num_target_train} target-train, {spec.num_target_val} target-val images); \
{"models" if len(models) > 1 else "model"} {", ".join(f"`{m}`" for m in models)};
{iterations} iterations, crops {crops}, batch
{batch}; seeds {list(study.seeds)}. Scores: mIoU19 (%) of the student's
last checkpoint on the target val split, mean ± sample std over seeds.{_pretrain_note(study, jobs)}"""


def per_run(values: dict[str, str]) -> str:
    """A setting of the runs: its one value, or each value followed by the runs that have it."""
    distinct = list(dict.fromkeys(values.values()))
    if len(distinct) == 1:
        return distinct[0]
    return ", ".join(f"{v} ({', '.join(n for n, x in values.items() if x == v)})" for v in distinct)


def git_commit() -> str:
    """The short commit of the working directory's git checkout (``+dirty`` with uncommitted changes), or unknown."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _pretrain_note(study: StudyConfig, jobs: Sequence[tuple[str, int, Config]]) -> str:
    cfgs = [cfg for name, _, cfg in jobs if name == PRETRAIN]
    if not cfgs:
        return ""
    others = "".join(
        f" Runs of `{model}` start from `{PRETRAIN}_{model}` ({file}) instead."
        for model, file in study.pretrains.items()
    )
    return (
        f" Every run of a seed starts from that seed's `{PRETRAIN}` run ({study.pretrain}: source-only from "
        f"scratch, {cfgs[0].train.iterations} iterations), the SynthCity stand-in for ImageNet/COCO weights.{others}"
    )


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


def run_wall_seconds(cfg: Config) -> float:
    """Wall time of a finished run over all its resumed legs (``seconds`` of its summary); nan when unfinished.

    Summaries of older versions have no ``seconds``: then the time from config.yaml to summary.json.
    """
    run = RunDir(Path(cfg.out_dir))
    summary = run.summary()
    if summary is None:
        return math.nan
    if isinstance(summary.get("seconds"), (int, float)):
        return float(summary["seconds"])
    try:
        return run.summary_file.stat().st_mtime - run.config_file.stat().st_mtime
    except OSError:
        return math.nan


def _timings(study: StudyConfig, jobs: Sequence[tuple[str, int, Config]]) -> str:
    lines = ["## Cost per run", "", "| run | iterations | s / iteration | wall minutes per run |", "|---|---|---|---|"]
    for name in dict.fromkeys(n for n, _, _ in jobs):
        cfgs = [cfg for n, _, cfg in jobs if n == name]
        seconds = _finite_mean([run_seconds(c) for c in cfgs])
        minutes = _finite_mean([run_wall_seconds(c) / 60 for c in cfgs])
        lines.append(f"| {name} | {cfgs[0].train.iterations} | {seconds:.3f} | {minutes:.1f} |")
    walls = [w for w in (run_wall_seconds(c) for _, _, c in jobs) if not math.isnan(w)]
    lines += [
        "",
        f"Total wall time of the {len(walls)} finished runs: {sum(walls) / 3600:.2f} h (means over seeds above; "
        "the time of a run adds up its legs when it was resumed and includes its evaluations).",
    ]
    return "\n".join(lines)


def describe(study: StudyConfig) -> dict[str, Any]:
    """A JSON-friendly summary of the plan (for --dry-run); every run's config is resolved (and so checked), one
    is shown."""
    jobs = plan(study)
    return {
        "runs": len(study.runs) * len(study.seeds),
        "configs": dict(study.runs),
        "seeds": list(study.seeds),
        "example": to_dict(next(cfg for name, _, cfg in jobs if name in study.runs)),
    }
