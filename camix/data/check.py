"""``camix data check``: walk a dataset and report every problem instead of stopping at the first.

Checks every split the dataset has (:func:`camix.data.layouts.splits_of`: Cityscapes, ACDC, Dark Zurich, BDD100K
and folder datasets train and val; GTA5 and SYNTHIA have one): that every image has its label and every label file
its image, both files decode completely, their sizes match and the label holds only ids its format defines; an empty
or missing split is a problem. In a split without labels (Dark Zurich train) every image must decode. Sums the
pixels of every class over the (native-size) label maps. Each split's checks run in :func:`check_split`; per-file
checks in :func:`check_sample`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from camix.config import DatasetConfig
from camix.data.datasets import find_samples
from camix.data.layouts import LAYOUTS, class_names_of, has_labels, layout_of, splits_of
from camix.data.transforms import UNKNOWN_ID, Sample, open_image
from camix.errors import ConfigError, DataError
from camix.labels import CLASS_NAMES, IGNORE_INDEX

SPLITS: dict[str, tuple[str, ...]] = {name: layout.splits for name, layout in LAYOUTS.items()}
"""The splits ``camix data check`` walks by default per dataset; GTA5 and SYNTHIA have one (``all``)."""

LABEL_FINDERS: dict[str, Callable[[DatasetConfig], dict[Path, Path]]] = {
    name: layout.find_labels for name, layout in LAYOUTS.items()
}
"""Dataset name -> every label file of a split mapped to the image it belongs to."""


@dataclass
class SplitReport:
    """What :func:`check_split` found in one split.

    Attributes:
        split: the split name (``train``, ``val``; ``all`` for GTA5 and SYNTHIA).
        num_images: images walked.
        num_labels: images that have a label file, plus label files without an image.
        problems: one message per problem, each naming its file.
        class_pixels: int64[C] pixels of every class over the label maps that decoded.
        ignored_pixels: pixels mapped to the ignore index 255 (void and unused classes).
        notes: what was not checked, and why.
    """

    split: str
    num_images: int = 0
    num_labels: int = 0
    problems: list[str] = field(default_factory=list)
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(len(CLASS_NAMES), dtype=np.int64))
    ignored_pixels: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """What :func:`check_dataset` found: one :class:`SplitReport` per split, and their totals."""

    dataset: str
    root: str
    splits: list[SplitReport] = field(default_factory=list)
    class_names: tuple[str, ...] = CLASS_NAMES

    @property
    def num_images(self) -> int:
        """Images walked over all splits."""
        return sum(s.num_images for s in self.splits)

    @property
    def problems(self) -> list[str]:
        """Every problem of every split, prefixed with the split when there are several."""
        several = len(self.splits) > 1
        return [f"[{s.split}] {p}" if several else p for s in self.splits for p in s.problems]

    @property
    def class_pixels(self) -> np.ndarray:
        """int64[C] class pixel counts over all splits."""
        count = len(self.class_names)
        return np.sum([s.class_pixels for s in self.splits], axis=0, dtype=np.int64).reshape(count)

    @property
    def ignored_pixels(self) -> int:
        """Ignored pixels over all splits."""
        return sum(s.ignored_pixels for s in self.splits)


def known_splits(name: str) -> tuple[str, ...]:
    """The splits of dataset ``name`` (ConfigError for unknown names)."""
    return layout_of(name).splits


def check_dataset(cfg: DatasetConfig, *, splits: Sequence[str] | None = None, progress: bool = True) -> CheckReport:
    """Check every image/label pair, and every label file, of the splits of the dataset that ``cfg`` describes.

    Args:
        cfg: the dataset (``split`` is replaced by each checked split).
        splits: the splits to check; None checks every split the dataset has (:data:`SPLITS`).
        progress: show a progress bar.

    Raises:
        DataError: the root is missing, or no split could be listed at all (missing, empty or misnamed folders).
        ConfigError: unknown dataset name or split.
    """
    default = splits_of(cfg)
    names = tuple(splits) if splits else default
    if default == ("all",) and names != ("all",):
        raise ConfigError(f"{cfg.name} has a single split ('all'); --split applies to datasets with splits")
    report = CheckReport(dataset=cfg.name, root=cfg.root, class_names=class_names_of(cfg))
    failures = []
    for name in names:
        split_cfg = dataclasses.replace(cfg, split=name) if default != ("all",) else cfg
        try:
            report.splits.append(check_split(split_cfg, name, progress=progress))
        except _Unlisted as exc:
            failures.append(exc.error)
            report.splits.append(exc.report)
    if len(failures) == len(names):
        raise failures[0]  # nothing to check: a wrong root or layout
    return report


class _Unlisted(Exception):
    """A split whose images could not be listed (its report holds the problem)."""

    def __init__(self, error: DataError, report: SplitReport) -> None:
        super().__init__(str(error))
        self.error, self.report = error, report


def check_split(cfg: DatasetConfig, name: str, *, progress: bool = True) -> SplitReport:
    """Check one split: every image has its label, every label its image, files decode, sizes and ids fit."""
    report = SplitReport(split=name, class_pixels=np.zeros(len(class_names_of(cfg)), dtype=np.int64))
    labelled = has_labels(cfg)
    labels = _labels_on_disk(cfg) if labelled else {}
    try:
        samples = find_samples(cfg)
    except DataError as exc:
        if not Path(cfg.root).expanduser().is_dir():
            raise  # a missing root is not a split's problem
        unmatched = f" ({len(labels)} label files without images)" if labels else ""
        report.problems.append(f"split {name} is empty or missing: {exc}{unmatched}")
        report.num_labels = len(set(labels.values()))
        raise _Unlisted(exc, report) from None
    for sample in tqdm(samples, desc=f"checking {cfg.name} {name}", unit="img", disable=not progress):
        report.num_images += 1
        report.problems.extend(check_sample(sample, report) if labelled else _check_image(sample))
    if not labelled:
        report.notes.append("a split without labels: images decoded only")
        return report
    if cfg.list_file is not None or cfg.limit is not None:
        report.num_labels = sum(1 for s in samples if s.label.is_file())
        report.notes.append("labels without images not looked for (list file or limit given)")
        return report
    orphans = sorted(label for label, image in labels.items() if not image.is_file())
    report.problems.extend(f"{label}: label file without its image {labels[label]}" for label in orphans)
    report.num_labels = len(set(labels.values()))
    return report


def _labels_on_disk(cfg: DatasetConfig) -> dict[Path, Path]:
    try:
        return LABEL_FINDERS[cfg.name](cfg)
    except DataError:
        return {}


def _check_image(sample: Sample) -> list[str]:
    try:
        open_image(sample.image)
    except DataError as exc:
        return [str(exc)]
    return []


def check_sample(sample: Sample, report: SplitReport) -> list[str]:
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


def _count_labels(sample: Sample, raw: np.ndarray, report: SplitReport) -> list[str]:
    """Add the class histogram of ``raw`` to ``report``; a problem message for ids the format does not define."""
    ids, counts = _histogram(raw)
    in_table = ids < 256
    train_ids = np.full(ids.shape, UNKNOWN_ID, dtype=np.int64)
    train_ids[in_table] = sample.label_format.lut[ids[in_table]]
    known = train_ids != UNKNOWN_ID
    count = len(report.class_pixels)
    keep = known & (train_ids < count)
    report.class_pixels += np.bincount(train_ids[keep], weights=counts[keep], minlength=count)[:count].astype(np.int64)
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
    """A human-readable summary: what was checked per split, class pixel frequencies, then every problem."""
    labelled = int(report.class_pixels.sum())
    lines = [
        f"{report.dataset} at {report.root}: checked " + "; ".join(_split_summary(s) for s in report.splits),
        f"class pixel frequencies over {labelled} labelled pixels ({report.ignored_pixels} ignored):",
    ]
    for train_id, (name, pixels) in enumerate(zip(report.class_names, report.class_pixels, strict=True)):
        share = pixels / labelled if labelled else 0.0
        lines.append(f"  {train_id:2d} {name:<14s} {int(pixels):>14d}  {share:7.2%}")
    lines.extend(_problem_lines(report.problems))
    return "\n".join(lines)


def _split_summary(split: SplitReport) -> str:
    """``train: 2975 images, 2975 labels, 0 problems``."""
    count = len(split.problems)
    text = f"{split.split}: {split.num_images} images, {split.num_labels} labels, {count} problem{'s' * (count != 1)}"
    return text + "".join(f" ({note})" for note in split.notes)


def _problem_lines(problems: Iterable[str]) -> list[str]:
    listed = list(problems)
    return [f"problems ({len(listed)}):", *(f"  {p}" for p in listed)] if listed else ["no problems found"]
