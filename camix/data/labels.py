"""Compatibility re-export: the label conventions live in :mod:`camix.labels` (the package's ground floor)."""

from camix.labels import (
    CAFFE_MEAN_BGR,
    CLASS_NAMES,
    IGNORE_INDEX,
    LABEL_ID_TO_TRAIN_ID,
    MIOU13_CLASSES,
    MIOU16_CLASSES,
    NUM_CLASSES,
    PALETTE,
    PALETTE_LUT,
    SYNTHIA_ID_TO_TRAIN_ID,
    SYNTHIA_TO_TRAIN_ID,
    TRAIN_ID_TO_LABEL_ID,
    TRAIN_ID_TO_LABEL_ID_LUT,
    colorize,
)

__all__ = [
    "CAFFE_MEAN_BGR",
    "CLASS_NAMES",
    "IGNORE_INDEX",
    "LABEL_ID_TO_TRAIN_ID",
    "MIOU13_CLASSES",
    "MIOU16_CLASSES",
    "NUM_CLASSES",
    "PALETTE",
    "PALETTE_LUT",
    "SYNTHIA_ID_TO_TRAIN_ID",
    "SYNTHIA_TO_TRAIN_ID",
    "TRAIN_ID_TO_LABEL_ID",
    "TRAIN_ID_TO_LABEL_ID_LUT",
    "colorize",
]
