"""``camix data check``: walk a dataset and report every problem instead of stopping at the first.

Checks that every image has its label, both files decode completely, their sizes match and the label
holds only ids its format defines; sums the pixels of every trainId over the (native-size) label maps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from camix.config import DatasetConfig
from camix.data.datasets import find_samples
from camix.data.labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from camix.data.transforms import UNKNOWN_ID, Sample, open_image
from camix.errors import DataError


@dataclass
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes:
        dataset: the dataset name.
        root: its root folder.
        num_images: images walked.
        problems: one message per problem, each naming its file.
        class_pixels: int64[19] pixels of every trainId over the label maps that decoded.
        ignored_pixels: pixels mapped to the ignore index 255 (void and unused classes).
    """

    dataset: str
    root: str
    num_images: int = 0
    problems: list[str] = field(default_factory=list)
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, dtype=np.int64))
    ignored_pixels: int = 0


def check_dataset(cfg: DatasetConfig, *, progress: bool = True) -> CheckReport:
    """Check every image/label pair of the dataset that ``cfg`` describes.

    Raises:
        DataError: the dataset folders themselves are missing, empty or misnamed (nothing to check).
        ConfigError: unknown dataset name.
    """
    samples = find_samples(cfg)
    report = CheckReport(dataset=cfg.name, root=cfg.root)
    for sample in tqdm(samples, desc=f"checking {cfg.name}", unit="img", disable=not progress):
        report.num_images += 1
        report.problems.extend(check_sample(sample, report))
    return report


def check_sample(sample: Sample, report: CheckReport) -> list[str]:
    """The problems of one pair; adds its label histogram to ``report`` when the label decodes."""
    if not sample.label.is_file():
        return [f"{sample.label}: label file not found for {sample.image}"]
    problems = []
    image_wh = None
    try:
        image_wh = open_image(sample.image).size
    except DataError as exc:
        problems.append(str(exc))
    try:
        raw = sample.label_format.read(sample.label)
    except DataError as exc:
        return [*problems, str(exc)]
    if image_wh is not None and image_wh != (raw.shape[1], raw.shape[0]):
        label_wh = f"{raw.shape[1]}x{raw.shape[0]}"
        problems.append(
            f"{sample.image}: image is {image_wh[0]}x{image_wh[1]} but its label {sample.label} is {label_wh}"
        )
    problems.extend(_count_labels(sample, raw, report))
    return problems


def _count_labels(sample: Sample, raw: np.ndarray, report: CheckReport) -> list[str]:
    """Add the trainId histogram of ``raw`` to ``report``; a problem message for ids the format does not define."""
    ids, counts = _histogram(raw)
    in_table = ids < 256
    train_ids = np.full(ids.shape, UNKNOWN_ID, dtype=np.int64)
    train_ids[in_table] = sample.label_format.lut[ids[in_table]]
    known = train_ids != UNKNOWN_ID
    keep = known & (train_ids < NUM_CLASSES)
    report.class_pixels += np.bincount(train_ids[keep], weights=counts[keep], minlength=NUM_CLASSES).astype(np.int64)
    report.ignored_pixels += int(counts[known & (train_ids == IGNORE_INDEX)].sum())
    if known.all():
        return []
    listed = ", ".join(f"{int(i)} ({int(c)} px)" for i, c in zip(ids[~known][:8], counts[~known][:8], strict=True))
    return [f"{sample.label}: unknown label ids {listed} for {sample.label_format.name}"]


def _histogram(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids present, their pixel counts); bincount for 8/16-bit maps (much faster than sorting)."""
    if raw.dtype in (np.uint8, np.uint16):
        counts = np.bincount(raw.ravel())
        ids = np.flatnonzero(counts)
        return ids, counts[ids]
    return np.unique(raw, return_counts=True)


def format_report(report: CheckReport) -> str:
    """A human-readable summary: counts, class pixel frequencies per trainId, then every problem."""
    labelled = int(report.class_pixels.sum())
    lines = [
        f"{report.dataset} at {report.root}: {report.num_images} images, {len(report.problems)} problems",
        f"class pixel frequencies over {labelled} labelled pixels ({report.ignored_pixels} ignored):",
    ]
    for train_id, (name, pixels) in enumerate(zip(CLASS_NAMES, report.class_pixels, strict=True)):
        share = pixels / labelled if labelled else 0.0
        lines.append(f"  {train_id:2d} {name:<14s} {int(pixels):>14d}  {share:7.2%}")
    lines.extend(_problem_lines(report.problems))
    return "\n".join(lines)


def _problem_lines(problems: Iterable[str]) -> list[str]:
    listed = list(problems)
    return [f"problems ({len(listed)}):", *(f"  {p}" for p in listed)] if listed else ["no problems found"]
