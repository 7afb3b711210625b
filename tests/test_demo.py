"""`camix demo` end to end on a tiny SynthCity: two stages, a report, and reuse of finished stages."""

from __future__ import annotations

from pathlib import Path

import pytest

from camix import demo
from camix.cli import main
from camix.config_tree import PACKAGED_CONFIGS
from tests.conftest import TINY_SIZE

QUICK = ["data.crop=[48, 48]", "train.iterations=2", "train.eval_every=2", "train.log_every=1", "method.noise_passes=2"]


def test_demo_pretrains_adapts_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = {"seed": 0, "size": TINY_SIZE, "num_source": 6, "num_target_train": 4, "num_target_val": 3}
    monkeypatch.setattr(demo, "DATA_DEFAULTS", tiny)
    quick_pretrain = tmp_path / "pretrain.yaml"
    quick_pretrain.write_text(
        f"base: {PACKAGED_CONFIGS / 'synthcity' / 'pretrain.yaml'}\n"
        "data: {crop: [48, 48]}\ntrain: {iterations: 3, eval_every: 3, log_every: 1}\n"
    )
    monkeypatch.setattr(demo, "PRETRAIN_CONFIG", str(quick_pretrain))
    args = ["demo", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "demo"), "--no-progress"]
    args += [item for setting in QUICK for item in ("--set", setting)]

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "generating SynthCity" in out and "(source only) ->" in out
    report = (tmp_path / "demo" / "REPORT.md").read_text()
    assert "| mIoU19 |" in report and "| road |" in report and "source only" in report
    assert "![qualitative results](qualitative.png)" in report and "![adaptation curve](curve.png)" in report
    from PIL import Image

    with Image.open(tmp_path / "demo" / "qualitative.png") as grid:  # 3 val images x (image, truth, 2 models)
        assert grid.width == 4 * 224 + 5 * 4 and grid.height > 3 * 224 * TINY_SIZE[1] // TINY_SIZE[0]
    with Image.open(tmp_path / "demo" / "curve.png") as curve:
        assert curve.format == "PNG" and curve.width > 600
    assert (tmp_path / "demo" / "camix" / "checkpoints" / "last.pt").is_file()
    adapt_config = (tmp_path / "demo" / "camix" / "config.yaml").read_text()
    assert str(tmp_path / "demo" / "pretrain" / "checkpoints" / "last.pt") in adapt_config

    assert main(args) == 0  # a second demo reuses the data and both finished stages
    again = capsys.readouterr().out
    assert "SynthCity found" in again and again.count("reusing the finished run") == 2
