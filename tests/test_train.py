"""The training loop end to end on a tiny SynthCity: every method and ablation config, outputs, metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from camix.checkpoint import load_checkpoint
from camix.config import PACKAGED_CONFIGS, load_config
from camix.train import Trainer, poly_lr_, train

SYNTHCITY_CONFIGS = sorted(
    p.stem
    for p in (PACKAGED_CONFIGS / "synthcity").glob("*.yaml")
    if p.stem != "base" and not p.stem.startswith(("study", "calibrate"))
)


@pytest.mark.parametrize("name", SYNTHCITY_CONFIGS)
def test_every_synthcity_config_trains_two_iterations(tiny_config, name: str) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(name)
    summary = train(cfg, progress=False)
    run = Path(cfg.out_dir)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss/total" in r]
    assert [r["iteration"] for r in losses] == [1, 2]
    assert all(math.isfinite(v) for r in losses for k, v in r.items() if k.startswith("loss/"))
    expected_terms = {"loss/seg", "loss/total"} | ({"loss/con"} if cfg.method.name == "mean_teacher" else set())
    assert {key for key in losses[0] if key.startswith("loss/")} == expected_terms
    if cfg.method.name == "mean_teacher":
        assert 0.0 <= losses[0]["stat/target_area"] <= 1.0 and 0.0 <= losses[0]["stat/significant"] <= 1.0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["iteration"] == 2
    assert (state["teacher"] is not None) == (cfg.method.name == "mean_teacher")
    assert 0.0 <= summary["final"]["miou19"] <= 100.0
    assert load_config(run / "config.yaml") == cfg  # the resolved config is saved and reloads identically


def test_poly_learning_rate_with_classifier_multiplier() -> None:
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(
        [{"params": [params[0]], "lr_mult": 1.0}, {"params": [params[1]], "lr_mult": 10.0}], lr=1
    )
    base = poly_lr_(optimizer, 0.01, 0.9, iteration=50, total=100)
    assert base == pytest.approx(0.01 * 0.5**0.9)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([base, 10 * base])


def test_source_only_learns_on_a_fixed_batch(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("source_only", "train.iterations=30", "train.log_every=10", "train.eval_every=0")
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    records = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss/seg"] for r in records if "loss/seg" in r]
    assert losses[-1] < 0.8 * losses[0]
