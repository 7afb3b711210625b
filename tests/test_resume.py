"""Exact resume: a run stopped at iteration k and resumed logs the same losses as one that never stopped."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from camix.checkpoint import load_checkpoint
from camix.config_tree import replace
from camix.train import Trainer


def loss_records(run_dir: Path) -> list[dict[str, float]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [
        {k: v for k, v in json.loads(line).items() if k.startswith("loss/") or k == "iteration"}
        for line in lines
        if "loss/total" in line
    ]


@pytest.mark.parametrize("name", ["source_only", "camix", "daformer_camix", "camix_mic"])
def test_resumed_run_reproduces_the_uninterrupted_one(tiny_config, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    overrides = ("train.iterations=6", "train.checkpoint_every=3", "train.eval_every=3", "method.augment.flip=true")
    straight = tiny_config(name, *overrides)
    Trainer(straight, progress=False).fit()

    stopped = replace(straight, out_dir=str(tmp_path / "stopped"))
    first = Trainer(stopped, progress=False).fit(until=4)
    assert first["interrupted"] and first["iteration"] == 4
    first_leg = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert first_leg["iteration"] == 4
    summary = Trainer(stopped, resume="auto", progress=False).fit()
    started = dt.datetime.fromtimestamp(first_leg["clock"]["started"], dt.timezone.utc).isoformat(timespec="seconds")
    assert summary["started"] == started  # the start of the first leg; seconds add up over the legs
    assert summary["seconds"] > first_leg["clock"]["seconds"] > 0
    assert json.loads((tmp_path / "stopped" / "summary.json").read_text())["seconds"] == summary["seconds"]

    expected = loss_records(Path(straight.out_dir))
    assert [r["iteration"] for r in expected] == [1, 2, 3, 4, 5, 6]
    assert loss_records(tmp_path / "stopped") == expected  # bit-identical floats, also after the resume


def test_resume_auto_without_checkpoint_starts_fresh(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("source_only")
    summary = Trainer(cfg, resume="auto", progress=False).fit()
    assert summary["iteration"] == 2
