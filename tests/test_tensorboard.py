"""``train.tensorboard``: the event file holds exactly the numbers of ``metrics.jsonl`` (read back independently)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from camix import methods
from camix.errors import NonFiniteLoss
from camix.train import Trainer

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def expected_scalars(metrics: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(iteration, value as float32)] from metrics.jsonl, the latest record per (tag, iteration)."""
    latest: dict[str, dict[int, float]] = defaultdict(dict)
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        step = record.pop("iteration")
        record.pop("eval/model", None)
        for key, value in record.pop("eval/iou", {}).items():
            latest[f"eval/iou/{key}"][step] = float(np.float32(value))
        for key, value in record.items():
            latest[key][step] = float(np.float32(value))
    return {tag: sorted(by_step.items()) for tag, by_step in latest.items()}


def read_events(folder: Path) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_event_file_scalars_equal_metrics_jsonl_across_a_crash_and_resume(tiny_config, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(
        "camix",
        "train.tensorboard=true",
        "train.iterations=5",
        "train.eval_every=2",
        "train.checkpoint_every=2",
        "train.debug_every=2",
    )
    original = methods.mean_teacher

    def poisoned(ctx, source, target=None):  # type: ignore[no-untyped-def]
        out = original(ctx, source, target)
        if ctx.iteration >= 3:  # iteration 4 fails: iteration 3 was logged after the checkpoint of iteration 2
            out.losses["seg"] = out.losses["seg"] * float("nan")
        return out

    record = methods.METHODS["mean_teacher"]
    monkeypatch.setitem(methods.METHODS, "mean_teacher", dataclasses.replace(record, step=poisoned))
    with pytest.raises(NonFiniteLoss):
        Trainer(cfg, progress=False).fit()
    monkeypatch.setitem(methods.METHODS, "mean_teacher", record)
    Trainer(cfg, resume="auto", progress=False).fit()  # repeats iterations 3 and 4, then 5

    run = Path(cfg.out_dir)
    expected = expected_scalars(run / "metrics.jsonl")
    acc = read_events(run / "tensorboard")
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one per process
    assert set(acc.Tags()["scalars"]) == set(expected)
    for tag in ("loss/total", "lr", "stat/significant", "eval/miou19", "eval/miou16", "eval/miou13", "eval/iou/road"):
        assert tag in expected, tag
    assert [s for s, _ in expected["loss/total"]] == [1, 2, 3, 4, 5]
    assert [s for s, _ in expected["eval/miou19"]] == [2, 4, 5]
    for tag, values in expected.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in values], tag  # no duplicates of the repeated iterations
        assert all(same(g, v) for (_, g), (_, v) in zip(got, values, strict=True)), (tag, got, values)

    from camix.runs import load_run

    assert [r["iteration"] for r in load_run(run).evals] == [2, 4, 5]  # camix report reads the run as before

    images = acc.Images("debug/panel")
    assert [i.step for i in images] == [2, 4]
    from PIL import Image

    with Image.open(run / "debug" / "iter_0000004.png") as panel:
        assert (images[-1].width, images[-1].height) == panel.size


def test_disabled_by_default_writes_no_event_file(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("source_only")
    assert cfg.train.tensorboard is False
    Trainer(cfg, progress=False).fit()
    assert not (Path(cfg.out_dir) / "tensorboard").exists()
