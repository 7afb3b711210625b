"""A run directory and its one owner: layout, lock, metrics log (writer and reader), summary, clean-up.

Layout (``out_dir`` of a config)::

    config.yaml       the resolved config (written when the run starts)
    metrics.jsonl     one JSON record per line: losses every log_every, evaluations every eval_every
    summary.json      written once, when the last iteration is trained and evaluated
    checkpoints/      last.pt, numbered snapshots, best.pt (camix.checkpoint)
    .camix.lock       held (flock) by the process that owns the run, with its PID and host (camix.runlock)

Every reader here tolerates what a kill can leave behind: a missing file, a torn last line, garbage, a
``summary.json`` of an older version; writers are atomic (camix.io) or append-only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from camix.config import Config
from camix.config_tree import dump_config
from camix.errors import CamixError, RunDirError, RunInUse
from camix.io import atomic_write_text
from camix.runlock import LOCK, RunLock
from camix.runtime import Dist, all_gather_objects

LOG = logging.getLogger("camix.rundir")

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
ASIDE = ".old-"  # <run>.old-<UTC time>: where --restart moves a previous run


# ----- reading ---------------------------------------------------------------------------------------------------
def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSON-lines file; torn, garbage and non-object lines are skipped; missing -> []."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a torn last line after a crash, or garbage
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def eval_records(records: list[dict[str, Any]], network: str = "student") -> tuple[dict[str, Any], ...]:
    """The evaluation records of ``network``, the latest per iteration, sorted by iteration."""
    by_iteration: dict[int, dict[str, Any]] = {}
    for record in records:
        if "eval/miou19" in record and record.get("eval/model", "student") == network:
            with contextlib.suppress(TypeError, ValueError):
                by_iteration[int(record["iteration"])] = record
    return tuple(by_iteration[k] for k in sorted(by_iteration))


def scores_of(record: dict[str, Any]) -> dict[str, Any]:
    """``{"miou19": ..., "iou": {...}, ...}`` of an evaluation record (its ``eval/`` keys without the prefix)."""
    return {k[5:]: v for k, v in record.items() if k.startswith("eval/") and k != "eval/model"}


def valid_summary(data: Any) -> bool:
    """A summary of a run that finished: an iteration and final scores with a numeric mIoU19."""
    if not isinstance(data, dict) or not isinstance(data.get("iteration"), int):
        return False
    final = data.get("final")
    return isinstance(final, dict) and isinstance(final.get("miou19"), (int, float))


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory and what they say."""

    path: Path

    @property
    def config_file(self) -> Path:
        """``config.yaml``."""
        return self.path / CONFIG

    @property
    def metrics_file(self) -> Path:
        """``metrics.jsonl``."""
        return self.path / METRICS

    @property
    def summary_file(self) -> Path:
        """``summary.json``."""
        return self.path / SUMMARY

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``."""
        return self.path / CHECKPOINTS

    @property
    def lock_file(self) -> Path:
        """``.camix.lock``."""
        return self.path / LOCK

    def metrics(self) -> list[dict[str, Any]]:
        """Every record of ``metrics.jsonl`` (the one parser of it)."""
        return read_jsonl(self.metrics_file)

    def evals(self, network: str = "student") -> tuple[dict[str, Any], ...]:
        """The evaluation records of ``network``, latest per iteration, sorted."""
        return eval_records(self.metrics(), network)

    def summary(self) -> dict[str, Any] | None:
        """``summary.json`` when it describes a finished run; None when missing, torn, garbage or ``final: null``."""
        try:
            data = json.loads(self.summary_file.read_bytes())
        except (OSError, ValueError):
            return None
        return data if valid_summary(data) else None

    def saved_config(self) -> dict[str, Any] | None:
        """The parsed ``config.yaml`` (None when missing or unreadable)."""
        try:
            data = yaml.safe_load(self.config_file.read_bytes())
        except (OSError, yaml.YAMLError):
            return None
        return data if isinstance(data, dict) else None

    def is_finished(self, iterations: int | None = None) -> bool:
        """A valid summary (of ``iterations`` when given)."""
        summary = self.summary()
        return summary is not None and (iterations is None or summary["iteration"] == iterations)

    def last_checkpoint(self) -> Path | None:
        """``checkpoints/last.pt`` (always whole: written by atomic rename), else the newest snapshot."""
        last = self.checkpoints / "last.pt"
        if last.is_file():
            return last
        snapshots = sorted(self.checkpoints.glob("iter_*.pt"))
        return snapshots[-1] if snapshots else None

    def has_results(self) -> bool:
        """Whether anything a run produced is here (a log record, a checkpoint or a summary)."""
        return bool(self.metrics()) or self.summary_file.exists() or any(self.checkpoints.glob("*.pt"))

    def describe(self) -> str:
        """``finished at iteration 2000 (mIoU19 41.3)`` / ``stopped at iteration 800`` / ``has results``."""
        summary = self.summary()
        if summary is not None:
            return f"a run finished at iteration {summary['iteration']} (mIoU19 {summary['final']['miou19']:.1f})"
        iterations = [r["iteration"] for r in self.metrics() if isinstance(r.get("iteration"), int)]
        return f"a run stopped at iteration {max(iterations)}" if iterations else "the files of a run"

    def is_foreign(self) -> bool:
        """A non-empty folder that holds no camix run: camix never writes into it."""
        if not self.path.is_dir() or any((self.path / name).exists() for name in (METRICS, SUMMARY, CHECKPOINTS, LOCK)):
            return False
        return any(p.name not in (CONFIG, "debug", "eval") for p in self.path.iterdir())

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete the ``.NAME.*.tmp`` files of atomic writes that a kill interrupted (call while owning the run)."""
        removed = []
        for folder in (self.path, self.checkpoints):
            for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed.append(tmp)
        if removed:
            LOG.info("removed %d temporary file(s) left by an interrupted save in %s", len(removed), self.path)
        return removed

    def move_aside(self) -> Path:
        """Rename the run's files into ``<run>.old-<UTC time>/`` (the lock file stays); returns that folder."""
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}{ASIDE}{stamp}")
        suffix = 1
        while aside.exists():
            suffix += 1
            aside = aside.with_name(f"{self.path.name}{ASIDE}{stamp}-{suffix}")
        aside.mkdir()
        for item in self.path.iterdir():
            if item.name != LOCK:
                item.rename(aside / item.name)
        return aside


# ----- taking a run directory ------------------------------------------------------------------------------------
def claim(folder: str | Path, config_text: str, *, resume: str | None, restart: bool) -> tuple[RunDir, RunLock]:
    """Lock ``folder`` for a run and write its ``config.yaml``; refuse to overwrite a run the user did not name.

    Args:
        folder: the run directory (created when missing).
        config_text: the resolved config as YAML.
        resume: None (a new run), ``"auto"`` or a checkpoint path (continue the run that is there).
        restart: move a previous run aside (``<folder>.old-<time>``) and start over.

    Raises:
        RunDirError: the folder is locked by another process, holds a run and neither ``resume`` nor
            ``restart`` is given, is a non-empty folder that is not a run directory, or is not writable.
    """
    run = RunDir(Path(folder))
    if run.is_foreign():
        raise RunDirError(
            f"{run.path} is not empty and is not a camix run directory; choose a new or empty out_dir "
            "(camix writes config.yaml, metrics.jsonl and checkpoints/ into it)"
        )
    lock = RunLock(run.path)
    try:
        lock.acquire()
        if run.has_results() and restart:
            LOG.warning("--restart: moved the previous run (%s) to %s", run.describe(), run.move_aside())
        elif run.has_results() and resume is None:
            raise RunDirError(
                f"{run.path} already holds {run.describe()}; continue it with --resume auto, start over with "
                f"--restart (the old run is kept in {run.path.name}{ASIDE}<time>), or choose another out_dir"
            )
        run.remove_stale_temp_files()
        atomic_write_text(run.config_file, config_text)
    except OSError as exc:
        lock.release()
        raise RunDirError(
            f"output directory {run.path} is not writable ({exc.strerror or exc}); "
            "choose another with --set out_dir=DIR"
        ) from None
    except BaseException:
        lock.release()
        raise
    return run, lock


def claim_run(
    cfg: Config, info: Dist, *, resume: str | None = None, restart: bool = False
) -> tuple[RunDir, RunLock | None]:
    """:func:`claim` of ``cfg.out_dir`` (saving ``cfg`` as its ``config.yaml``) on rank 0 of a (possibly distributed)
    run; every rank raises the same one-line error.

    Returns the run directory and, on rank 0, its lock (held until :meth:`RunLock.release`).
    """
    lock, error, folder = None, None, cfg.out_dir
    if info.is_main:
        text = dump_config(cfg)
        try:
            _, lock = claim(folder, text, resume=resume, restart=restart)
        except CamixError as exc:
            error = (isinstance(exc, RunInUse), str(exc))
    error = all_gather_objects(error, info)[0]
    if error is not None:
        in_use, message = error
        raise (RunInUse if in_use else RunDirError)(message)
    return RunDir(Path(folder)), lock


# ----- writing ---------------------------------------------------------------------------------------------------
def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name when it has none (a failed write says only ``No space left``)."""
    if exc.filename is not None:
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


class MetricsLog:
    """Append-only ``metrics.jsonl`` plus ``summary.json`` of a run; only the enabled (rank 0) writer writes."""

    def __init__(self, run: RunDir, *, enabled: bool) -> None:
        self.run, self.enabled = run, enabled
        self.path = run.metrics_file

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (one line, flushed)."""
        if not self.enabled:
            return
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise _named(exc, self.path) from None

    def read(self) -> list[dict[str, Any]]:
        """All records written so far (a torn last line from a crash is skipped)."""
        return self.run.metrics()

    def truncate_after(self, iteration: int) -> None:
        """Drop records logged after ``iteration`` (they belong to the part of a run that a resume repeats)."""
        if self.enabled and self.path.is_file():
            kept = [r for r in self.read() if isinstance(r.get("iteration"), int) and r["iteration"] <= iteration]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` atomically."""
        if self.enabled:
            atomic_write_text(self.run.summary_file, json.dumps(summary, indent=2))


# ----- messages --------------------------------------------------------------------------------------------------
def resume_command(config_file: str | Path, env: dict[str, str] | None = None) -> str:
    """The command that continues a run: ``camix train ...``, or ``torchrun ... -m camix train ...`` under torchrun."""
    env = dict(os.environ) if env is None else env
    tail = f"-c {os.fsdecode(config_file)} --resume auto"
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return f"camix train {tail}"
    local = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    nodes = max(1, world // max(1, local))
    launch = f"torchrun --nproc_per_node={local}"
    if nodes > 1:
        launch += f" --nnodes={nodes} (plus your rendezvous options)"
    return f"{launch} -m camix train {tail}"


def resume_hint(run: RunDir, env: dict[str, str] | None = None) -> str:
    """``the last good checkpoint is X; resume with: CMD`` (or ``no checkpoint was saved yet``)."""
    last = run.last_checkpoint()
    if last is None:
        return "no checkpoint was saved yet"
    return f"the last good checkpoint is {last}; resume with: {resume_command(run.config_file, env)}"


def io_failure(exc: OSError, run: RunDir, env: dict[str, str] | None = None) -> RunDirError:
    """One line for an I/O error during a run: the path, the reason, and the last good checkpoint to resume from."""
    where = exc.filename if exc.filename is not None else run.path
    return RunDirError(f"{os.fsdecode(where)}: {exc.strerror or exc} while writing the run; {resume_hint(run, env)}")


@contextlib.contextmanager
def io_errors(run: RunDir) -> Iterator[None]:
    """Turn an OSError raised inside into :func:`io_failure` (exit code 2, one line)."""
    try:
        yield
    except OSError as exc:
        raise io_failure(exc, run) from None
