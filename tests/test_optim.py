"""The optimiser: camix's deduplicated SGD and the released code's duplicated backbone list (docs/fidelity.md)."""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camix.config import OptimConfig
from camix.errors import ConfigError
from camix.models import build_model
from camix.optim import build_optimizer, release_param_list

LR, MOMENTUM, DECAY = 0.05, 0.9, 5e-4


def released_backbone(model: nn.Module) -> Iterator[nn.Parameter]:
    """The released DeepLab-v2's ``get_1x_lr_params_NOscale``, written from its description: the stem conv, the
    stem BN and layer1..4; for every module each of them visits, every (recursive) parameter that requires grad."""
    for block in (model.conv1, model.bn1, model.layer1, model.layer2, model.layer3, model.layer4):
        for module in block.modules():
            for param in module.parameters():
                if param.requires_grad:
                    yield param


def released_optimizer(model: nn.Module) -> torch.optim.SGD:
    """The released ``optim_parameters``: backbone at lr, ``layer5.parameters()`` at 10 lr; PyTorch's loop SGD."""
    groups = [
        {"params": list(released_backbone(model)), "lr": LR},
        {"params": list(model.layer5.parameters()), "lr": 10 * LR},  # type: ignore[union-attr]
    ]
    with pytest.warns(UserWarning, match="duplicate parameters"):
        return torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM, weight_decay=DECAY, foreach=False)


def expected_multiplicity(name: str) -> int:
    if name.startswith("layer5."):
        return 1
    if re.fullmatch(r"layer\d\.\d+\.downsample\.0\.weight", name):
        return 4
    if re.fullmatch(r"layer\d\.\d+\.conv\d\.weight", name):
        return 3
    assert name == "conv1.weight", name
    return 1


@pytest.mark.parametrize("arch", ["deeplabv2_small", "deeplabv2_tiny"])
def test_multiplicity_of_every_tensor(arch: str) -> None:
    model = build_model(arch, 19)
    optimizer = build_optimizer(model, OptimConfig(duplicate_backbone_params=True))
    counts = Counter(id(p) for group in optimizer.param_groups for p in group["params"])
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert sum(counts.values()) == sum(expected_multiplicity(name) for name in trainable)
    for name, param in trainable.items():
        assert counts[id(param)] == expected_multiplicity(name), name
    downsample = [n for n in trainable if "downsample" in n]
    assert downsample and all(counts[id(trainable[n])] == 4 for n in downsample)
    frozen = [p for p in model.parameters() if not p.requires_grad]  # BatchNorm affine, unused ASPP branches
    assert frozen and all(counts[id(p)] == 0 for p in frozen)
    plain = build_optimizer(model, OptimConfig())
    assert Counter(id(p) for g in plain.param_groups for p in g["params"]) == Counter(map(id, trainable.values()))


def test_release_list_order_matches_the_released_walk() -> None:
    model = build_model("deeplabv2_small", 19)
    backbone, classifier = release_param_list(model)
    assert [id(p) for p in backbone] == [id(p) for p in released_backbone(model)]
    assert [id(p) for p in classifier] == [id(p) for p in model.layer5.parameters() if p.requires_grad]


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    g = torch.Generator().manual_seed(3)
    for _ in range(steps):
        image = torch.randn(2, 3, 40, 40, generator=g) * 50
        label = torch.randint(0, 19, (2, 40, 40), generator=g)
        logits = F.interpolate(model(image), size=(40, 40), mode="bilinear", align_corners=True)
        optimizer.zero_grad()
        F.cross_entropy(logits, label).backward()
        optimizer.step()


def test_sgd_steps_equal_the_released_loop_sgd() -> None:
    torch.manual_seed(0)
    reference = build_model("deeplabv2_small", 19).train()
    ours = copy.deepcopy(reference)
    plain = copy.deepcopy(reference)
    cfg = OptimConfig(lr=LR, momentum=MOMENTUM, weight_decay=DECAY, classifier_lr_mult=10.0)
    train_steps(reference, released_optimizer(reference), 4)
    train_steps(ours, build_optimizer(ours, OptimConfig(**{**cfg.__dict__, "duplicate_backbone_params": True})), 4)
    train_steps(plain, build_optimizer(plain, cfg), 4)
    moved = {}
    for (name, a), b, c in zip(reference.named_parameters(), ours.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b), name
        moved[name] = (a - c).abs().max().item()
    assert moved["layer1.0.conv1.weight"] > 0 and moved["layer5.conv2d_list.0.weight"] > 0  # duplicates do matter
    assert moved["bn1.weight"] == 0  # frozen


def test_duplicated_optimizer_state_round_trips() -> None:
    """Checkpoints of the duplicated optimiser load back (each tensor has one momentum buffer)."""
    torch.manual_seed(0)
    model = build_model("deeplabv2_tiny", 19)
    cfg = OptimConfig(lr=LR, duplicate_backbone_params=True)
    optimizer = build_optimizer(model, cfg)
    train_steps(model, optimizer, 1)
    state = copy.deepcopy(optimizer.state_dict())
    again = build_optimizer(model, cfg)
    again.load_state_dict(state)
    assert len(again.state) == len([p for p in model.parameters() if p.requires_grad])


def test_duplicates_refuse_the_fp16_gradient_scaler() -> None:
    """GradScaler.unscale_ divides each listed gradient once per copy: fp16 with duplicates would be wrong."""
    model = build_model("deeplabv2_tiny", 19)
    with pytest.raises(ConfigError, match="amp=fp16"):
        build_optimizer(model, OptimConfig(duplicate_backbone_params=True), amp="fp16")
    assert build_optimizer(model, OptimConfig(duplicate_backbone_params=True), amp="bf16") is not None
    assert build_optimizer(model, OptimConfig(), amp="fp16") is not None
