"""SynthCity generator versions: older ones stay byte-identical; each models its documented changes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from camix.cli import main
from camix.data.synthcity import (
    DOMAINS,
    GENERATOR_VERSION,
    SOURCE,
    TARGET,
    TARGET_V2,
    TARGET_V21,
    generate,
    is_current,
    sample,
    target_domain,
)
from camix.data.synthcity.canvas import Canvas
from camix.data.synthcity.params import LOOKALIKE_PAIRS, LOOKALIKE_THINGS, class_colours
from camix.data.synthcity.scene import make_scene
from camix.errors import ConfigError

SMALL = {"size": (96, 48), "num_source": 2, "num_target_train": 2, "num_target_val": 1, "progress": False}
# sha256 (first 16 hex digits) of image 3 of each split, seed 0, 96x48, gap 1, computed with the generator as it was
# before version 2.0 existed (commit b566aa7): version 1.1 must keep producing exactly these.
V11_GOLDEN = {0: "418c44e36314cdcc", 1: "2afae34022662940", 2: "c607623165555a7f"}
# The same digests of version 2.0, computed before version 2.1 existed (commit c46e99c).
V20_GOLDEN = {0: "418c44e36314cdcc", 1: "1d27b6d60b128f96", 2: "60a7420072746046"}
THINGS = range(11, 19)  # person .. bicycle


def _digest(key: int, version: str) -> str:
    source, target = DOMAINS[version]
    domain = source if key == 0 else target_domain(1.0, source, target)
    rgb, label = sample(0, key, 3, (96, 48), domain)
    return hashlib.sha256(rgb.tobytes() + label.tobytes()).hexdigest()[:16]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_version_2_0_is_the_default_and_1_1_is_unchanged() -> None:
    assert GENERATOR_VERSION == "2.0" and DOMAINS["1.1"] == (SOURCE, TARGET)
    assert {key: _digest(key, "1.1") for key in V11_GOLDEN} == V11_GOLDEN


def test_version_2_0_changes_the_target_only_and_is_unchanged() -> None:
    assert _digest(0, "2.0") == V11_GOLDEN[0]  # same rendered source: a pretrained model serves both versions
    assert _digest(1, "2.0") != V11_GOLDEN[1] and _digest(2, "2.0") != V11_GOLDEN[2]
    assert {key: _digest(key, "2.0") for key in V20_GOLDEN} == V20_GOLDEN


def test_version_2_1_changes_the_target_of_2_0_only() -> None:
    assert _digest(0, "2.1") == V11_GOLDEN[0]  # the source of every version is the same
    assert _digest(1, "2.1") != V20_GOLDEN[1] and _digest(2, "2.1") != V20_GOLDEN[2]
    assert TARGET_V21.scene == TARGET_V2.scene
    assert dataclasses.replace(TARGET_V21.style, lookalike_things=0.0) == TARGET_V2.style


def test_version_2_0_is_deterministic_and_recorded(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", seed=4, version="2.0", **SMALL)
    generate(tmp_path / "b", seed=4, version="2.0", **SMALL)
    old = generate(tmp_path / "old", seed=4, version="1.1", **SMALL)
    files_a, files_b, files_old = (_files(tmp_path / name) for name in ("a", "b", "old"))
    assert len(files_a) == 10 and files_a == files_b
    changed = {k for k in files_a if files_a[k] != files_old[k]}
    assert changed and all(k.startswith("cityscapes") for k in changed)  # source files are identical
    assert a["version"] == "2.0" and old["version"] == "1.1"
    assert a["domains"]["target"]["style"]["lookalike"] == TARGET_V2.style.lookalike
    assert a["domains"]["target"]["scene"]["focal"] == TARGET_V2.scene.focal
    assert "lookalike" not in old["domains"]["target"]["style"] and "focal" not in old["domains"]["source"]["scene"]
    params = {k: v for k, v in SMALL.items() if k != "progress"}
    assert is_current(tmp_path / "a", seed=4, version="2.0", **params)
    assert is_current(tmp_path / "a", seed=4, **params)  # 2.0 is the default version
    assert not is_current(tmp_path / "a", seed=4, version="1.1", **params)  # a 2.0 dataset is not a 1.1 one
    assert not is_current(tmp_path / "old", seed=4, **params)  # ... and vice versa
    assert not is_current(tmp_path / "old", seed=4, version="2.0", **params)


def test_lookalike_pairs_share_their_colour_in_the_target_only() -> None:
    """Each pair's colour distance shrinks by exactly (1 - lookalike); other classes keep their colours."""
    v11, v2 = class_colours(target_domain(1.0).style), class_colours(TARGET_V2.style)
    source = class_colours(SOURCE.style)
    paired = [c for pair in LOOKALIKE_PAIRS for c in pair]
    for a, b in LOOKALIKE_PAIRS:
        before, after = np.linalg.norm(v11[a] - v11[b]), np.linalg.norm(v2[a] - v2[b])
        assert after == pytest.approx((1 - TARGET_V2.style.lookalike) * before, rel=1e-5)
        assert np.linalg.norm(source[a] - source[b]) > 80  # distinct in the rendered source
        np.testing.assert_allclose(v2[[a, b]].mean(0), v11[[a, b]].mean(0), atol=1e-4)  # drawn to their mean
    others = [c for c in range(19) if c not in paired]
    np.testing.assert_array_equal(v2[others], v11[others])


def test_lookalike_things_share_their_colour_in_the_target_only() -> None:
    """2.1 draws each group of things to its mean colour by lookalike_things and leaves every other class as 2.0."""
    v2, v21 = class_colours(TARGET_V2.style), class_colours(TARGET_V21.style)
    source = class_colours(SOURCE.style)
    strength = TARGET_V21.style.lookalike_things
    assert strength > 0
    for group in LOOKALIKE_THINGS:
        mean = v2[list(group)].mean(0)
        np.testing.assert_allclose(v21[list(group)], mean + (1 - strength) * (v2[list(group)] - mean), atol=1e-3)
        for a in group:
            for b in group:
                if a < b:
                    assert np.linalg.norm(source[a] - source[b]) > 70  # distinct in the rendered source
    grouped = [c for group in LOOKALIKE_THINGS for c in group]
    assert not set(grouped) & {c for pair in LOOKALIKE_PAIRS for c in pair}
    others = [c for c in range(19) if c not in grouped]
    np.testing.assert_array_equal(v21[others], v2[others])
    distances = np.linalg.norm(v21[:, None] - v21[None], axis=-1)[np.triu_indices(19, 1)]
    assert distances.min() > 5  # drawn together, never identical: the oracle can still tell them apart


def test_a_longer_focal_length_makes_objects_larger() -> None:
    """Focal 1.25 (a narrower field of view) enlarges things at the same depth: more thing pixels per image."""

    def thing_share(focal: float) -> float:
        params = dataclasses.replace(TARGET.scene, focal=focal)
        shares = []
        for seed in range(12):
            canvas: Canvas = make_scene(np.random.default_rng(seed), (128, 64), params)
            label = canvas.arrays()[0]
            shares.append(np.isin(label, THINGS).mean())
        return float(np.mean(shares))

    assert thing_share(1.25) > 1.2 * thing_share(1.0)


def test_unknown_version_and_knobs_of_a_newer_version_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown SynthCity generator version '9\.9'"):
        generate(tmp_path / "x", version="9.9", **SMALL)
    with pytest.raises(ConfigError, match=r"has no knobs \['focal', 'lookalike'\]"):
        generate(tmp_path / "y", target=TARGET_V2, version="1.1", **SMALL)
    with pytest.raises(ConfigError, match=r"version 2\.0 has no knobs \['lookalike_things'\]"):
        generate(tmp_path / "z", target=TARGET_V21, version="2.0", **SMALL)
    assert not any((tmp_path / name).exists() for name in "xyz")


def test_cli_selects_the_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["data", "synthcity", "--out", str(tmp_path / "v"), "--size", "64x32", "--no-progress"]
    counts = ["--num-source", "1", "--num-target-train", "1", "--num-target-val", "1"]
    assert main([*base, *counts, "--generator-version", "2.1"]) == 0
    assert "SynthCity 2.1 written" in capsys.readouterr().out
    meta = json.loads((tmp_path / "v" / "synthcity.json").read_text())
    assert meta["version"] == "2.1" and meta["domains"]["target"]["style"]["lookalike_things"] == 0.6
    assert main([*base, *counts, "--generator-version", "3"]) == 2
    err = capsys.readouterr().err
    assert "generator version" in err and len(err.strip().splitlines()) == 1
