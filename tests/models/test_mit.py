"""MiT encoders and DAFormer networks: checkpoint names and shapes, parameter counts, strides, input conversion."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from camix.data.labels import CAFFE_MEAN_BGR
from camix.errors import CheckpointError, ConfigError
from camix.models import build_model, count_parameters, load_pretrained, param_groups, set_teacher_mode_
from camix.models.mit import DropPath
from camix.models.weights import MIT_FORMAT, REASON_UNUSED_CLASSIFIER

REFERENCE_KEYS = Path(__file__).parent / "data" / "mit_b5_keys.txt"


def reference_mit_b5() -> dict[str, list[int]]:
    """The names and shapes of mit_b5.pth, transcribed from the reference definition (tests/models/data)."""
    rows = [line.split() for line in REFERENCE_KEYS.read_text().splitlines() if line and not line.startswith("#")]
    return {name: [int(d) for d in shape.split("x")] for name, shape in rows}


def test_the_reference_list_is_mit_b5_with_its_published_size() -> None:
    shapes = reference_mit_b5()
    assert len(shapes) == 1052
    assert sum(math.prod(s) for s in shapes.values()) == 81_443_008  # SegFormer: MiT-B5 has 81.4 M parameters


def test_mit_b5_checkpoint_loads_with_no_missing_or_unexpected_keys(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    state = {name: torch.randn(shape, generator=generator) for name, shape in reference_mit_b5().items()}
    state |= {"head.weight": torch.zeros(1000, 512), "head.bias": torch.zeros(1000)}  # ImageNet classifier
    path = tmp_path / "mit_b5.pth"
    torch.save({"state_dict": state}, path)  # some copies wrap the dict
    model = build_model("daformer_mitb5")
    report = load_pretrained(model, path)
    assert report.format == MIT_FORMAT and report.num_loaded == 1052
    assert report.skipped == {REASON_UNUSED_CLASSIFIER: ["head.weight", "head.bias"]}
    assert all(key.startswith("decode_head.") for key in report.missing)  # the encoder is complete
    loaded = model.state_dict()
    for name in (
        "patch_embed1.proj.weight",
        "block3.39.attn.sr.weight",
        "block4.2.mlp.dwconv.dwconv.bias",
        "norm4.bias",
    ):
        assert torch.equal(loaded[f"backbone.{name}"], state[name])


def test_a_mit_checkpoint_of_another_size_is_a_one_line_error(tmp_path: Path) -> None:
    state = {name: torch.zeros(shape) for name, shape in reference_mit_b5().items()}
    torch.save(state, tmp_path / "mit_b5.pth")
    with pytest.raises(CheckpointError) as info:
        load_pretrained(build_model("daformer_mitb4"), tmp_path / "mit_b5.pth")
    message = str(info.value)
    assert "\n" not in message and "daformer_mitb4" in message and "260 unexpected" in message
    assert "40 missing" in message  # B4's block2 has 8 blocks, B5's 6: 2 x 20 tensors
    with pytest.raises(CheckpointError, match="no MiT encoder"):
        load_pretrained(build_model("deeplabv2_tiny"), tmp_path / "mit_b5.pth")


# encoder (without a head) and whole network with 19 classes; SegFormer reports 3.4/13.1/24.2/44.0/60.8/81.4 M
PARAMETERS = {
    "daformer_mitb0": (3_319_392, 6_900_595),
    "daformer_mitb1": (13_151_424, 16_863_699),
    "daformer_mitb2": (24_196_288, 27_908_563),
    "daformer_mitb3": (44_072_128, 47_784_403),
    "daformer_mitb4": (60_842_688, 64_554_963),
    "daformer_mitb5": (81_443_008, 85_155_283),
    "daformer_mittiny": (423_648, 489_875),
}


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_parameter_counts(name: str) -> None:
    model = build_model(name)
    encoder, total = PARAMETERS[name]
    assert count_parameters(model.backbone) == encoder
    assert count_parameters(model) == total


def test_daformer_decoder_size_by_hand() -> None:
    # embeddings 4 x Linear(c_i, 256); ASPP: 1x1 conv + BN, three separable branches (dw 3x3 + BN(1024),
    # pw 1x1 + BN(256)), a 3x3 bottleneck 1024 -> 256 + BN; a 1x1 classifier with bias
    embed = sum(c * 256 + 256 for c in (64, 128, 320, 512))
    branch1 = 1024 * 256 + 2 * 256
    separable = 3 * (1024 * 9 + 2 * 1024 + 1024 * 256 + 2 * 256)
    bottleneck = 1024 * 256 * 9 + 2 * 256
    classifier = 256 * 19 + 19
    head = build_model("daformer_mitb5").decode_head
    assert count_parameters(head) == embed + branch1 + separable + bottleneck + classifier == 3_712_275


def test_feature_strides_and_logits_at_a_quarter() -> None:
    model = build_model("daformer_mitb0").eval()
    image = torch.zeros(1, 3, 96, 128)
    features = model.backbone(model.normalise(image))
    assert [tuple(f.shape[1:]) for f in features] == [(32, 24, 32), (64, 12, 16), (160, 6, 8), (256, 3, 4)]
    with torch.no_grad():
        logits, last = model(image, return_features=True)
    assert logits.shape == (1, 19, 24, 32) and torch.equal(last, features[-1])


def test_input_is_converted_from_caffe_bgr_to_imagenet_rgb() -> None:
    model = build_model("daformer_mittiny")
    rgb = torch.tensor([10.0, 120.0, 250.0])  # one pixel, 0-255 RGB
    caffe = rgb.flip(0) - torch.tensor(CAFFE_MEAN_BGR)  # what camix's loaders produce
    expected = (rgb / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    out = model.normalise(caffe.view(1, 3, 1, 1)).flatten()
    assert torch.allclose(out, expected, atol=1e-5)


def test_aspp_branches_is_deeplab_only() -> None:
    with pytest.raises(ConfigError, match="DeepLab-v2 only"):
        build_model("daformer_mittiny", aspp_branches=4)


def test_drop_path_drops_whole_samples_in_training_only() -> None:
    layer = DropPath(0.5)
    x = torch.ones(64, 3, 2)
    torch.manual_seed(0)
    out = layer(x)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert bool((per_sample == per_sample[:, :1]).all())  # one draw per sample
    assert 0 < int((per_sample[:, 0] == 0).sum()) < 64
    assert torch.equal(layer.eval()(x), x)


def test_teacher_in_train_mode_has_no_dropout_or_drop_path() -> None:
    teacher = set_teacher_mode_(build_model("daformer_mittiny"), train_mode=True)
    stochastic = [m for m in teacher.modules() if isinstance(m, (nn.Dropout2d, DropPath))]
    assert stochastic and not any(m.training for m in stochastic)
    assert teacher.decode_head.fuse.bottleneck[1].training  # BatchNorm keeps batch statistics


def test_param_groups_head_x10_and_no_decay_on_norms() -> None:
    model = build_model("daformer_mittiny")
    groups = param_groups(model, lr=6e-5, weight_decay=0.01, classifier_lr_mult=10.0, norm_weight_decay=0.0)
    by_name = {g["name"]: g for g in groups}
    assert [g["name"] for g in groups] == ["backbone", "backbone_norm", "classifier"]
    assert by_name["classifier"]["lr"] == pytest.approx(6e-4) and by_name["classifier"]["weight_decay"] == 0.01
    assert by_name["backbone_norm"]["weight_decay"] == 0.0 and by_name["backbone"]["weight_decay"] == 0.01
    names = {id(p): n for n, p in model.named_parameters()}
    norm_names = {names[id(p)] for p in by_name["backbone_norm"]["params"]}  # type: ignore[attr-defined]
    head_names = {names[id(p)] for p in by_name["classifier"]["params"]}  # type: ignore[attr-defined]
    assert norm_names == {n for n in names.values() if n.startswith("backbone.") and "norm" in n}
    assert head_names == {n for n in names.values() if n.startswith("decode_head.")}
    assert sum(len(g["params"]) for g in groups) == len(names)  # type: ignore[arg-type]


def test_bf16_autocast_forward_is_finite() -> None:
    model = build_model("daformer_mittiny").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 64, 64) * 50)
    assert logits.dtype == torch.bfloat16 and bool(torch.isfinite(logits.float()).all())


def test_registry_lists_the_daformer_networks() -> None:
    from camix.models import MODELS

    assert {name for name in MODELS if name.startswith("daformer_")} == set(PARAMETERS)
