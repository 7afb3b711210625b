"""DeepLab-v2: the community state-dict contract, output shapes, ASPP branches, BatchNorm and parameter groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camix.errors import ConfigError
from camix.models import MODELS, build_model, count_parameters, output_size, param_groups

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def community_keys(layers: tuple[int, ...], convs_per_block: int, downsample_layers: tuple[int, ...]) -> list[str]:
    """State-dict names of the community DeepLab-v2, written from the architecture spec."""
    keys = ["conv1.weight", *(f"bn1.{k}" for k in BN_KEYS)]
    for layer, blocks in enumerate(layers, start=1):
        for block in range(blocks):
            prefix = f"layer{layer}.{block}"
            for j in range(1, convs_per_block + 1):
                keys += [f"{prefix}.conv{j}.weight", *(f"{prefix}.bn{j}.{k}" for k in BN_KEYS)]
            if block == 0 and layer in downsample_layers:
                keys += [f"{prefix}.downsample.0.weight", *(f"{prefix}.downsample.1.{k}" for k in BN_KEYS)]
    for branch in range(4):
        keys += [f"layer5.conv2d_list.{branch}.weight", f"layer5.conv2d_list.{branch}.bias"]
    return keys


@pytest.fixture(scope="module")
def r101() -> nn.Module:
    torch.manual_seed(0)
    return build_model("deeplabv2_r101")


@pytest.fixture
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return build_model("deeplabv2_tiny")


def test_r101_state_dict_names_follow_the_community_model(r101: nn.Module) -> None:
    expected = community_keys((3, 4, 23, 3), convs_per_block=3, downsample_layers=(1, 2, 3, 4))
    assert list(r101.state_dict()) == expected
    assert len(expected) == 1 + 5 + (3 + 4 + 23 + 3) * 3 * 6 + 4 * 6 + 8 == 632


@pytest.mark.parametrize(
    ("key", "shape"),
    [
        ("conv1.weight", (64, 3, 7, 7)),
        ("bn1.running_var", (64,)),
        ("layer1.0.conv1.weight", (64, 64, 1, 1)),
        ("layer1.0.downsample.0.weight", (256, 64, 1, 1)),
        ("layer1.2.conv3.weight", (256, 64, 1, 1)),
        ("layer2.0.conv1.weight", (128, 256, 1, 1)),
        ("layer2.0.downsample.1.weight", (512,)),
        ("layer3.22.conv2.weight", (256, 256, 3, 3)),
        ("layer4.0.downsample.0.weight", (2048, 1024, 1, 1)),
        ("layer4.2.conv3.weight", (2048, 512, 1, 1)),
        ("layer5.conv2d_list.0.weight", (19, 2048, 3, 3)),
        ("layer5.conv2d_list.3.weight", (19, 2048, 3, 3)),
        ("layer5.conv2d_list.3.bias", (19,)),
    ],
)
def test_r101_shapes(r101: nn.Module, key: str, shape: tuple[int, ...]) -> None:
    assert tuple(r101.state_dict()[key].shape) == shape


def test_r101_has_43_9_million_parameters(r101: nn.Module) -> None:
    assert round(count_parameters(r101) / 1e6, 1) == 43.9
    assert count_parameters(r101) == 43_901_068


def test_r101_strides_and_dilations_are_caffe_style(r101: nn.Module) -> None:
    assert r101.maxpool.ceil_mode is True
    assert r101.layer2[0].conv1.stride == (2, 2) and r101.layer2[0].conv2.stride == (1, 1)
    assert r101.layer2[0].downsample[0].stride == (2, 2)
    assert {b.conv2.dilation for b in r101.layer3} == {(2, 2)}
    assert {b.conv2.dilation for b in r101.layer4} == {(4, 4)}
    assert [c.dilation[0] for c in r101.layer5.conv2d_list] == [6, 12, 18, 24]
    assert [c.padding[0] for c in r101.layer5.conv2d_list] == [6, 12, 18, 24]
    assert r101.output_stride == 8 and r101.num_classes == 19


def test_r101_forward_on_a_small_input(r101: nn.Module) -> None:
    r101.eval()
    with torch.no_grad():
        out = r101(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, 19, output_size(64), output_size(96)) == (1, 19, 9, 13)


@pytest.mark.slow
def test_r101_forward_at_512(r101: nn.Module) -> None:
    r101.eval()
    with torch.no_grad():
        assert r101(torch.randn(1, 3, 512, 512)).shape == (1, 19, 65, 65)


@pytest.mark.parametrize(("size", "expected"), [(512, 65), (1024, 129), (128, 17), (720, 91), (1280, 161)])
def test_output_size_formula(size: int, expected: int) -> None:
    assert output_size(size) == expected


@pytest.mark.parametrize(("h", "w"), [(512, 512), (512, 1024), (97, 130), (33, 65)])
def test_tiny_logits_are_at_stride_8(tiny: nn.Module, h: int, w: int) -> None:
    tiny.eval()
    with torch.no_grad():
        out = tiny(torch.randn(1, 3, h, w))
    assert out.shape == (1, 19, output_size(h), output_size(w))
    if (h, w) == (512, 1024):
        assert out.shape[-2:] == (65, 129)


def test_r18_and_r50_names_match_torchvision_resnets() -> None:
    r18 = build_model("deeplabv2_r18").state_dict()
    assert list(r18) == community_keys((2, 2, 2, 2), convs_per_block=2, downsample_layers=(2, 3, 4))
    r50 = build_model("deeplabv2_r50")
    assert list(r50.state_dict()) == community_keys((3, 4, 6, 3), convs_per_block=3, downsample_layers=(1, 2, 3, 4))
    assert round(count_parameters(r50) / 1e6, 1) == 24.9


@pytest.mark.parametrize(("name", "low", "high"), [("deeplabv2_tiny", 0.3e6, 1.5e6), ("deeplabv2_small", 0.8e6, 3e6)])
def test_small_variants_keep_the_design(name: str, low: float, high: float) -> None:
    model = build_model(name, num_classes=7)
    assert low <= count_parameters(model) <= high
    keys = list(model.state_dict())
    assert keys[0] == "conv1.weight" and keys[-1] == "layer5.conv2d_list.3.bias"
    assert model.layer5.conv2d_list[0].out_channels == 7 and model.output_stride == 8
    assert model.layer4[0].downsample is not None


def test_only_convolutions_require_grad(tiny: nn.Module) -> None:
    for name, module in tiny.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert not module.weight.requires_grad and not module.bias.requires_grad, name
        elif isinstance(module, nn.Conv2d):
            unused_branch = name in ("layer5.conv2d_list.2", "layer5.conv2d_list.3")  # aspp_branches=2
            assert module.weight.requires_grad != unused_branch, name
    trainable = build_model("deeplabv2_tiny", trainable_bn=True, aspp_branches=4)
    assert all(p.requires_grad for p in trainable.parameters())


def test_batchnorm_uses_batch_statistics_in_training_and_running_ones_in_eval(tiny: nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64) * 3 + 1
    before = tiny.bn1.running_mean.clone()
    tiny.train()
    tiny(x)
    assert not torch.equal(tiny.bn1.running_mean, before)
    stem = tiny.conv1(x)
    expected = F.batch_norm(stem, None, None, training=True)  # frozen affine: weight 1, bias 0
    torch.testing.assert_close(tiny.bn1(stem), expected)
    tiny.eval()
    after = tiny.bn1.running_mean.clone()
    with torch.no_grad():
        torch.testing.assert_close(tiny(x), tiny(x))
    assert torch.equal(tiny.bn1.running_mean, after)


def test_param_groups_split_backbone_and_classifier(tiny: nn.Module) -> None:
    groups = param_groups(tiny, lr=2.5e-4, weight_decay=5e-4)
    assert [g["name"] for g in groups] == ["backbone", "classifier"]
    backbone, classifier = groups
    assert backbone["lr"] == backbone["initial_lr"] == 2.5e-4 and backbone["lr_mult"] == 1.0
    assert classifier["lr"] == classifier["initial_lr"] == pytest.approx(2.5e-3) and classifier["lr_mult"] == 10.0
    assert backbone["weight_decay"] == classifier["weight_decay"] == 5e-4
    named = {id(p): n for n, p in tiny.named_parameters()}
    assert sorted(named[id(p)] for p in classifier["params"]) == sorted(
        f"layer5.conv2d_list.{i}.{k}"
        for i in range(2)
        for k in ("weight", "bias")  # the two branches in use
    )
    grouped = {id(p) for g in groups for p in g["params"]}
    assert grouped == {id(p) for p in tiny.parameters() if p.requires_grad}
    assert not any("bn" in named[i] or "downsample.1" in named[i] for i in grouped)


def test_sgd_step_moves_convolutions_but_not_frozen_batchnorm(tiny: nn.Module) -> None:
    optimizer = torch.optim.SGD(param_groups(tiny, lr=0.1, weight_decay=5e-4), momentum=0.9)
    conv, bn_weight = tiny.layer1[0].conv1.weight.clone(), tiny.layer1[0].bn1.weight.clone()
    tiny.train()
    tiny(torch.randn(2, 3, 64, 64)).square().mean().backward()
    optimizer.step()
    assert not torch.equal(tiny.layer1[0].conv1.weight, conv)
    assert torch.equal(tiny.layer1[0].bn1.weight, bn_weight)
    for group in optimizer.param_groups:  # what a poly schedule does
        group["lr"] = 0.1 * group["lr_mult"] * (1 - 10 / 100) ** 0.9
    assert optimizer.param_groups[1]["lr"] == pytest.approx(10 * optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("branches", [2, 4])
def test_aspp_sums_the_first_branches(branches: int) -> None:
    torch.manual_seed(1)
    model = build_model("deeplabv2_tiny", aspp_branches=branches).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        features = model.layer4(model.layer3(model.layer2(model.layer1(stem))))
        expected = sum(
            F.conv2d(features, conv.weight, conv.bias, padding=d, dilation=d)
            for conv, d in zip(model.layer5.conv2d_list[:branches], (6, 12, 18, 24), strict=False)
        )
        torch.testing.assert_close(model(x), expected)
    assert len(model.layer5.conv2d_list) == 4
    assert list(model.state_dict()) == list(build_model("deeplabv2_tiny").state_dict())


def test_aspp_2_leaves_the_last_branches_without_gradient() -> None:
    model = build_model("deeplabv2_tiny", aspp_branches=2)
    model(torch.randn(1, 3, 64, 64)).sum().backward()
    grads = [conv.weight.grad for conv in model.layer5.conv2d_list]
    assert grads[0] is not None and grads[1] is not None and grads[2] is None and grads[3] is None


def test_classifier_init_is_deeplabs() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv2_r18")
    weights = torch.cat([c.weight.flatten() for c in model.layer5.conv2d_list])
    assert abs(weights.std().item() - 0.01) < 5e-4 and abs(weights.mean().item()) < 5e-4
    assert all(torch.equal(c.bias, torch.zeros(19)) for c in model.layer5.conv2d_list)


def test_registry_lists_the_variants() -> None:
    deeplab = {name for name in MODELS if name.startswith("deeplabv2_")}
    assert deeplab == {"deeplabv2_r101", "deeplabv2_r50", "deeplabv2_r18", "deeplabv2_small", "deeplabv2_tiny"}
    model = build_model("deeplabv2_tiny", num_classes=16, aspp_branches=4)
    assert (model.num_classes, model.aspp_branches, model.variant) == (16, 4, "deeplabv2_tiny")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "deeplabv3_r101"}, "unknown model 'deeplabv3_r101'; choose one of daformer_mitb0, daformer_mitb1"),
        ({"name": "deeplabv2_tiny", "aspp_branches": 3}, "aspp_branches: got 3"),
        ({"name": "deeplabv2_tiny", "num_classes": 0}, "num_classes"),
    ],
)
def test_build_model_errors_are_one_line_config_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_model(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
