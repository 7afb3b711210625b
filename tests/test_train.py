"""The training loop end to end on a tiny SynthCity: every method and ablation config, outputs, metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from camix.checkpoint import load_checkpoint
from camix.config import load_config
from camix.config_tree import PACKAGED_CONFIGS
from camix.optim import poly_lr_
from camix.train import Trainer, train

SYNTHCITY_CONFIGS = sorted(
    p.stem
    for p in (PACKAGED_CONFIGS / "synthcity").glob("*.yaml")
    if p.stem != "base" and not p.stem.startswith("study") and not p.stem.startswith("hrda")
)  # the HRDA configs need larger crops than the tiny data has: tests/test_hrda_train.py trains them


@pytest.mark.parametrize("name", SYNTHCITY_CONFIGS)
def test_every_synthcity_config_trains_two_iterations(tiny_config, name: str) -> None:  # type: ignore[no-untyped-def]
    warmup = load_config(PACKAGED_CONFIGS / "synthcity" / f"{name}.yaml").method.warmup_iterations
    cfg = tiny_config(name, *(["method.warmup_iterations=1"] if warmup else []))  # the warm-up fits the 2 iterations
    summary = train(cfg, progress=False)
    run = Path(cfg.out_dir)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss/total" in r]
    assert [r["iteration"] for r in losses] == [1, 2]
    assert all(math.isfinite(v) for r in losses for k, v in r.items() if k.startswith("loss/"))
    expected_terms = {"loss/seg", "loss/total"} | ({"loss/con"} if cfg.method.name == "mean_teacher" else set())
    expected_terms |= {"loss/fd"} if cfg.method.feature_distance.weight > 0 else set()  # DAFormer's FD
    expected_terms |= {"loss/mic"} if cfg.method.mic.weight > 0 else set()  # MIC's masked consistency
    assert {key for key in losses[0] if key.startswith("loss/")} == expected_terms
    if cfg.method.name == "mean_teacher":
        assert 0.0 <= losses[0]["stat/target_area"] <= 1.0 and 0.0 <= losses[0]["stat/significant"] <= 1.0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["iteration"] == 2
    assert (state["teacher"] is not None) == (cfg.method.name == "mean_teacher")
    assert 0.0 <= summary["final"]["miou19"] <= 100.0
    assert load_config(run / "config.yaml") == cfg  # the resolved config is saved and reloads identically


@pytest.mark.parametrize("name", [n for n in SYNTHCITY_CONFIGS if n.endswith("_mic")])
def test_every_mic_config_trains_three_iterations_and_shows_the_masked_target(tiny_config, name: str) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(name, "train.iterations=3", "train.debug_every=3", "train.eval_every=3")
    train(cfg, progress=False)
    records = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    mic = [r["loss/mic"] for r in records if "loss/mic" in r]
    assert len(mic) == 3 and all(math.isfinite(v) and v >= 0 for v in mic)
    assert (Path(cfg.out_dir) / "debug" / "iter_0000003.png").is_file()


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


def test_best_checkpoint_per_extra_metric(tiny_config) -> None:  # type: ignore[no-untyped-def]
    """train.best_metrics: best_<metric>.pt beside best.pt (the released SYNTHIA code keeps mIoU16 and mIoU13)."""
    cfg = tiny_config("dacs", "train.iterations=4", "train.eval_every=2", "train.best_metrics=[miou16, miou13]")
    train(cfg, progress=False)
    folder = Path(cfg.out_dir) / "checkpoints"
    records = map(json.loads, (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines())
    evals = [r for r in records if "eval/miou13" in r]
    for metric in ("miou16", "miou13"):
        best = load_checkpoint(folder / f"best_{metric}.pt")
        top = max(evals, key=lambda r: r[f"eval/{metric}"])  # the first of equal scores wins
        assert best["iteration"] == top["iteration"] and best["metrics"][metric] == top[f"eval/{metric}"]
    assert set(load_checkpoint(folder / "last.pt")["best_by"]) == {"miou16", "miou13"}
    assert (folder / "best.pt").is_file()


def test_official_camix_trains_across_the_warm_up(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("camix_official", "train.iterations=3", "method.warmup_iterations=1", "train.log_every=1")
    train(cfg, progress=False)
    records = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss/con" in r]
    assert [r["iteration"] for r in losses] == [1, 2, 3] and all(math.isfinite(r["loss/con"]) for r in losses)
    assert cfg.optim.duplicate_backbone_params and cfg.method.significance_resolution == "logits"


def test_to_device_moves_the_step_fields_and_leaves_the_rest() -> None:
    from camix.data.batch import to_device

    item = {
        "image": torch.rand(2, 3, 4, 6),
        "label": torch.zeros(2, 4, 6, dtype=torch.int64),
        "box": torch.tensor([[0, 1, 4, 6], [2, 0, 4, 6]]),
        "name": ["a.png", "b.png"],
        "size": torch.tensor([[8, 6], [8, 6]]),
    }
    moved = to_device(item, torch.device("meta"), channels_last=True)
    assert set(moved) == {"image", "label", "box"}
    assert all(t.device.type == "meta" for t in moved.values())
    assert moved["image"].is_contiguous(memory_format=torch.channels_last)
    assert moved["box"].dtype == torch.int64 and moved["box"].shape == (2, 4)


def test_debug_panel_tiles_render_images_labels_and_masks() -> None:
    from camix.labels import CAFFE_MEAN_BGR, PALETTE
    from camix.visualize import tile_rgb

    bgr = torch.tensor([10.0, 20.0, 30.0]) - torch.tensor(CAFFE_MEAN_BGR)
    image = tile_rgb(bgr.view(3, 1, 1).expand(3, 2, 2))
    assert image.shape == (2, 2, 3) and image[0, 0].tolist() == [30, 20, 10]  # BGR + mean -> RGB
    label = tile_rgb(torch.tensor([[0, 13]]))
    assert label[0, 0].tolist() == list(PALETTE[0]) and label[0, 1].tolist() == list(PALETTE[13])
    mask = tile_rgb(torch.tensor([[True, False]]))
    assert mask[0, 0].tolist() == [255, 255, 255] and mask[0, 1].tolist() == [0, 0, 0]
    soft = tile_rgb(torch.tensor([[0.5]]))
    assert soft[0, 0].tolist() == [128, 128, 128]


def test_no_progress_hides_the_prior_bar_too(tiny_config, monkeypatch, capfd) -> None:  # type: ignore[no-untyped-def]
    """``progress=False`` (``--no-progress``) silences every bar, the spatial prior's computation included."""
    monkeypatch.setattr("camix.data.prior.shared_cache_dir", lambda root: None)  # cache in the run dir: computed here
    cfg = tiny_config("camix", "train.iterations=1", "train.eval_every=0")
    train(cfg, progress=False)
    assert list(Path(cfg.out_dir).glob("prior_*.pt"))  # the prior was computed in this run
    assert f"prior {cfg.data.source.name}" not in capfd.readouterr().err
