"""Tables of scores: the paper's IoU table layouts, markdown, CSV, and the files of ``camix evaluate``.

Used by ``camix evaluate`` and by reports (:mod:`camix.report`); scores come as :meth:`EvalResult.as_dict`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camix.evaluate import METRICS
from camix.io import atomic_write_text
from camix.labels import CLASS_NAMES, MIOU16_CLASSES

if TYPE_CHECKING:
    from camix.evaluate import Evaluation

METRIC_TITLES: dict[str, str] = {"miou19": "mIoU19", "miou16": "mIoU16", "miou13": "mIoU13"}

# Column headers of the paper's Tables 1 and 3 (trainId order).
SHORT_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "light", "sign", "vegetation", "terrain",
    "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bike",
)  # fmt: skip


@dataclass(frozen=True)
class TableLayout:
    """Which class columns and which mean IoUs a table shows, and the class names (score keys, column headers)."""

    classes: tuple[int, ...]
    metrics: tuple[str, ...]
    names: tuple[str, ...] = CLASS_NAMES
    headers: tuple[str, ...] = SHORT_NAMES


TABLE1 = TableLayout(tuple(range(len(CLASS_NAMES))), METRICS)
"""GTA5 -> Cityscapes (the paper's Table 1): 19 classes, then mIoU19 (and mIoU16, mIoU13)."""
TABLE3 = TableLayout(MIOU16_CLASSES, ("miou16", "miou13"))
"""SYNTHIA -> Cityscapes (the paper's Table 3): the 16 SYNTHIA classes, then mIoU16 and mIoU13."""


def layout_for(source_name: str, names: tuple[str, ...] = CLASS_NAMES) -> TableLayout:
    """Table 3's layout for SYNTHIA sources, Table 1's otherwise; for other classes than Cityscapes' (a folder
    dataset), every class and the mean IoU over them (no mIoU16/13)."""
    if names != CLASS_NAMES:
        return TableLayout(tuple(range(len(names))), ("miou19",), names, names)
    return TABLE3 if source_name == "synthia" else TABLE1


def format_number(value: float | None, digits: int = 1) -> str:
    """``55.2``; ``-`` for None/nan (a class absent from both prediction and ground truth)."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table with cells padded to their column's width (readable as plain text too).

    Columns whose cells are all numbers (or ``-``) are right-aligned, the others left-aligned.
    """
    columns = list(zip(header, *rows, strict=True))
    widths = [max(len(str(cell)) for cell in column) for column in columns]
    right = [bool(rows) and all(_NUMBER.match(str(cell)) for cell in column[1:]) for column in columns]

    def line(cells: Sequence[str]) -> str:
        padded = [str(c).rjust(w) if r else str(c).ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if r else ":" + "-" * (w + 1) for w, r in zip(widths, right, strict=True))
    return "\n".join([line(header), rule + "|", *(line(r) for r in rows)])


_NUMBER = re.compile(r"^([-+]?\d|-$)")


def iou_table(
    rows: Sequence[tuple[str, Mapping[str, Any]]], layout: TableLayout = TABLE1, first: str = "method"
) -> str:
    """Per-class IoU rows in the layout of the paper's Tables 1 and 3: class columns, then the mean IoUs.

    Args:
        rows: (name, scores) pairs; scores as :meth:`EvalResult.as_dict` (percent, ``iou`` by class name).
        layout: :data:`TABLE1` or :data:`TABLE3`.
        first: header of the first column.
    """
    titles = METRIC_TITLES if layout.names == CLASS_NAMES else {"miou19": "mIoU"}
    header = [first, *(layout.headers[c] for c in layout.classes), *(titles[m] for m in layout.metrics)]
    body = [
        [name]
        + [format_number(scores["iou"].get(layout.names[c])) for c in layout.classes]
        + [format_number(scores.get(m)) for m in layout.metrics]
        for name, scores in rows
    ]
    return markdown_table(header, body)


def csv_lines(
    rows: Sequence[tuple[str, Mapping[str, Any]]], first: str = "method", names: tuple[str, ...] = CLASS_NAMES
) -> list[list[Any]]:
    """Header and rows for :func:`csv_text`: name, the class IoUs, mIoU19/16/13 (percent; other classes than
    Cityscapes': only the mean IoU, as ``miou19``)."""
    metrics = METRICS if names == CLASS_NAMES else ("miou19",)
    header: list[Any] = [first, *names, *metrics]
    body = [[name, *(scores["iou"].get(c) for c in names), *(scores.get(m) for m in metrics)] for name, scores in rows]
    return [header, *body]


def csv_text(rows: Sequence[Sequence[Any]]) -> str:
    """CSV with floats to 4 decimals (nan and None empty) and lists joined by spaces."""

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.4f}"
        return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([[cell(v) for v in row] for row in rows])
    return buffer.getvalue()


def save_evaluation(evaluation: Evaluation, out_dir: str | Path, layout: TableLayout) -> list[Path]:
    """Write ``eval.md``, ``eval.csv`` and ``eval.json`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    scores = evaluation.result.as_dict()
    name = evaluation.checkpoint.short
    text = f"# Evaluation\n\nCheckpoint: `{evaluation.checkpoint}`\n\nProtocol: `{json.dumps(evaluation.protocol)}`\n\n"
    atomic_write_text(out / "eval.md", text + iou_table([(name, scores)], layout, first="checkpoint") + "\n")
    atomic_write_text(out / "eval.csv", csv_text(csv_lines([(name, scores)], first="checkpoint", names=layout.names)))
    atomic_write_text(out / "eval.json", json.dumps(evaluation.as_dict(), indent=2) + "\n")
    return [out / "eval.md", out / "eval.csv", out / "eval.json"]
