"""Checkpoint files: rotation, resume discovery, and clear errors for corrupt or foreign files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from camix.checkpoint import check_compatible, find_resume, load_checkpoint, save_checkpoint
from camix.config import ModelConfig
from camix.errors import CheckpointError


def state(iteration: int) -> dict[str, object]:
    return {"iteration": iteration, "config": {"model": {"name": "deeplabv2_tiny", "num_classes": 19}}}


def test_rotation_keeps_the_newest_snapshots(tmp_path: Path) -> None:
    for it in (10, 20, 30, 40):
        save_checkpoint(state(it), tmp_path, keep=2)
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.glob("iter_*.pt")) == ["iter_0000030.pt", "iter_0000040.pt"]
    assert load_checkpoint(folder / "last.pt")["iteration"] == 40
    assert load_checkpoint(folder / "iter_0000030.pt")["iteration"] == 30


def test_a_snapshot_is_a_copy_so_damage_to_last_does_not_reach_it(tmp_path: Path) -> None:
    save_checkpoint(state(10), tmp_path, keep=2)
    folder = tmp_path / "checkpoints"
    last, snapshot = folder / "last.pt", folder / "iter_0000010.pt"
    assert last.stat().st_ino != snapshot.stat().st_ino and last.stat().st_nlink == 1
    with last.open("r+b") as handle:  # damaged in place (a bad disk block, a stray write)
        handle.write(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        load_checkpoint(last)
    assert load_checkpoint(snapshot)["iteration"] == 10
    found = find_resume(tmp_path)
    assert found == snapshot


def test_find_resume_skips_a_corrupt_last(tmp_path: Path) -> None:
    save_checkpoint(state(10), tmp_path, keep=3)
    save_checkpoint(state(20), tmp_path, keep=3)
    last = tmp_path / "checkpoints" / "last.pt"
    last.unlink()
    last.write_bytes(b"\x00garbage")
    found = find_resume(tmp_path)
    assert found is not None and found.name == "iter_0000020.pt"
    assert find_resume(tmp_path / "nothing") is None


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_bad_files_are_checkpoint_errors(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "x.pt"
    if content is None:
        torch.save({"some": "dict"}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_incompatible_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="num_classes=19"):
        check_compatible(state(1), ModelConfig(name="deeplabv2_tiny", num_classes=16), "ckpt.pt")
    check_compatible(state(1), ModelConfig(name="deeplabv2_tiny", num_classes=19), "ckpt.pt")
