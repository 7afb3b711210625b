"""load_pretrained: each community checkpoint format loads, skips are reported, bad files fail in one line."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from camix.errors import CheckpointError
from camix.models import BasicBlock, DeepLabV2, build_model, load_pretrained
from camix.models.weights import REASON_SHAPE, REASON_UNKNOWN, REASON_UNUSED_CLASSIFIER

Writer = Callable[[Path], object]
CLASSIFIER = [f"layer5.conv2d_list.{i}.{k}" for i in range(4) for k in ("weight", "bias")]


@dataclass
class Opaque:
    """A Python object that safe (weights-only) loading refuses."""

    value: int = 1


def trained(name: str = "deeplabv2_tiny", seed: int = 1, **kwargs: object) -> nn.Module:
    """A model whose every tensor differs from a fresh one (random values, BN statistics included)."""
    torch.manual_seed(seed)
    model = build_model(name, **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5)
    return model


def fresh(name: str = "deeplabv2_tiny", **kwargs: object) -> nn.Module:
    torch.manual_seed(2)
    return build_model(name, **kwargs)  # type: ignore[arg-type]


def same(a: dict[str, Tensor], b: dict[str, Tensor], keys: list[str]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


def backbone_keys(model: nn.Module) -> list[str]:
    return [k for k in model.state_dict() if not k.startswith("layer5.")]


def test_coco_init_loads_with_the_classifier_skipped_for_another_class_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = trained(num_classes=21).state_dict()
    path = tmp_path / "resnet101COCO-41f33a49.pth"
    torch.save(source, path)
    model = fresh()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="camix.models"):
        report = load_pretrained(model, path)
    state = model.state_dict()
    assert report.format == "deeplab" and report.num_loaded == len(backbone_keys(model))
    assert same(state, source, backbone_keys(model)) and same(state, init, CLASSIFIER)
    assert sorted(report.skipped[REASON_SHAPE]) == sorted(CLASSIFIER) and report.missing == CLASSIFIER
    assert report.mismatched["layer5.conv2d_list.0.weight"] == ([21, 128, 3, 3], [19, 128, 3, 3])
    messages = [r.getMessage() for r in caplog.records if r.name == "camix.models"]
    assert len(messages) == 3  # loaded / skipped (grouped) / missing: not one line per tensor
    assert f"loaded {report.num_loaded} tensors" in messages[0]
    assert "skipped 8 tensors: shape differs" in messages[1]
    assert "[21, 128, 3, 3] vs model [19, 128, 3, 3]" in messages[1]
    assert all(r.levelno == logging.INFO for r in caplog.records)  # a new classifier is routine for an init


def test_coco_init_with_the_same_class_count_loads_everything(tmp_path: Path) -> None:
    source = trained().state_dict()
    torch.save(source, tmp_path / "coco.pth")
    model = fresh()
    report = load_pretrained(model, tmp_path / "coco.pth", strict=True)
    assert report.num_loaded == len(source) and not report.skipped and not report.missing
    assert same(model.state_dict(), source, list(source))


def test_imagenet_init_strips_scale_and_ignores_layer5(tmp_path: Path) -> None:
    """The 2017 file: legacy serialisation, ``Scale.`` prefix, no BatchNorm counters."""
    source = trained().state_dict()
    saved = {f"Scale.{k}": v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "DeepLab_resnet_pretrained_init-f81d91e8.pth"
    torch.save(saved, path, _use_new_zipfile_serialization=False)
    model = fresh()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_pretrained(model, path)
    assert report.format == "deeplab-imagenet"
    assert sorted(report.skipped[REASON_UNUSED_CLASSIFIER]) == sorted(CLASSIFIER)  # same shape, still skipped
    weights = [k for k in backbone_keys(model) if not k.endswith("num_batches_tracked")]
    assert same(model.state_dict(), source, weights) and same(model.state_dict(), init, CLASSIFIER)
    assert report.missing == CLASSIFIER


def test_torchvision_resnet_loads_without_fc_and_notes_the_stride(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = {k: v for k, v in trained("deeplabv2_small").state_dict().items() if not k.startswith("layer5.")}
    source |= {"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}
    torch.save(source, tmp_path / "resnet101-imagenet.pth")
    model = fresh("deeplabv2_small")
    with caplog.at_level(logging.INFO, logger="camix.models"):
        report = load_pretrained(model, tmp_path / "resnet101-imagenet.pth")
    assert report.format == "torchvision" and report.skipped == {REASON_UNUSED_CLASSIFIER: ["fc.weight", "fc.bias"]}
    assert same(model.state_dict(), source, backbone_keys(model)) and report.missing == CLASSIFIER
    assert report.notes and "stride" in caplog.text
    torch.save({"model": source, "epoch": 90}, tmp_path / "torchvision-reference-checkpoint.pth")
    nested = load_pretrained(fresh("deeplabv2_small"), tmp_path / "torchvision-reference-checkpoint.pth")
    assert nested.format == "torchvision" and nested.num_loaded == report.num_loaded


def test_camix_checkpoint_loads_the_student(tmp_path: Path) -> None:
    student, teacher = trained(seed=1).state_dict(), trained(seed=3).state_dict()
    checkpoint = {
        "format": "camix-checkpoint/1",
        "iteration": 10,
        "config": {"model": {"name": "deeplabv2_tiny", "num_classes": 19}},
        "model": student,
        "teacher": teacher,
        "rng": [{"global": {"python": random.getstate(), "numpy": np.random.get_state()}}],
    }
    torch.save(checkpoint, tmp_path / "last.pt")
    model = fresh()
    report = load_pretrained(model, tmp_path / "last.pt", strict=True)
    assert report.format == "camix" and same(model.state_dict(), student, list(student))


def test_nested_state_dict_with_a_ddp_prefix(tmp_path: Path) -> None:
    source = trained().state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.items()}, "epoch": 3}, tmp_path / "ddp.pth")
    model = fresh()
    assert load_pretrained(model, tmp_path / "ddp.pth").num_loaded == len(source)
    assert same(model.state_dict(), source, list(source))


def test_camix_checkpoint_with_another_class_count_is_a_warning_or_a_strict_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.save({"model": trained(num_classes=16).state_dict()}, tmp_path / "syn.pt")
    with caplog.at_level(logging.INFO, logger="camix.models"):
        report = load_pretrained(fresh(), tmp_path / "syn.pt")
    assert sorted(report.skipped[REASON_SHAPE]) == sorted(CLASSIFIER)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "skipped 8 tensors: shape differs" in warnings[0]
    with pytest.raises(CheckpointError, match=r"syn\.pt: .*skipped 8: shape differs.*strict loading"):
        load_pretrained(fresh(), tmp_path / "syn.pt", strict=True)


def test_extra_keys_are_reported_not_fatal(tmp_path: Path) -> None:
    source = trained().state_dict() | {"aux_head.weight": torch.zeros(3)}
    torch.save(source, tmp_path / "extra.pth")
    report = load_pretrained(fresh(), tmp_path / "extra.pth")
    assert report.skipped == {REASON_UNKNOWN: ["aux_head.weight"]} and not report.missing


def test_objects_need_trust(tmp_path: Path) -> None:
    source = trained().state_dict()
    torch.save({"model": source, "extra": Opaque()}, tmp_path / "obj.pt")
    with pytest.raises(CheckpointError, match=r"obj\.pt: holds Python objects besides tensors.*trusted=True"):
        load_pretrained(fresh(), tmp_path / "obj.pt")
    assert load_pretrained(fresh(), tmp_path / "obj.pt", trusted=True).num_loaded == len(source)


def half_width_tiny() -> nn.Module:
    """Same names as deeplabv2_tiny, every shape different."""
    return DeepLabV2(BasicBlock, (1, 1, 1, 1), planes=(8, 16, 32, 64), stem_width=8)


def write_truncated(path: Path) -> None:
    torch.save(trained().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("writer", "match"),
    [
        (None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_text("road: 0\nsky: 10\n"), "not a readable PyTorch checkpoint"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), "not a readable PyTorch checkpoint"),
        (lambda p: p.write_bytes(b""), "not a readable PyTorch checkpoint"),
        (write_truncated, "not a readable PyTorch checkpoint"),
        (lambda p: torch.save(torch.zeros(3), p), "holds a Tensor, not a state dict"),
        (lambda p: torch.save({"encoder.weight": torch.zeros(3)}, p), "no tensor matches model deeplabv2_tiny"),
        (lambda p: torch.save(half_width_tiny().state_dict(), p), "names match but not their shapes"),
    ],
)
def test_bad_files_raise_one_line_checkpoint_errors(tmp_path: Path, writer: Writer | None, match: str) -> None:
    path = tmp_path / "weights.pth"
    if writer is not None:
        writer(path)
    model = fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=match) as info:
        load_pretrained(model, path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert same(model.state_dict(), before, list(before))  # nothing half-loaded


@pytest.mark.slow
def test_r101_imagenet_init_round_trip(tmp_path: Path) -> None:
    """The real layout at full size: every r101 backbone tensor of a ``Scale.`` file lands in place."""
    torch.manual_seed(0)
    source = build_model("deeplabv2_r101", num_classes=21).state_dict()
    saved = {f"Scale.{k}": v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    torch.save(saved, tmp_path / "init.pth", _use_new_zipfile_serialization=False)
    model = fresh("deeplabv2_r101")
    report = load_pretrained(model, tmp_path / "init.pth")
    weights = [k for k in backbone_keys(model) if not k.endswith("num_batches_tracked")]
    assert sorted(report.loaded) == sorted(weights) and report.missing == CLASSIFIER
    assert same(model.state_dict(), source, weights)
