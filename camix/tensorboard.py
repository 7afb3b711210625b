"""TensorBoard mirror of a run's log (``train.tensorboard: true``): ``<run_dir>/tensorboard/events.out.tfevents.*``.

Every number of every ``metrics.jsonl`` record becomes a scalar under the record's own key at its iteration
(``loss/total``, ``lr``, ``stat/significant``, ``eval/miou19``, ``eval/iou/road`` ...), and every debug panel an
image (``debug/panel``). Only rank 0 writes. A resumed run passes its iteration as ``purge_step``: TensorBoard then
drops the events of the repeated iterations from the earlier event files, as ``metrics.jsonl`` is truncated.
Needs the ``tensorboard`` package (``pip install 'camix[tensorboard]'``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from camix.validation import ConfigKeyError

TENSORBOARD_HINT = "pip install 'camix[tensorboard]'"


def check_tensorboard(enabled: bool) -> None:
    """``train.tensorboard: true`` needs the tensorboard package; a ConfigKeyError naming the key otherwise."""
    if enabled and importlib.util.find_spec("tensorboard") is None:
        raise ConfigKeyError(
            f"config key 'train.tensorboard': true, but the tensorboard package is not installed; {TENSORBOARD_HINT} "
            "or set train.tensorboard=false",
            "train.tensorboard",
        )


class TensorBoardLog:
    """Writes records and images to a TensorBoard event file; a no-op when disabled."""

    def __init__(self, folder: Path | None, *, purge_step: int | None = None) -> None:
        """Args: folder: the event folder (None: disabled); purge_step: first iteration to (re)write, when resuming."""
        self.writer: Any = None
        if folder is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(folder), purge_step=purge_step)

    @property
    def enabled(self) -> bool:
        """Whether anything is written."""
        return self.writer is not None

    def scalars(self, record: Mapping[str, Any]) -> None:
        """Write every number of a ``metrics.jsonl`` record at its ``iteration``."""
        if self.writer is None:
            return
        step = int(record["iteration"])
        for tag, value in record_scalars(record):
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def image(self, tag: str, path: Path, step: int) -> None:
        """Write a PNG file (e.g. a debug panel) as an image."""
        if self.writer is None:
            return
        from PIL import Image

        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"))
        self.writer.add_image(tag, pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def record_scalars(record: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) of every number in a record, nested mappings as ``key/sub`` (``eval/iou/road``).

    ``iteration`` is the step, not a scalar; strings (``eval/model``) and booleans are skipped.
    """
    for key, value in record.items():
        tag = f"{prefix}{key}"
        if tag == "iteration" or isinstance(value, bool):
            continue
        if isinstance(value, Mapping):
            yield from record_scalars(value, f"{tag}/")
        elif isinstance(value, (int, float)):
            yield tag, float(value)
