"""``camix report``: grouping over seeds, mean ± std tables, labels, curves and the qualitative grid."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from camix.cli import main
from camix.config import load_config
from camix.config_tree import to_dict
from camix.data.labels import CLASS_NAMES, PALETTE
from camix.report import (
    comparison_rows,
    comparison_table,
    group_curve,
    group_runs,
    load_run,
    method_label,
    per_class_table,
)


def fake_run(folder: Path, config: str, seed: int, scores: list[tuple[int, float]], road: float = 60.0) -> Path:
    """A run directory with a resolved config and eval records (mIoU16 = mIoU19 + 1, mIoU13 = mIoU19 + 2)."""
    folder.mkdir(parents=True)
    cfg = to_dict(load_config(f"configs/synthcity/{config}.yaml", [f"seed={seed}", f"out_dir={folder}"]))
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = []
    for iteration, miou in scores:
        iou = {name: math.nan for name in CLASS_NAMES} | {"road": road, "sky": miou}
        lines.append({"iteration": iteration, "lr": 0.01, "sec_per_iter": 0.1, "loss/seg": 1.0})
        record = {"iteration": iteration, "eval/model": "student", "eval/miou19": miou}
        lines.append(record | {"eval/miou16": miou + 1, "eval/miou13": miou + 2, "eval/iou": iou})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"torn": ')
    return folder


@pytest.fixture
def three_runs(tmp_path: Path) -> list[Path]:
    return [
        fake_run(tmp_path / "mt_seed0", "mean_teacher", 0, [(100, 45.0), (200, 40.0)], road=60.0),
        fake_run(tmp_path / "mt_seed1", "mean_teacher", 1, [(100, 30.0), (200, 44.0)], road=math.nan),
        fake_run(tmp_path / "camix", "camix", 0, [(100, 41.0), (200, 50.0)], road=70.0),
    ]


def cells(table: str, row: int) -> list[str]:
    return [c.strip() for c in table.splitlines()[row].strip("|").split("|")]


def test_grouping_mean_std_and_gain(three_runs: list[Path]) -> None:
    groups = group_runs([load_run(p) for p in three_runs])
    assert [(g.label, g.n) for g in groups] == [("mt", 2), ("camix", 1)]
    table = comparison_table(groups)
    assert cells(table, 0) == ["method", "mIoU19 (%)", "gain (%)", "n", "checkpoint"]
    assert cells(table, 2) == ["mt", "42.0 ± 2.8", "-", "2", "last @ 200"]  # mean of 40, 44; sample std sqrt(8)
    assert cells(table, 3) == ["camix", "50.0", "+8.0", "1", "last @ 200"]
    assert cells(comparison_table(groups, baseline="camix"), 2)[2] == "-8.0"
    assert cells(comparison_table(groups, metric="miou13"), 2)[1] == "44.0 ± 2.8"
    best = comparison_rows(groups, which="best")  # seed 0 peaked at 45 (iteration 100), seed 1 at 44 (200)
    assert best[0]["mean"] == pytest.approx(44.5) and best[0]["checkpoint"] == "best-on-val @ 100, 200"
    per_class = per_class_table(groups)
    assert cells(per_class, 2)[1] == "60.0"  # road: the nan of seed 1 (absent class) is skipped
    assert cells(per_class, 2)[-3:] == ["42.0", "43.0", "44.0"]


def test_curves_have_mean_and_min_max_band(three_runs: list[Path]) -> None:
    curve = group_curve(group_runs([load_run(p) for p in three_runs])[0])
    assert (list(curve.x), list(curve.mean), list(curve.low), list(curve.high)) == (
        [100, 200], [37.5, 42.0], [30.0, 40.0], [45.0, 44.0]
    )  # fmt: skip


def test_labels(tmp_path: Path, three_runs: list[Path]) -> None:
    def label_of(name: str) -> str:
        return method_label(Path("x"), to_dict(load_config(f"configs/synthcity/{name}.yaml")))

    assert [label_of(n) for n in ("source_only", "oracle", "mean_teacher", "dacs", "idacs", "camix")] == [
        "Source only", "Oracle", "Mean Teacher", "+ DACS", "+ iDACS", "+ CAMix"
    ]  # fmt: skip
    other = fake_run(tmp_path / "b" / "camix", "camix_mse", 0, [(200, 30.0)])
    labels = [g.label for g in group_runs([load_run(three_runs[2]), load_run(other)])]
    assert labels == [
        "camix [method.consistency=src, method.significance_mask=True]",
        "camix [method.consistency=mse, method.significance_mask=False]",
    ]
    assert load_run(other, label="CAMix + MSE").label == "CAMix + MSE"


def test_report_command_tables_only(tmp_path: Path, three_runs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    args = ["report", *map(str, three_runs), "--out", str(out), "--no-figures", "--table", "table2"]
    assert main([*args, "--label", "Mean Teacher", "--label", "+ CAMix"]) == 0
    assert "| Mean Teacher | 42.0 ± 2.8 |" in capsys.readouterr().out
    rows = json.loads((out / "table2.json").read_text())
    assert [(r["method"], r["n"], r["seeds"]) for r in rows] == [("Mean Teacher", 2, [0, 1]), ("+ CAMix", 1, [0])]
    assert rows[0]["std"] == pytest.approx(math.sqrt(8)) and rows[1]["std"] is None and rows[1]["gain"] == 8.0
    assert (out / "table2.csv").read_text().splitlines()[1].startswith("Mean Teacher,2,0 1,miou19,42.0000,2.8284,")
    report = (out / "report.md").read_text()
    assert "Gain: over **Mean Teacher**" in report and "`method.mix=camix`" in report
    assert main([*args, "--baseline", "nope"]) == 2
    assert "--baseline 'nope' is not a row" in capsys.readouterr().err
    assert main([*args, "--label", "only one"]) == 2
    assert main(["report", str(tmp_path), "--out", str(out)]) == 2
    assert "config.yaml is missing" in capsys.readouterr().err


def read_final_mious(run: Path) -> float:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "eval/miou19" in r][-1]["eval/miou19"]


def palette_fraction(tile: np.ndarray) -> float:
    colours = {tuple(c) for c in PALETTE}
    return float(np.mean([tuple(p) in colours for p in tile.reshape(-1, 3)]))


def test_report_on_trained_runs_writes_tables_and_figures(tiny_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from camix.train import train

    runs = []
    for name, seed, folder in [("source_only", 0, "so_seed0"), ("source_only", 1, "so_seed1"), ("dacs", 0, "dacs")]:
        cfg = tiny_config(name, f"seed={seed}", f"out_dir={tmp_path / folder}", "train.eval_every=1")
        train(cfg, progress=False)
        runs.append(tmp_path / folder)
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out), "--images", "2", "--title", "tiny"]) == 0
    rows: list[dict[str, Any]] = json.loads((out / "table.json").read_text())
    finals = [read_final_mious(r) for r in runs]
    assert rows[0]["method"] == "so" and rows[0]["n"] == 2 and rows[1]["method"] == "dacs"
    assert rows[0]["mean"] == pytest.approx(statistics.fmean(finals[:2]))
    assert rows[0]["std"] == pytest.approx(statistics.stdev(finals[:2]))
    assert rows[1]["gain"] == pytest.approx(finals[2] - statistics.fmean(finals[:2]))
    with Image.open(out / "curves.png") as curves:
        assert curves.size == (1275, 630)
    grid = np.asarray(Image.open(out / "qualitative.png").convert("RGB"))
    tile_w, tile_h, pad, title_h = 384, 192, 4, 22  # val images are 96x48
    assert grid.shape[1] == 4 * (tile_w + pad) + pad and grid.shape[0] > title_h + 2 * (tile_h + pad)
    for column in (1, 2, 3):  # ground truth (may contain black ignore pixels), then each group's prediction
        x = pad + column * (tile_w + pad)
        tile = grid[title_h : title_h + tile_h, x : x + tile_w]
        assert palette_fraction(tile) > (0.9 if column == 1 else 0.999)
    assert "![predictions](qualitative.png)" in (out / "report.md").read_text()


def test_settling_table_measures_the_last_quarter_of_each_mean_curve() -> None:
    from camix.report import settling_table
    from camix.visualize import Curve

    xs = [250, 500, 750, 1000, 1250, 1500, 1750, 2000]
    flat = Curve("mean_teacher", xs, [30, 35, 33, 32, 32, 31.9, 31.5, 31.4], xs, xs, 3)  # band unused
    rising = Curve("dacs", xs, [30, 31, 32, 33, 34, 34.0, 35.2, 36.1], xs, xs, 3)
    lines = settling_table([flat, rising]).splitlines()
    assert lines[0].split("|")[1].strip() == "method"
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert cells[0] == ["mean_teacher", "1500-2000", "31.9 31.5 31.4", "0.5", "yes"]  # 31.9 - 31.4
    assert cells[1] == ["dacs", "1500-2000", "34.0 35.2 36.1", "2.1", "no"]  # 36.1 - 34.0
