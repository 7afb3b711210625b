"""Probe: does DACS lose to CutMix on SynthCity because of the "ghosts" its class masks leave?

A ClassMix mask pastes half of the source's classes. Where a source object of an *unpasted* class stood, the mixed
image shows the target instead, cut to the object's silhouette, and the teacher's pseudo-label of the target
there (often building, road or sidewalk) is the training label. The student is then taught that a person- or
fence-shaped region is not a person or a fence. This probe trains DACS with those pixels left out of the
consistency loss: a target pixel kept by the mask carries no loss when the source label under it is a thing or a
thin class (fence, pole, traffic light, traffic sign, person ... bicycle). Everything else is ``camix train``.

    python benchmarks/synthcity/ghost_probe.py -c runs/study/dacs_seed0/config.yaml \
        --set out_dir=runs/probes/ghost_seed0

It replaces the ``classmix`` strategy and ``camix.functional.consistency_loss`` in this process only; it is a
probe of the benchmark, not a method of the library (docs/synthcity.md, "Why DACS ties CutMix").
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
from torch import Tensor

import camix.functional as Fn
import camix.mixes as mixes
from camix.cli import main as camix_main
from camix.step_context import StepContext, TeacherView

GHOST_CLASSES = (4, 5, 6, 7, 11, 12, 13, 14, 15, 16, 17, 18)  # fence, pole, light, sign, person ... bicycle
_pending: list[Tensor] = []
_consistency_loss = Fn.consistency_loss


def classmix_without_ghosts(ctx: StepContext, view: TeacherView, source: dict, target: dict) -> Tensor:
    """The DACS mask; remembers the ghost pixels (kept target under an unpasted source thing) for the loss."""
    if ctx.cfg.augment.flip:  # the flip would move the mask but not the remembered ghosts
        raise SystemExit("ghost_probe: set method.augment.flip=false (the SynthCity configs have it off)")
    keep = mixes.classmix(ctx, view, source, target)
    things = torch.tensor(GHOST_CLASSES, device=keep.device)
    _pending.append(keep & torch.isin(source["label"], things))
    return keep


def consistency_loss(logits: Tensor, label: Tensor, sig: Tensor | None, weight: Tensor | None, **kw: object) -> Tensor:
    """``camix.functional.consistency_loss`` with the pending ghost pixels weighted 0."""
    if _pending and weight is not None:
        weight = weight * (~_pending.pop()).to(weight.dtype)
    return _consistency_loss(logits, label, sig, weight, **kw)  # type: ignore[arg-type]


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    mixes.MIXES["classmix"] = mixes.MixStrategy(classmix_without_ghosts, "+ DACS without ghosts")
    Fn.consistency_loss = consistency_loss  # type: ignore[assignment]
    return camix_main(["train", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
