"""Evaluation throughput (images/s): forward + bilinear upsample + argmax + bincount confusion matrix.

Runs :func:`camix.evaluate.evaluate` (the code ``camix evaluate`` and the training loop use) on random
Caffe-normalised images with random labels at the DACS/CAMix protocol size (1024x512), after warm-up images
that are not timed. The network is randomly initialised: speed does not depend on the weights.

    python benchmarks/eval_speed.py                        # deeplabv2_r101, CPU, 1024x512
    python benchmarks/eval_speed.py --device cuda --images 50 --warmup 5
"""

from __future__ import annotations

import argparse
import time

import torch

from camix.config_tree import parse_size
from camix.evaluate import evaluate
from camix.models import build_model


def batches(count: int, batch_size: int, size: tuple[int, int], device: torch.device) -> list[dict[str, torch.Tensor]]:
    """``count`` batches of random images [B,3,H,W] and labels [B,H,W] (already on ``device``)."""
    width, height = size
    generator = torch.Generator().manual_seed(0)
    made = []
    for _ in range(count):
        image = torch.rand(batch_size, 3, height, width, generator=generator) * 255 - 115
        label = torch.randint(0, 19, (batch_size, height, width), generator=generator)
        made.append({"image": image.to(device), "label": label.to(device)})
    return made


def timed_rate(model: torch.nn.Module, data: list[dict[str, torch.Tensor]], device: torch.device, flip: bool) -> float:
    """Images per second of one :func:`evaluate` pass over ``data``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = evaluate(model, data, num_classes=19, device=device, flip=flip)
    result.confusion.sum().item()  # waits for the device
    return sum(len(b["image"]) for b in data) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deeplabv2_r101", help="a name from camix.models.MODELS")
    parser.add_argument("--size", type=parse_size, default=(1024, 512), help="image WxH (default 1024x512)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--images", type=int, default=3, help="timed images")
    parser.add_argument("--warmup", type=int, default=1, help="untimed images first")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation (two forwards per image)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    model = build_model(args.model).to(device).eval()
    warm = batches(max(1, args.warmup // args.batch_size), args.batch_size, args.size, device)
    timed = batches(max(1, args.images // args.batch_size), args.batch_size, args.size, device)
    timed_rate(model, warm, device, args.flip)
    rate = timed_rate(model, timed, device, args.flip)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"{args.model} at {args.size[0]}x{args.size[1]}, batch {args.batch_size}{', flip' if args.flip else ''}, "
        f"{where}: {rate:.3f} images/s ({1 / rate:.3f} s/image; {len(timed) * args.batch_size} timed images "
        f"after {len(warm) * args.batch_size} warm-up)"
    )


if __name__ == "__main__":
    main()
