"""Shared fixtures: a tiny SynthCity on disk and configs that train on it in seconds."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: no spinning on a shared CPU

import pytest
import torch

from camix.config import Config, load_config

torch.set_num_threads(2)

TINY_SIZE = (96, 48)


@pytest.fixture(scope="session")
def synthcity_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SynthCity of 8 source, 6 target-train and 4 target-val images at 96x48."""
    from camix.data.synthcity import generate

    root = tmp_path_factory.mktemp("synthcity")
    generate(root, seed=0, size=TINY_SIZE, num_source=8, num_target_train=6, num_target_val=4, progress=False)
    return root


def tiny_overrides(root: Path, out_dir: Path) -> list[str]:
    """Overrides that point a SynthCity config at the tiny data and make it train in seconds."""
    return [
        f"out_dir={out_dir}",
        "model.pretrained=null",
        f"data.source.root={root / 'gta'}",
        f"data.target.root={root / 'cityscapes'}",
        f"data.val.root={root / 'cityscapes'}",
        "data.crop=[48, 48]",
        "data.workers=0",
        "train.iterations=2",
        "train.eval_every=2",
        "train.checkpoint_every=2",
        "train.log_every=1",
        "method.noise_passes=2",
        "method.threshold_ramp=2",
    ]


@pytest.fixture
def tiny_config(synthcity_root: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``tiny_config("camix", "train.iterations=4")`` -> a Config of configs/synthcity/<name>.yaml on tiny data."""

    def make(name: str, *extra: str) -> Config:
        overrides = tiny_overrides(synthcity_root, tmp_path / name)
        if name == "oracle":  # trains on the labelled target train split
            overrides.append(f"data.source.root={synthcity_root / 'cityscapes'}")
        return load_config(f"configs/synthcity/{name}.yaml", [*overrides, *extra])

    return make


def constant_checkpoint(path: Path, cfg: Config, class_id: int, iteration: int = 7) -> Path:
    """A camix checkpoint of ``cfg``'s network that predicts ``class_id`` everywhere (zero classifier, one-hot bias)."""
    from camix.checkpoint import FORMAT
    from camix.config_tree import to_dict
    from camix.io import atomic_torch_save
    from camix.models import build_model

    model = build_model(cfg.model.name, cfg.model.num_classes, cfg.model.aspp_branches)
    with torch.no_grad():
        for conv in model.layer5.conv2d_list:  # type: ignore[union-attr]
            conv.weight.zero_()
            conv.bias.zero_()
        model.layer5.conv2d_list[0].bias[class_id] = 5.0  # type: ignore[index]
    state = {"format": FORMAT, "iteration": iteration, "config": to_dict(cfg), "model": model.state_dict()}
    atomic_torch_save({**state, "teacher": model.state_dict()}, path)
    return path
