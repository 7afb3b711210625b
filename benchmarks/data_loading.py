"""Images per second of the GTA5 loader: PNG decode + bicubic resize 1914x1052 -> 1280x720 + 512x512 crop.

Writes ``--copies`` GTA5-sized pairs (an RGB image of gradients, blocks and noise, ~3 MB as PNG like the real
ones, and a palette label map of blocky labelIds) into a temporary folder, then times full passes of a
``DataLoader(batch_size=1)`` over ``build_dataset`` for each worker count, ``--repeats`` times, after one
warm-up pass (which also starts the workers). Reports every pass and the median.

    python benchmarks/data_loading.py [--copies 8] [--repeats 3] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from camix.config import DatasetConfig
from camix.data.datasets import build_dataset

WIDTH, HEIGHT = 1914, 1052
LABEL_IDS = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33, 0], np.uint8)


def write_pair(root: Path, index: int) -> None:
    """One GTA5-like image/label pair ``images/NNNNN.png`` + ``labels/NNNNN.png``."""
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    blocks = rng.integers(0, len(LABEL_IDS), (HEIGHT // 40 + 1, WIDTH // 40 + 1))[y // 40, x // 40]
    colour = rng.integers(0, 256, (len(LABEL_IDS), 3))[blocks]
    shade = ((x + y) // 8 % 32)[..., None]
    image = np.clip(colour + shade + rng.normal(0, 6, colour.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(root / "images" / f"{index + 1:05d}.png")
    Image.fromarray(LABEL_IDS[blocks]).convert("P").save(root / "labels" / f"{index + 1:05d}.png")


def time_passes(root: Path, workers: int, repeats: int) -> list[float]:
    """Images per second of each timed pass over the dataset."""
    cfg = DatasetConfig(name="gta5", root=str(root), size=(1280, 720))
    dataset = build_dataset(cfg, crop=(512, 512), train=True)
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, persistent_workers=workers > 0)
    rates = []
    for attempt in range(repeats + 1):
        start = time.perf_counter()
        for batch in loader:
            assert batch["image"].shape == (1, 3, 512, 512)
        if attempt:  # the first pass is the warm-up
            rates.append(len(dataset) / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="image/label pairs written")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per worker count")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        (root / "labels").mkdir()
        for i in range(args.copies):
            write_pair(root, i)
        size_mb = sum(p.stat().st_size for p in (root / "images").iterdir()) / args.copies / 1e6
        print(f"{args.copies} pairs of {WIDTH}x{HEIGHT} (image PNG {size_mb:.1f} MB) -> 1280x720 -> crop 512x512")
        for workers in args.workers:
            rates = time_passes(root, workers, args.repeats)
            listed = ", ".join(f"{r:.1f}" for r in rates)
            print(f"workers={workers}: {statistics.median(rates):.1f} images/s (median; passes: {listed})")


if __name__ == "__main__":
    main()
