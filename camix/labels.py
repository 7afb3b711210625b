"""Label conventions: the 19 Cityscapes training classes, id maps, the palette and the mIoU subsets.

Cityscapes labelIds (also used by GTA5) and SYNTHIA ids are mapped to trainIds 0..18 through 256-entry
lookup tables; every unlisted id maps to the ignore index 255 (docs/datasets.md).
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255
NUM_CLASSES = 19

CLASS_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# Cityscapes labelId of each trainId (index = trainId).
TRAIN_ID_TO_LABEL_ID: tuple[int, ...] = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

# SYNTHIA class id -> trainId (SYNTHIA has no terrain, truck or train).
SYNTHIA_ID_TO_TRAIN_ID: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11, 17: 12, 8: 13, 19: 15, 12: 17, 11: 18,
}  # fmt: skip

# trainIds kept by the SYNTHIA->Cityscapes protocols: mIoU16 drops terrain, truck, train; mIoU13 also wall, fence, pole.
MIOU16_CLASSES: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)
MIOU13_CLASSES: tuple[int, ...] = (0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 15, 17, 18)

PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip

# Caffe ImageNet mean in BGR order (the DeepLab-v2 input convention: BGR, mean subtracted, no std division).
CAFFE_MEAN_BGR: tuple[float, float, float] = (104.00698793, 116.66876762, 122.67891434)


def _lookup(mapping: dict[int, int]) -> np.ndarray:
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for src, dst in mapping.items():
        table[src] = dst
    return table


LABEL_ID_TO_TRAIN_ID: np.ndarray = _lookup({lid: tid for tid, lid in enumerate(TRAIN_ID_TO_LABEL_ID)})
"""uint8[256]: Cityscapes/GTA5 labelId -> trainId (255 for everything else)."""

SYNTHIA_TO_TRAIN_ID: np.ndarray = _lookup(SYNTHIA_ID_TO_TRAIN_ID)
"""uint8[256]: SYNTHIA class id -> trainId (255 for everything else)."""

TRAIN_ID_TO_LABEL_ID_LUT: np.ndarray = _lookup(dict(enumerate(TRAIN_ID_TO_LABEL_ID)))
"""uint8[256]: trainId -> Cityscapes labelId (for the test server); 255 -> 255."""

PALETTE_LUT: np.ndarray = np.zeros((256, 3), dtype=np.uint8)
"""uint8[256, 3]: trainId -> RGB colour; the ignore index is black."""
PALETTE_LUT[:NUM_CLASSES] = np.asarray(PALETTE, dtype=np.uint8)


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """Map an integer trainId array [H, W] to an RGB image [H, W, 3] uint8 in the Cityscapes palette."""
    return PALETTE_LUT[np.asarray(train_ids, dtype=np.int64).clip(0, 255)]
