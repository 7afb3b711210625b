"""``camix export``: ONNX with dynamic batch/height/width matching PyTorch within 1e-4; a clear error without onnx."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
import torch

from camix.checkpoint import FORMAT
from camix.cli import main
from camix.config import load_config
from camix.config_tree import to_dict
from camix.export import ExportError, export_onnx, max_abs_difference, random_image
from camix.io import atomic_torch_save
from camix.models import build_model


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    cfg = load_config("configs/synthcity/source_only.yaml")
    model = build_model(cfg.model.name, cfg.model.num_classes, cfg.model.aspp_branches)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    atomic_torch_save({"format": FORMAT, "iteration": 5, "config": to_dict(cfg), "model": model.state_dict()}, path)
    return path


def test_onnx_matches_pytorch_at_other_sizes(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = build_model("deeplabv2_tiny").eval()
    path = tmp_path / "tiny.onnx"
    export_onnx(model, path, sample_size=(64, 96))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    for batch, size in [(1, (64, 96)), (3, (72, 120)), (2, (33, 47))]:
        image = random_image(batch, size, seed=batch)
        assert max_abs_difference(model, path, image) < 1e-4
        with torch.no_grad():
            assert session.run(None, {"image": image.numpy()})[0].shape == tuple(model(image).shape)


def test_export_command(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    assert main(["export", "--ckpt", str(tiny_checkpoint), "--onnx", str(out), "--opset", "17"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "last, iteration 5, student" in printed
    difference = float(printed.split("max abs difference ")[1].split()[0])
    assert difference < 1e-4 and "(OK)" in printed


def block_imports(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``import name`` fail as if the package were not installed."""
    real_import = builtins.__import__

    def blocked(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in names:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)


def test_without_onnxruntime_the_check_is_skipped(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx")
    block_imports(monkeypatch, "onnxruntime")
    assert main(["export", "--ckpt", str(tiny_checkpoint), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert "skipped the numerical check (pip install camix[onnx])" in capsys.readouterr().out
    assert (tmp_path / "m.onnx").is_file()


def test_missing_onnx_is_a_one_line_install_hint(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    block_imports(monkeypatch, "onnx", "onnxruntime")
    with pytest.raises(ExportError, match=r"pip install camix\[onnx\]"):
        export_onnx(build_model("deeplabv2_tiny"), tmp_path / "x.onnx")
    assert main(["export", "--ckpt", str(tiny_checkpoint), "--onnx", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "camix export: error: onnx is not installed; pip install camix[onnx]"
    assert not (tmp_path / "x.onnx").exists()
