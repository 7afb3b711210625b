"""The DAFormer network and recipe through camix's tools: train (RCS, FD, AdamW), evaluate, export, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from camix.cli import main
from camix.config import load_config
from camix.data.datasets import build_dataset
from camix.export import export_onnx, max_abs_difference, random_image
from camix.models import build_model
from camix.train import Trainer


def test_onnx_export_of_the_small_daformer_matches_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = build_model("daformer_mittiny").eval()
    path = tmp_path / "daformer.onnx"
    export_onnx(model, path, sample_size=(64, 96))
    for batch, size in [(1, (64, 96)), (2, (96, 128)), (1, (72, 120))]:
        assert max_abs_difference(model, path, random_image(batch, size, seed=batch)) < 1e-4


def test_daformer_recipe_trains_and_the_tools_work(tiny_config, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("daformer_camix", "train.iterations=3", "train.eval_every=3", "data.rcs.min_pixels=20")
    assert cfg.model.name == "daformer_mittiny" and cfg.optim.optimizer == "adamw" and cfg.data.rcs is not None
    trainer = Trainer(cfg, progress=False)
    assert isinstance(trainer.optimizer, torch.optim.AdamW) and trainer.context.imagenet is not None
    initial = {k: v.clone() for k, v in trainer.context.imagenet.state_dict().items()}
    summary = trainer.fit()
    assert summary["iteration"] == 3
    records = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss/total" in r]
    assert all("loss/fd" in r and np.isfinite(r["loss/fd"]) and r["loss/fd"] >= 0 for r in losses)
    assert losses[0]["lr"] < cfg.optim.lr  # still warming up at iteration 1
    assert all(
        torch.equal(initial[k], v) for k, v in trainer.context.imagenet.state_dict().items()
    )  # FD's copy stays frozen

    run = Path(cfg.out_dir)
    assert main(["evaluate", "--ckpt", str(run), "--no-progress"]) == 0
    saved = json.loads((run / "eval" / "last" / "eval.json").read_text())
    assert saved["miou19"] == pytest.approx(summary["final"]["miou19"], abs=1e-6)
    capsys.readouterr()
    if _onnx_available():
        assert main(["export", "--ckpt", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 0
        assert "(OK)" in capsys.readouterr().out
    images = Path(cfg.data.val.root) / "leftImg8bit" / "val"
    assert main(["predict", "--ckpt", str(run), str(images), "--out", str(tmp_path / "pred"), "--no-progress"]) == 0
    assert len(list((tmp_path / "pred").rglob("*_labelIds.png"))) == 4


def test_rare_class_crops_keep_the_drawn_class(synthcity_root: Path) -> None:
    cfg = load_config("configs/synthcity/daformer.yaml", [f"data.source.root={synthcity_root / 'gta'}"])
    dataset = build_dataset(cfg.data.source, crop=(24, 24), train=True)
    whole = build_dataset(cfg.data.source, crop=None, train=False)
    pixels = np.stack([np.bincount(whole[i]["label"].flatten().numpy(), minlength=256)[:19] for i in range(8)])
    index, cls = np.unravel_index(np.argmin(np.where(pixels >= 40, pixels, 10**9)), pixels.shape)  # rarest present
    kept = plain = 0
    for seed in range(20):
        torch.manual_seed(seed)
        kept += int((dataset.load_keeping(int(index), int(cls), 10)["label"] == int(cls)).sum() >= 10)
        torch.manual_seed(seed)
        plain += int((dataset[int(index)]["label"] == int(cls)).sum() >= 10)
    assert kept >= 18 and kept > plain


def _onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def test_daformer_trains_in_bf16(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("daformer", "train.amp=bf16", "train.eval_every=0", "data.rcs.min_pixels=20")
    Trainer(cfg, progress=False).fit()
    records = [json.loads(line) for line in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss/total" in r]
    assert len(losses) == 2 and all(np.isfinite(r["loss/total"]) and r["loss/fd"] >= 0 for r in losses)
