"""Config validation: ranges declared on the fields, cross-field rules, where a bad value came from, preflight."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import torch

from camix.config import Config, load_config, validate_config
from camix.config_tree import replace
from camix.errors import ConfigError
from camix.methods import check_method_config
from camix.preflight import preflight
from camix.study import load_study
from camix.train import Trainer
from camix.validation import ClassIds, ConfigKeyError, Range, check_ranges


def numeric_fields(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, annotation) of every field of ``cls`` (recursively) whose values hold ints or floats."""
    found = []
    for name, tp in typing.get_type_hints(cls, include_extras=True).items():
        found.extend(_numeric(tp, f"{prefix}{name}"))
    return found


def _numeric(tp: Any, key: str) -> list[tuple[str, Any]]:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return [(key, tp)] if any(isinstance(a, (Range, ClassIds)) for a in args[1:]) else _numeric(args[0], key)
    if dataclasses.is_dataclass(tp):
        return numeric_fields(tp, f"{key}.")
    if origin is Literal or tp in (bool, str, type(None)):
        return []
    if origin in (Union, typing.Union) or str(origin) == "<class 'types.UnionType'>" or origin is tuple:
        return [item for a in args if a is not Ellipsis for item in _numeric(a, key)]
    if tp in (int, float) or origin is dict:
        return [(key, None)]  # numeric, without a declared range
    return []


def test_every_numeric_field_declares_its_range() -> None:
    missing = [key for key, annotation in numeric_fields(Config) if annotation is None]
    assert missing == [], f"declare a Range (camix.validation) for: {missing}"
    assert len(numeric_fields(Config)) >= 40


@pytest.mark.parametrize(
    ("interval", "inside", "outside", "text"),
    [
        (Range(1), [1, 7, 10**9], [0, -5, float("nan"), float("inf")], ">= 1"),
        (Range(0, low_open=True), [1e-12, 3.5], [0.0, -1.0], "> 0"),
        (Range(0, 1), [0.0, 0.5, 1.0], [-0.001, 1.001], "in [0, 1]"),
        (Range(0, 1, high_open=True), [0.0, 0.999], [1.0], "in [0, 1)"),
        (Range(high=0), [0.0, -5.0], [0.5], "<= 0"),
    ],
)
def test_ranges(interval: Range, inside: list[float], outside: list[float], text: str) -> None:
    assert all(interval.contains(v) for v in inside)
    assert not any(interval.contains(v) for v in outside)
    assert interval.describe() == text


def test_every_packaged_config_is_valid() -> None:
    configs = sorted(Path("camix/configs").glob("*/*.yaml"))
    assert len(configs) >= 25
    for path in configs:
        if path.stem.startswith("study"):  # study files: their own schema, checked when loaded
            load_study(path)
        else:
            validate_config(load_config(path))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_message_says_where_the_value_came_from(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "train: {iterations: 0, log_every: 5}\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\ntrain: {log_every: 2}\n")
    other = write(tmp_path / "other.yaml", "base: base.yaml\noptim: {lr: 0.0}\n")
    with pytest.raises(ConfigError) as info:
        load_config(child)
    assert str(info.value) == (
        f"config key 'train.iterations': 0 is out of range; must be an integer >= 1 (set in {tmp_path / 'base.yaml'})"
    )
    with pytest.raises(ConfigError, match=r"'optim.lr': 0.0 is out of range; must be a number > 0 \(set in .*other"):
        load_config(other, ["train.iterations=10"])
    with pytest.raises(ConfigError, match=r"\(set by --set optim=\{lr: -2\}\)$"):
        load_config(other, ["train.iterations=10", "optim={lr: -2}"])
    with pytest.raises(ConfigError, match=r"'data.target': null, but method.name=mean_teacher .*\(data.target the "):
        load_config(None, ["method.name=mean_teacher"], checks=[check_method_config])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.target={name: cityscapes, label_size: native}"], "'data.target.label_size': 'native' cannot be"),
        (
            ["data.target={name: cityscapes, size: [256, 128]}", "data.crop=[256, 256]"],
            "larger than the resized target",
        ),
        (["eval.model=teacher"], "'eval.model': 'teacher', but method.name=source_only trains no teacher"),
        (["method.relations={-1: [2]}"], "class id -1 in {-1: [2]} is out of range"),
        (["model.num_classes=20", "method.relations={19: [18]}"], None),  # 19 fits 20 classes
        (["method.relations={12: [19]}"], "class ids must be in [0, 19) (model.num_classes=19)"),
        (
            ["method.mix=cutmix", "method.warmup_iterations=10", "train.iterations=5"],
            "is longer than the run; it must be <= train.iterations=5",
        ),  # the ClassMix warm-up precedes every mixing mode (the released code's)
        (["method.mix=none", "method.warmup_iterations=10", "train.iterations=5"], None),  # no mixing, no warm-up
        (["method.mix=camix", "method.warmup_iterations=5", "train.iterations=5"], None),  # as long as the run
        (["out_dir=' '"], "'out_dir' is empty"),
        (["method.threshold_gamma=0.5"], "must be a number <= 0"),
        (["method.k_sup=0"], "'method.k_sup': 0.0 is out of range; must be a number > 0"),
        (["eval.sliding_window=[512, 0]"], "'eval.sliding_window': [512, 0] is out of range; each value"),
        (["train.threads=0"], "'train.threads': 0 is out of range"),
        (["data.source.scale=0"], "'data.source.scale': 0.0 is out of range"),
    ],
)
def test_cross_field_rules(overrides: list[str], message: str | None) -> None:
    """The config layer's rules and, as ``preflight`` runs them, what the method needs (the method registry's)."""
    if message is None:
        load_config(None, overrides, checks=[check_method_config])
        return
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides, checks=[check_method_config])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_config_layer_alone_leaves_what_a_method_needs_to_the_registry() -> None:
    cfg = load_config(None, ["method.name=mean_teacher"])  # loads: the config layer knows no method's needs
    with pytest.raises(ConfigError, match=r"method.name=mean_teacher needs an unlabelled target dataset"):
        check_method_config(cfg)


@dataclasses.dataclass(frozen=True)
class Inner:
    ids: Annotated[tuple[int, ...], ClassIds()] = (1, 2)


@dataclasses.dataclass(frozen=True)
class Outer:
    count: Annotated[int, Range(1)] = 1
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_check_ranges_works_on_any_dataclass() -> None:
    check_ranges(Outer(), num_classes=3)
    with pytest.raises(ConfigKeyError, match=r"'inner.ids': class id 3 in \[1, 3\] is out of range") as info:
        check_ranges(Outer(inner=Inner((1, 3))), num_classes=3)
    assert info.value.keys == ("inner.ids", "model.num_classes")


def test_preflight_prior_class_count_and_size(tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("camix")
    prior = tmp_path / "prior.pt"
    torch.save({"prior": torch.full((19, 48, 96), 1 / 19)}, prior)
    preflight(replace(cfg, **{"data.prior": str(prior)}))
    resized = {"data.target": replace(cfg.data.target, size=(64, 32)), "data.crop": (32, 32)}  # the crop fits
    sized = replace(cfg, **{"data.prior": str(prior), **resized})
    with pytest.raises(
        ConfigKeyError, match=r"prior.pt is 96x48 \(WxH\) but the target images are resized to data.target.size=64x32"
    ):
        preflight(sized)
    with pytest.raises(
        ConfigError, match=r"'data.prior': .* \(data.prior set by --set data.prior=.*; data.target.size"
    ):
        roots = [f"data.{k}.root={getattr(cfg.data, k).root}" for k in ("source", "target", "val")]
        sets = [f"data.prior={prior}", "data.target.size=[64, 32]", "data.crop=32x32", "model.pretrained=null"]
        load_config("configs/synthcity/camix.yaml", [*roots, *sets], checks=[preflight])


def test_trainer_refuses_a_bad_config_before_touching_out_dir(tiny_config) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("source_only")
    with pytest.raises(ConfigKeyError, match=r"'train\.log_every': 0 is out of range"):
        Trainer(replace(cfg, **{"train.log_every": 0}), progress=False)
    with pytest.raises(ConfigKeyError, match=r"'model\.name': 'nope' is not a model"):
        Trainer(replace(cfg, **{"model.name": "nope"}), progress=False)
    assert not Path(cfg.out_dir).exists()
