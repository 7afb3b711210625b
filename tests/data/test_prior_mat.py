"""``camix data prior --from-mat``: the authors' MATLAB priors (CBST's layout) into camix's prior file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from camix.cli import main as camix
from camix.data.prior import load_prior

sio = pytest.importorskip("scipy.io")


def gta_prior(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """``prior_array`` [19, 2, 3]: class k holds k + a ramp along the width (0, 1, 2)."""
    array = np.arange(19, dtype=np.float64).reshape(19, 1, 1) + np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    path = tmp_path / "prior_array.mat"
    sio.savemat(path, {"prior_array": array})
    return path, array


def synthia_priors(tmp_path: Path) -> Path:
    folder = tmp_path / "spatial_prior_19_syn"
    folder.mkdir()
    for k in range(19):
        sio.savemat(folder / f"probarray_cls{k}.mat", {"array": np.full((2, 3), k / 100.0)})
    return folder


def test_gta_prior_array_is_imported_as_shipped(tmp_path: Path) -> None:
    path, array = gta_prior(tmp_path)
    out = tmp_path / "gta.pt"
    assert camix(["data", "prior", "--from-mat", str(path), "--out", str(out)]) == 0
    prior = load_prior(out)
    assert prior.dtype == torch.float32 and prior.shape == (19, 2, 3)
    assert torch.equal(prior, torch.from_numpy(array).float())


def test_resizing_is_bilinear_with_aligned_corners(tmp_path: Path) -> None:
    path, _ = gta_prior(tmp_path)
    out = tmp_path / "gta.pt"
    assert camix(["data", "prior", "--from-mat", str(path), "--size", "5x3", "--out", str(out)]) == 0
    prior = load_prior(out)
    assert prior.shape == (19, 3, 5)
    ramp = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0])  # corners kept: 0 and 2 at the ends, linear between
    assert torch.allclose(prior[4], 4 + ramp.expand(3, 5))


@pytest.mark.parametrize("given", ["folder", "file"])
def test_synthia_per_class_files_are_stacked_in_class_order(tmp_path: Path, given: str) -> None:
    folder = synthia_priors(tmp_path)
    source = folder if given == "folder" else folder / "probarray_cls7.mat"
    out = tmp_path / "syn.pt"
    assert camix(["data", "prior", "--from-mat", str(source), "--size", "6x4", "--out", str(out)]) == 0
    prior = load_prior(out)
    assert prior.shape == (19, 4, 6)
    assert torch.allclose(prior[:, 0, 0], torch.arange(19) / 100.0) and torch.allclose(prior[5], torch.tensor(0.05))


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = synthia_priors(tmp_path)
    (folder / "probarray_cls12.mat").unlink()
    out = tmp_path / "x.pt"
    assert camix(["data", "prior", "--from-mat", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "probarray_cls12.mat" in err and len(err.splitlines()) == 1 and not out.exists()
    wrong = tmp_path / "wrong.mat"
    sio.savemat(wrong, {"prior": np.zeros((19, 2, 2))})
    assert camix(["data", "prior", "--from-mat", str(wrong), "--out", str(out)]) == 2
    assert "'prior_array'" in capsys.readouterr().err
    assert camix(["data", "prior", "--out", str(out)]) == 2
    assert "--from-mat" in capsys.readouterr().err


def test_without_scipy_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = gta_prior(tmp_path)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io now raises ImportError
    assert camix(["data", "prior", "--from-mat", str(path), "--out", str(tmp_path / "x.pt")]) == 2
    assert "camix[scipy]" in capsys.readouterr().err
