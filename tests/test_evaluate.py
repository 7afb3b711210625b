"""Evaluation: IoU tables from known confusion matrices, flip and sliding-window inference, ``camix evaluate``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from camix.cli import main
from camix.config import Config
from camix.data.datasets import build_dataset
from camix.data.labels import CLASS_NAMES
from camix.evaluate import (
    EvalResult,
    evaluate,
    flip_average,
    predict_logits,
    sliding_window_logits,
    window_starts,
    window_stride,
)
from camix.models import build_model
from camix.tables import TABLE1, TABLE3, iou_table
from tests.conftest import constant_checkpoint


def known_confusion() -> torch.Tensor:
    """Rows = ground truth. IoU = TP / (TP + FP + FN), by hand:

    road 8/(8+2)=0.8, sidewalk 6/(6+2)=0.75, building 4/(4+1)=0.8, wall 3/(3+1)=0.75, vegetation 0/1=0,
    terrain 1/2=0.5, car 2/4=0.5, truck 0/2=0 (predicted, never in the ground truth); every other class nan.
    """
    cm = torch.zeros(19, 19, dtype=torch.int64)
    cm[0, 0], cm[0, 1] = 8, 2  # road: 2 pixels called sidewalk
    cm[1, 1] = 6
    cm[2, 2] = 4
    cm[3, 3], cm[3, 2] = 3, 1  # wall: 1 pixel called building
    cm[9, 9], cm[9, 8] = 1, 1  # terrain: 1 pixel called vegetation
    cm[13, 13], cm[13, 14] = 2, 2  # car: 2 pixels called truck
    return cm


def test_known_confusion_matrix_gives_hand_computed_ious_and_subsets() -> None:
    result = EvalResult(known_confusion())
    expected = {0: 0.8, 1: 0.75, 2: 0.8, 3: 0.75, 8: 0.0, 9: 0.5, 13: 0.5, 14: 0.0}
    for cls, value in enumerate(result.iou):
        assert (value == pytest.approx(expected[cls])) if cls in expected else math.isnan(value), CLASS_NAMES[cls]
    assert result.miou19 == pytest.approx(4.1 / 8)  # the 8 classes that occur
    assert result.miou16 == pytest.approx(3.6 / 6)  # drops terrain, truck (and train)
    assert result.miou13 == pytest.approx(2.85 / 5)  # also drops wall (and fence, pole)


def test_tables_in_the_layout_of_tables_1_and_3() -> None:
    scores = EvalResult(known_confusion()).as_dict()
    header, rule, row = iou_table([("ours", scores)], TABLE1).splitlines()
    cells = [c.strip() for c in row.strip("|").split("|")]
    names = [c.strip() for c in header.strip("|").split("|")]
    assert names[:4] == ["method", "road", "sidewalk", "building"] and names[-4:] == [
        "bike",
        "mIoU19",
        "mIoU16",
        "mIoU13",
    ]
    assert cells[1:5] == ["80.0", "75.0", "80.0", "75.0"] and cells[5] == "-"  # fence absent
    assert cells[-3:] == ["51.2", "60.0", "57.0"]
    assert set(rule) <= {"|", "-", ":"}
    header3, _, row3 = iou_table([("ours", scores)], TABLE3).splitlines()
    names3 = [c.strip() for c in header3.strip("|").split("|")]
    assert len(names3) == 1 + 16 + 2 and "terrain" not in names3 and names3[-2:] == ["mIoU16", "mIoU13"]
    assert [c.strip() for c in row3.strip("|").split("|")][-2:] == ["60.0", "57.0"]
    assert "51.2" in iou_table([("IoU (%)", EvalResult(known_confusion()).as_dict())])


class FixedPrediction(torch.nn.Module):
    """A 'network' whose logits are one-hot of a fixed label map, whatever the input."""

    def __init__(self, pred: torch.Tensor, num_classes: int = 19) -> None:
        super().__init__()
        self.register_buffer("logits", torch.nn.functional.one_hot(pred, num_classes).permute(2, 0, 1).float()[None])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(image.shape[0], -1, -1, -1)


def test_evaluate_accumulates_the_confusion_matrix_over_batches() -> None:
    pred = torch.tensor([[0, 0, 1], [2, 2, 2]])
    labels = [torch.tensor([[0, 1, 1], [2, 255, 3]]), torch.tensor([[0, 0, 1], [2, 2, 2]])]
    batches = [{"image": torch.zeros(1, 3, 2, 3), "label": label[None]} for label in labels]
    result = evaluate(FixedPrediction(pred), batches, num_classes=19, device=torch.device("cpu"))
    expected = torch.zeros(19, 19, dtype=torch.int64)
    for gt, p in [(0, 0), (1, 0), (1, 1), (2, 2), (3, 2), (0, 0), (0, 0), (1, 1), (2, 2), (2, 2), (2, 2)]:
        expected[gt, p] += 1
    assert torch.equal(result.confusion, expected)


def test_window_positions() -> None:
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]  # the last window is flush with the border
    assert window_starts(4, 8, 3) == [0]
    assert window_stride((512, 256), 1 / 3) == (341, 171)


def test_sliding_window_hand_checked() -> None:
    image = torch.tensor([0.0, 4.0, 8.0, 12.0]).view(1, 1, 1, 4)

    def window_mean(patch: torch.Tensor) -> torch.Tensor:
        return patch.mean((-2, -1), keepdim=True).expand_as(patch)

    # windows [0,4], [4,8], [8,12] have means 2, 6, 10; each pixel averages the windows containing it
    out = sliding_window_logits(window_mean, image, window=(2, 1), stride=(1, 1))
    assert out.flatten().tolist() == [2.0, 4.0, 8.0, 10.0]
    image2 = torch.arange(30.0).view(1, 2, 3, 5)
    assert torch.equal(sliding_window_logits(lambda p: p, image2, (2, 2), (1, 1)), image2)


def test_sliding_window_equals_whole_image_when_the_window_covers_it() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv2_tiny").eval()
    image = torch.randn(2, 3, 40, 56) * 50
    with torch.no_grad():
        whole = predict_logits(model, image, (40, 56))
        for window in [(56, 40), (64, 64)]:
            assert torch.equal(predict_logits(model, image, (40, 56), window=window), whole)
        assert torch.allclose(
            predict_logits(model, image, (40, 56), flip=True, window=(56, 40)),
            predict_logits(model, image, (40, 56), flip=True),
        )
        tiled = predict_logits(model, image, (40, 56), window=(32, 24))
    assert tiled.shape == whole.shape and not torch.equal(tiled, whole)


def test_flip_averages_probabilities() -> None:
    # class 1 has logit ln 3 on the left pixel, 0 on the right: p1 = 3/4 and 1/2; the mirror image swaps them
    logits = torch.tensor([[[0.0, 0.0]], [[math.log(3.0), 0.0]]])[None]
    out = flip_average(lambda x: logits.expand(x.shape[0], -1, -1, -1), torch.zeros(1, 3, 1, 2), (1, 2))
    assert torch.allclose(out.softmax(1)[0, 1, 0], torch.tensor([5 / 8, 5 / 8]))
    symmetric = torch.randn(1, 4, 3, 6)
    symmetric = symmetric + symmetric.flip(-1)
    out = flip_average(lambda x: symmetric, torch.zeros(1, 3, 3, 6), (3, 6))
    assert torch.allclose(out, symmetric.log_softmax(1), atol=1e-6)


# ----- camix evaluate on a checkpoint whose prediction is known ------------------------------------------------------


def expected_constant_ious(cfg: Config, class_id: int) -> list[float]:
    """IoU of a constant prediction: |GT = k| / |GT valid| for k, 0 for other present classes, nan for absent ones."""
    counts = np.zeros(256, dtype=np.int64)
    for item in build_dataset(cfg.data.val, crop=None, train=False):  # type: ignore[attr-defined]
        counts += np.bincount(item["label"].flatten().numpy(), minlength=256)
    valid = counts[:19].sum()
    return [counts[class_id] / valid if c == class_id else 0.0 if counts[c] else math.nan for c in range(19)]


def test_camix_evaluate_command(tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("source_only", f"out_dir={tmp_path / 'run'}")
    ckpt = constant_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", cfg, class_id=0)
    assert main(["evaluate", "--ckpt", str(tmp_path / "run"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "last, iteration 7, student" in printed and "mIoU19" in printed
    saved = json.loads((tmp_path / "run" / "eval" / "last" / "eval.json").read_text())
    expected = expected_constant_ious(cfg, 0)
    assert saved["checkpoint"] == {"path": str(ckpt), "kind": "last", "iteration": 7, "network": "student"}
    for name, value in zip(CLASS_NAMES, expected, strict=True):
        assert (saved["iou"][name] is None) if math.isnan(value) else saved["iou"][name] == pytest.approx(100 * value)
    assert saved["miou19"] == pytest.approx(100 * np.nanmean(expected))
    assert np.asarray(saved["confusion"])[:, 1:].sum() == 0  # everything predicted road
    md = (tmp_path / "run" / "eval" / "last" / "eval.md").read_text()
    csv_rows = (tmp_path / "run" / "eval" / "last" / "eval.csv").read_text().splitlines()
    assert "last @ 7 (student)" in md and csv_rows[0].startswith("checkpoint,road,")
    assert float(csv_rows[1].split(",")[1]) == pytest.approx(100 * expected[0], abs=1e-4)


def test_camix_evaluate_protocol_switches(tiny_config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config("source_only", f"out_dir={tmp_path / 'run'}")
    ckpt = constant_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt", cfg, class_id=2)
    args = ["evaluate", "--ckpt", str(ckpt), "--teacher", "--flip", "--sliding", "48x32", "--native-labels"]
    assert main([*args, "--no-progress"]) == 0
    folder = tmp_path / "run" / "eval" / "best_teacher_flip_sliding48x32_native"
    saved = json.loads((folder / "eval.json").read_text())
    assert saved["protocol"]["flip"] and saved["protocol"]["sliding_window"] == [48, 32]
    assert saved["protocol"]["label_size"] == "native" and saved["checkpoint"]["network"] == "teacher"
    assert saved["iou"]["building"] == pytest.approx(100 * expected_constant_ious(cfg, 2)[2])
    out = tmp_path / "elsewhere"
    assert main(["evaluate", "--ckpt", str(ckpt), "--out", str(out), "--no-progress", "--overlap", "1.5"]) == 2
    assert "--overlap" in capsys.readouterr().err
    assert main(["evaluate", "--ckpt", str(tmp_path / "missing.pt"), "--no-progress"]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err
