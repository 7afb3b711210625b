"""HRDA's network wrapper: shapes, training vs inference, the sliding windows, interleaved passes, the heads."""

from __future__ import annotations

import pytest
import torch

from camix import functional as Fn
from camix.config import load_config
from camix.models import HRDA, HrdaOutput, base_network, build_network, check_hrda_config, param_groups
from camix.models.batchnorm import deinterleave, interleave, per_pass_batch_stats
from camix.models.daformer import DAFormer
from camix.validation import ConfigKeyError

NETWORKS = ("daformer_mittiny", "deeplabv2_tiny")


def hrda_model(name: str, *extra: str) -> HRDA:
    torch.manual_seed(0)
    sizes = ["data.crop=[64,64]", "model.hrda.detail_crop=[32,32]", "model.hrda.attention_channels=8"]
    cfg = load_config(None, [f"model.name={name}", *sizes, *extra])
    model = build_network(cfg.model)
    assert isinstance(model, HRDA)
    return model


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("attention", ["classwise", "single"])
def test_training_forward_shapes(name: str, attention: str) -> None:
    model = hrda_model(name, f"model.hrda.attention={attention}")
    stride = model.output_stride
    out = model(torch.randn(2, 3, 64, 96), detail_box=(16, 32))
    assert isinstance(out, HrdaOutput)
    assert out.fused.shape == (2, 19, 64 // stride, 96 // stride)
    assert out.detail.shape == (2, 19, 32 // stride, 32 // stride)
    assert out.attention.shape == (2, 19 if attention == "classwise" else 1, 32 // stride, 48 // stride)
    assert float(out.attention.detach().min()) > 0 and float(out.attention.detach().max()) < 1  # after the sigmoid


@pytest.mark.parametrize("name", NETWORKS)
def test_training_forward_is_the_fusion_of_context_and_detail(name: str) -> None:
    model = hrda_model(name).eval()
    x = torch.randn(1, 3, 64, 64)
    top = 4 * model.output_stride  # a multiple of twice the output stride; 32 rows fit below it
    with torch.no_grad():
        out = model(x, detail_box=(top, 0))
        lr, attention, _ = model.context(x)
        hr = model.detail(x[..., top : top + 32, :32])
    expected = Fn.hrda_fuse(lr, hr, attention, (top // model.output_stride, 0))
    torch.testing.assert_close(out.fused, expected)
    torch.testing.assert_close(out.detail, hr)


@pytest.mark.parametrize("name", NETWORKS)
def test_inference_equals_training_when_the_detail_covers_the_input(name: str) -> None:
    """One detail window over the whole input: the inference is the training forward's fusion at box (0, 0)."""
    model = hrda_model(name, "model.hrda.detail_crop=[64,64]").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        trained = model(x, detail_box=(0, 0))
        inferred = model(x)
    assert isinstance(trained, HrdaOutput)
    torch.testing.assert_close(inferred, trained.fused)


@pytest.mark.parametrize("name", NETWORKS)
def test_inference_averages_overlapping_windows(name: str) -> None:
    model = hrda_model(name).eval()  # 32x32 windows every 16 pixels over 64x96
    x = torch.randn(2, 3, 64, 96)
    stride = model.output_stride
    with torch.no_grad():
        slid = model.slide(x)
        total = torch.zeros(2, 19, 64 // stride, 96 // stride)
        count = torch.zeros(1, 1, 64 // stride, 96 // stride)
        boxes = Fn.slide_boxes(64, 96, (32, 32), (16, 16))
        assert len(boxes) == 3 * 5
        for top, left in boxes:
            logits = model.detail(x[..., top : top + 32, left : left + 32])
            total[..., top // stride : (top + 32) // stride, left // stride : (left + 32) // stride] += logits
            count[..., top // stride : (top + 32) // stride, left // stride : (left + 32) // stride] += 1
        lr, attention, _ = model.context(x)
        fused = model(x)
    torch.testing.assert_close(slid, total / count, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused, Fn.hrda_fuse(lr, slid, attention, (0, 0)), atol=1e-5, rtol=1e-5)


def test_inference_pads_sides_that_are_not_multiples() -> None:
    model = hrda_model("daformer_mittiny").eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 70, 100))
        plain = base_network(model)(torch.randn(1, 3, 70, 100))
    assert logits.shape == plain.shape == (1, 19, 18, 25)  # like the plain network: ceil(H/4), ceil(W/4)


def test_batched_windows_keep_each_pass_apart() -> None:
    """Teacher passes in one forward (interleaved, per-pass BatchNorm statistics) = each pass in its own forward,
    sliding windows included (batched window-major, so the passes stay interleaved)."""
    model = hrda_model("daformer_mittiny").train()
    for module in model.modules():  # no stochastic layers: the two routes must agree exactly
        if isinstance(module, torch.nn.Dropout2d) or type(module).__name__ == "DropPath":
            module.eval()
    clean, noisy = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        with per_pass_batch_stats(model, 2, track=False):
            together = deinterleave(model(interleave([clean, noisy])), 2)
        with per_pass_batch_stats(model, 1, track=False):
            apart = torch.stack([model(clean), model(noisy)], dim=1)
        with per_pass_batch_stats(model, 1, track=False):
            mixed = deinterleave(model(interleave([clean, noisy])), 2)  # one pass over both: other statistics
    torch.testing.assert_close(together, apart, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(mixed, apart, atol=1e-3)


@pytest.mark.parametrize("name", NETWORKS)
def test_both_heads_learn_at_the_head_rate(name: str) -> None:
    model = hrda_model(name)
    groups = {str(g["name"]): g for g in param_groups(model, lr=1.0, weight_decay=0.0, classifier_lr_mult=10.0)}
    names = {id(p): n for n, p in model.named_parameters()}
    head = {names[id(p)].split(".")[0] + "." + names[id(p)].split(".")[1] for p in groups["classifier"]["params"]}  # type: ignore[attr-defined]
    base_head = "base.decode_head" if name.startswith("daformer") else "base.layer5"
    assert groups["classifier"]["lr"] == 10.0
    assert {h for h in head if h.startswith("base.")} == {base_head}
    assert any(h.startswith("attention.") for h in head)
    assert not any(names[id(p)].startswith("attention.") for p in groups["backbone"]["params"])  # type: ignore[attr-defined]


def test_build_network_plain_without_hrda_and_base_network() -> None:
    cfg = load_config(None, ["model.name=daformer_mittiny"])
    model = build_network(cfg.model)
    assert isinstance(model, DAFormer) and base_network(model) is model
    wrapped = hrda_model("daformer_mittiny")
    assert base_network(wrapped) is wrapped.base and isinstance(wrapped.base, DAFormer)


def test_check_hrda_config_needs_multiples_of_twice_the_output_stride() -> None:
    ok = load_config(None, ["model.name=deeplabv2_tiny", "data.crop=[64,64]", "model.hrda.detail_crop=[32,32]"])
    check_hrda_config(ok)
    bad = load_config(None, ["model.name=deeplabv2_tiny", "data.crop=[64,64]", "model.hrda.detail_crop=[40,40]"])
    with pytest.raises(ConfigKeyError, match=r"model.hrda.detail_crop.*40x40 is not a multiple of 16"):
        check_hrda_config(bad)
    daformer = load_config(None, ["model.name=daformer_mittiny", "data.crop=[64,64]", "model.hrda.detail_crop=[40,40]"])
    check_hrda_config(daformer)  # DAFormer's output stride 4: multiples of 8
    crop = load_config(None, ["model.name=daformer_mittiny", "data.crop=[60,60]", "model.hrda.detail_crop=[32,32]"])
    with pytest.raises(ConfigKeyError, match=r"'data.crop': 60x60 is not a multiple of 8"):
        check_hrda_config(crop)
