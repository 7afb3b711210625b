"""HRDA end to end on a small SynthCity: each HRDA config trains 3 iterations (debug panel, evaluation), a resumed
HRDA run reproduces the uninterrupted one, and its checkpoint evaluates, predicts and exports to ONNX."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from camix.checkpoint import load_checkpoint, load_for_inference
from camix.cli import main
from camix.config import Config, load_config
from camix.config_tree import PACKAGED_CONFIGS, replace
from camix.models import HRDA
from camix.predict import segment_image
from camix.runtime import select_device
from camix.train import Trainer, train

HRDA_CONFIGS = sorted(p.stem for p in (PACKAGED_CONFIGS / "synthcity").glob("hrda*.yaml"))
SIZE = (128, 64)  # daformer_mittiny's MiT needs a context of at least 32x32 pixels: 64x64 crops


@pytest.fixture(scope="module")
def synthcity_128(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SynthCity of 8 source, 6 target-train and 4 target-val images at 128x64."""
    from camix.data.synthcity import generate

    root = tmp_path_factory.mktemp("synthcity_128")
    generate(root, seed=0, size=SIZE, num_source=8, num_target_train=6, num_target_val=4, progress=False)
    return root


def hrda_config(root: Path, out_dir: Path, name: str, *extra: str) -> Config:
    """configs/synthcity/<name>.yaml on the small data: 64x64 crops, a 32x32 detail every 16 pixels."""
    overrides = [
        f"out_dir={out_dir}",
        "model.pretrained=null",
        f"data.source.root={root / 'gta'}",
        f"data.target.root={root / 'cityscapes'}",
        f"data.val.root={root / 'cityscapes'}",
        "data.crop=[64, 64]",
        "data.workers=0",
        "model.hrda.detail_crop=[32, 32]",
        "model.hrda.detail_stride=[16, 16]",
        "model.hrda.attention_channels=8",
        "data.rcs.min_pixels=10",
        "train.iterations=3",
        "train.eval_every=3",
        "train.checkpoint_every=3",
        "train.log_every=1",
        "method.noise_passes=2",
        "method.threshold_ramp=3",
        "optim.warmup_iterations=0",
    ]
    if load_config(PACKAGED_CONFIGS / "synthcity" / f"{name}.yaml").method.mic.weight > 0:
        overrides.append("method.mic.block=8")
    return load_config(PACKAGED_CONFIGS / "synthcity" / f"{name}.yaml", [*overrides, *extra])


def records(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", HRDA_CONFIGS)
def test_every_hrda_config_trains_three_iterations(synthcity_128: Path, tmp_path: Path, name: str) -> None:
    cfg = hrda_config(synthcity_128, tmp_path / name, name, "train.debug_every=3")
    assert cfg.model.hrda is not None and cfg.model.name == "daformer_mittiny"
    summary = train(cfg, progress=False)
    run = Path(cfg.out_dir)
    losses = [r for r in records(run) if "loss/total" in r]
    assert [r["iteration"] for r in losses] == [1, 2, 3]
    expected = {"loss/seg", "loss/con", "loss/fd", "loss/total"} | ({"loss/mic"} if cfg.method.mic.weight else set())
    assert {k for k in losses[0] if k.startswith("loss/")} == expected
    assert all(math.isfinite(float(v)) for r in losses for k, v in r.items() if k.startswith("loss/"))  # type: ignore[arg-type]
    assert 0.0 <= summary["final"]["miou19"] <= 100.0
    assert (run / "debug" / "iter_0000003.png").is_file()
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert any(key.startswith("attention.") for key in state["model"])
    assert any(key.startswith("base.backbone.") for key in state["teacher"])


def test_resumed_hrda_run_reproduces_the_uninterrupted_one(synthcity_128: Path, tmp_path: Path) -> None:
    straight = hrda_config(
        synthcity_128, tmp_path / "straight", "hrda_camix", "train.iterations=4", "train.checkpoint_every=2"
    )
    Trainer(straight, progress=False).fit()
    stopped = replace(straight, out_dir=str(tmp_path / "stopped"))
    assert Trainer(stopped, progress=False).fit(until=2)["interrupted"]
    Trainer(stopped, resume="auto", progress=False).fit()

    def losses(run: Path) -> list[dict[str, object]]:
        logged = [r for r in records(run) if "loss/total" in r]
        return [{k: v for k, v in r.items() if k.startswith("loss/") or k == "iteration"} for r in logged]

    expected = losses(Path(straight.out_dir))
    assert [r["iteration"] for r in expected] == [1, 2, 3, 4]
    assert losses(tmp_path / "stopped") == expected  # bit-identical floats, detail crops included
    runs = (straight.out_dir, stopped.out_dir)
    final = [load_checkpoint(Path(run) / "checkpoints" / "last.pt")["model"] for run in runs]
    assert all(torch.equal(final[0][key], final[1][key]) for key in final[0])


def test_hrda_checkpoint_evaluates_predicts_and_exports(synthcity_128: Path, tmp_path: Path) -> None:
    cfg = hrda_config(synthcity_128, tmp_path / "run", "hrda", "train.iterations=1", "train.eval_every=1")
    train(cfg, progress=False)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    loaded, model, _ = load_for_inference(checkpoint)
    assert isinstance(model, HRDA) and loaded.model.hrda == cfg.model.hrda

    assert main(["evaluate", "--ckpt", str(checkpoint), "--no-progress", "--sliding", "64x64"]) == 0
    rgb = (np.random.default_rng(0).random((70, 130, 3)) * 255).astype(np.uint8)
    labels = segment_image(model, rgb, loaded, None, select_device("cpu"))
    assert labels.shape == (70, 130) and labels.max() < 19

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    onnx_file = tmp_path / "hrda.onnx"
    assert main(["export", "--ckpt", str(checkpoint), "--onnx", str(onnx_file), "--size", "128x64"]) == 0
    from camix.export import max_abs_difference, random_image

    assert max_abs_difference(model, onnx_file, random_image(1, (64, 128), seed=3)) < 1e-4


def test_hrda_refuses_a_checkpoint_trained_without_it(synthcity_128: Path, tmp_path: Path) -> None:
    cfg = hrda_config(synthcity_128, tmp_path / "run", "hrda", "train.iterations=1", "train.eval_every=1")
    plain = replace(cfg, **{"model.hrda": None, "out_dir": str(tmp_path / "plain")})
    train(plain, progress=False)
    with pytest.raises(Exception, match=r"trained without HRDA \(model.hrda\)"):
        load_for_inference(tmp_path / "plain" / "checkpoints" / "last.pt", overrides=["model.hrda.detail_crop=[32,32]"])


def test_two_process_gloo_training_with_hrda(synthcity_128: Path, tmp_path: Path) -> None:
    """DDP with HRDA: each rank draws its own detail crops, the ranks' weights stay identical."""
    import torch.multiprocessing as mp

    from tests.test_distributed import free_port, worker

    cfg = hrda_config(synthcity_128, tmp_path / "ddp", "hrda_camix", "train.iterations=2", "train.eval_every=2")
    mp.spawn(worker, args=(cfg, free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for part in ("model", "teacher"):
        for key, value in rank0[part].items():
            if "running" not in key and "num_batches" not in key:  # BatchNorm statistics are per rank
                assert torch.equal(value, rank1[part][key]), f"{part}.{key} differs between ranks"
    assert len([r for r in records(tmp_path / "ddp") if "loss/total" in r]) == 2


def test_hrda_trains_under_bf16_autocast(synthcity_128: Path, tmp_path: Path) -> None:
    cfg = hrda_config(synthcity_128, tmp_path / "bf16", "hrda_camix_mic", "train.iterations=2", "train.amp=bf16")
    train(cfg, progress=False)
    losses = [r for r in records(Path(cfg.out_dir)) if "loss/total" in r]
    assert len(losses) == 2 and all(math.isfinite(float(r["loss/total"])) for r in losses)  # type: ignore[arg-type]
