"""Config loading: YAML + base chain, overrides, type checking, unknown keys, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from camix.config import Config, dump_config, load_config
from camix.config_tree import replace, resolve_config_path
from camix.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_match_the_papers_settings() -> None:
    cfg = load_config()
    assert cfg.optim.lr == 2.5e-4 and cfg.optim.classifier_lr_mult == 10.0 and cfg.optim.power == 0.9
    assert cfg.method.noise_passes == 8 and cfg.method.threshold_beta == 0.75 and cfg.method.threshold_gamma == -5.0
    assert cfg.method.pseudo_threshold == 0.968 and cfg.method.ema_alpha == 0.99
    assert cfg.model.aspp_branches == 2


def test_base_chain_and_override_order(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "seed: 1\ntrain: {iterations: 100, log_every: 7}\ndata: {crop: [64, 32]}\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\ntrain: {iterations: 50}\n")
    cfg = load_config(child, ["train.log_every=3", "data.crop=128x96", "method.relations={12: [17]}"])
    assert cfg.seed == 1
    assert cfg.train.iterations == 50  # child beats base
    assert cfg.train.log_every == 3  # --set beats both
    assert cfg.data.crop == (128, 96)
    assert cfg.method.relations == {12: (17,)}


def test_unknown_key_names_the_key_and_file(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "train: {iteratons: 5}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train.iteratons'.*bad.yaml"):
        load_config(bad)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.iterations=abc", "expected int"),
        ("model.aspp_branches=3", "is not one of"),
        ("data.crop=[1, 2, 3]", "expected 2 values"),
        ("method.mix=dacs", "is not one of"),
        ("train.amp=true", "is not one of"),
        ("nonsense", "expected KEY=VALUE"),
        ("model=5", "expected a mapping"),
    ],
)
def test_wrong_types_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path / "x.yaml", "a: [1,\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="circular"):
        load_config(write(tmp_path / "loop.yaml", "base: loop.yaml\n"))


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, ["data.crop=64x48", "method.mix=camix", "data.target={name: cityscapes, root: x}"])
    again = load_config(write(tmp_path / "dumped.yaml", dump_config(cfg)))
    assert again == cfg


def test_replace_with_dotted_keys() -> None:
    cfg = replace(Config(), **{"train.iterations": 9, "model.name": "deeplabv2_r101"})
    assert cfg.train.iterations == 9 and cfg.model.name == "deeplabv2_r101" and cfg.train.log_every == 50


def test_packaged_configs_resolve_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("configs/synthcity/camix.yaml").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.hrda.context_scale=0.25"], r"'model.hrda.context_scale': 0.25 is not supported; use 0.5"),
        (["model.hrda.detail_crop=[1024, 256]"], r"'model.hrda.detail_crop': \[1024, 256\] does not fit the training"),
        (["model.hrda.detail_stride=[600, 256]"], r"'model.hrda.detail_stride': \[600, 256\] is larger than"),
        (["model.hrda.detail_loss_weight=1.5"], r"'model.hrda.detail_loss_weight'"),
        (["model.hrda.attention=pixel"], r"model.hrda.attention"),
        (
            ["model.hrda.detail_crop=[256, 256]", "optim.duplicate_backbone_params=true"],
            r"'optim.duplicate_backbone_params': true .* knows no HRDA attention head",
        ),
    ],
)
def test_hrda_keys_are_checked_on_load(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_hrda_is_off_by_default_and_on_with_any_of_its_keys() -> None:
    assert load_config(None).model.hrda is None
    hrda = load_config(None, ["model.hrda.detail_crop=[256, 256]"]).model.hrda
    assert hrda is not None and hrda.detail_crop == (256, 256) and hrda.detail_loss_weight == 0.1
    assert hrda.attention == "classwise" and hrda.detail_stride is None
    assert load_config("configs/gta2cs/hrda.yaml").model.hrda.detail_stride == (256, 256)  # type: ignore[union-attr]
