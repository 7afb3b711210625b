"""The method registry: method families as step functions that return named losses, and what each needs.

A method is a :class:`Method` record in :data:`METHODS` (its step, whether it needs an EMA teacher and a target
batch); its mask strategies are :data:`camix.mixes.MIXES`. :func:`build_context` is the one builder of a step's
:class:`~camix.step_context.StepContext`, :func:`check_method_config` the rules a method sets for the rest of a
config. No other module compares method or mix names.

``source_only``: cross-entropy on labelled source crops (also the oracle, trained on target labels).
``mean_teacher``: source cross-entropy plus a consistency loss between the student on a (mixed, strongly
augmented) image and the EMA teacher's pseudo-label (:mod:`camix.teacher`); the mask strategy
(:mod:`camix.mixes`) picks the baseline or CAMix.

Paper: Sec. 3 (Algorithm 1). The step functions never synchronise with the host:
all masks, selections and thresholds stay on the device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camix import functional as Fn
from camix.augment import StrongAugment
from camix.config import Config, HrdaConfig, MethodConfig
from camix.data.batch import Batch
from camix.labels import CLASS_NAMES, IGNORE_INDEX
from camix.mic import masked_consistency
from camix.mixes import MIXES, active_mix, needs_significance, target_mask
from camix.step_context import MixedBatch, StepContext, StepFn, StepOutput, backward_finished, predict
from camix.teacher import teacher_view
from camix.validation import ConfigKeyError


def source_only(ctx: StepContext, source: Batch, target: Batch | None = None) -> StepOutput:
    """Eq. 10: pixel-wise cross-entropy on the labelled source batch, plus DAFormer's FD loss when it is on.

    With ``method.augment_source`` the batch first gets the student's strong augmentation (colour jitter and
    blur): the diagnostic row that shows how much of the domain gap augmentation alone removes.
    """
    image, fd = source["image"], ctx.cfg.feature_distance
    tiles = {"source": source["image"][0], "source label": source["label"][0]}
    if ctx.cfg.augment_source:
        image = ctx.augment(image)
    if ctx.imagenet is None or fd.weight <= 0:
        with ctx.autocast():
            pred = predict(ctx, image)
        tiles.update(pred.tiles(image))
        return StepOutput({"seg": pred.loss(cross_entropy, source["label"])}, tiles=tiles)
    with ctx.autocast():
        pred = predict(ctx, image, features=True)
        with torch.no_grad():
            imagenet_features = ctx.imagenet.features(image)  # type: ignore[operator]  # camix networks have it
    tiles.update(pred.tiles(image))
    loss = pred.loss(cross_entropy, source["label"])
    assert pred.features is not None
    distance = Fn.thing_feature_distance(  # HRDA: on the context's features (the input at 0.5), as its reference
        pred.features.float(), imagenet_features.float(), source["label"], fd.classes, fd.min_ratio, ctx.num_classes
    )
    return StepOutput({"seg": loss, "fd": fd.weight * distance}, tiles=tiles)


def cross_entropy(logits: Tensor, label: Tensor) -> Tensor:
    """Eq. 10's pixel-wise cross-entropy, the ignore label left out."""
    return F.cross_entropy(logits, label, ignore_index=IGNORE_INDEX)


def mean_teacher(ctx: StepContext, source: Batch, target: Batch | None) -> StepOutput:
    """Algorithm 1 (and its baselines): source CE + lambda * consistency on the mixed image (Eq. 2, 4, 8, 9, 11)."""
    assert target is not None, "mean_teacher needs a target batch"
    cfg, mix = ctx.cfg, active_mix(ctx.cfg, ctx.iteration)
    out = source_only(ctx, source)
    backward_finished(ctx, out)  # the source graph is freed before the teacher and the mixed forward
    view = teacher_view(ctx, target["image"], needs_significance(cfg, mix))
    mask = target_mask(ctx, mix, view, source, target)
    ones = torch.ones_like(view.weight)
    image = Fn.mix(mask, target["image"], source["image"])
    label = Fn.mix(mask, view.pseudo, source["label"])
    weight = Fn.mix(mask, view.weight, ones)
    sig = Fn.mix(mask, view.significance, ones) if view.significance is not None else ones
    image, label, weight, sig, mask = maybe_flip(ctx, image, label, weight, sig, mask)
    image = ctx.augment(image)
    with ctx.autocast():
        pred = predict(ctx, image)
    # the ClassMix warm-up has no significance mask: SRC falls back to the weighted CE (which the released SRC equals)
    kind = "ce" if mix != cfg.mix and cfg.consistency == "src" else cfg.consistency
    if kind == "mse" and cfg.official_mse:  # Table 5's MSE as released: soft, unmixed teacher target
        confident = (view.prob.amax(1) >= cfg.pseudo_threshold).to(pred.logits.dtype).mean()
        con = pred.loss(lambda logits, prob: Fn.soft_mse_loss(logits, prob, confident), view.prob)
    else:

        def consistency(logits: Tensor, label: Tensor, sig: Tensor, weight: Tensor) -> Tensor:
            return Fn.consistency_loss(logits, label, sig, weight, kind=kind, official=cfg.official_src)

        con = pred.loss(consistency, label, sig, weight)
    out.losses["con"] = cfg.lambda_con * con
    out.mixed = MixedBatch(image.detach(), mask, label, sig, view.pseudo, weight)
    out.tiles.update(mixed_tiles(target, out.mixed))
    out.tiles.update({f"{caption} (mixed)": tile for caption, tile in pred.tiles(image).items()})
    if cfg.mic.weight > 0:  # MIC: the student on the masked target learns the unmasked target's pseudo-label
        backward_finished(ctx, out)
        out.losses["mic"], masked = masked_consistency(ctx, target["image"], view.pseudo, view.weight)
        out.tiles["MIC masked target"] = masked[0]
    return out


def mixed_tiles(target: Batch, mixed: MixedBatch) -> dict[str, Tensor]:
    """The debug panel's tiles of a mixing step (the paper's Figure 2), for the batch's first image."""
    return {
        "target": target["image"][0],
        "mixed image": mixed.image[0],
        "contextual mask M": mixed.mask[0],
        "mixed label Y_M": mixed.label[0],
        "significance U_M": mixed.significance[0],
        "teacher pseudo-label": mixed.pseudo_label[0],
    }


def maybe_flip(ctx: StepContext, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Random horizontal flip of the mixed image with its label and masks (per image, when enabled)."""
    if not ctx.cfg.augment.flip:
        return tensors
    batch = tensors[0].shape[0]
    device = tensors[0].device
    flip = torch.rand(batch, generator=ctx.generator, device=ctx.generator.device).to(device) < 0.5
    return tuple(torch.where(flip.view(-1, *([1] * (t.dim() - 1))), t.flip(-1), t) for t in tensors)


@dataclass(frozen=True)
class Method:
    """A method family (``method.name``): its step and what the trainer must build for it."""

    step: StepFn
    teacher: bool  # an EMA teacher (updated after each optimiser step)
    target: bool  # an unlabelled target batch in every step, and a mask strategy (``method.mix``)


METHODS: dict[str, Method] = {
    "source_only": Method(source_only, teacher=False, target=False),
    "mean_teacher": Method(mean_teacher, teacher=True, target=True),
}


def method_of(cfg: MethodConfig) -> Method:
    """The record of ``method.name``."""
    return METHODS[cfg.name]


def check_method_config(cfg: Config, class_names: Sequence[str] = CLASS_NAMES) -> None:
    """What the method of ``cfg`` needs of the rest of the config; a :class:`ConfigKeyError` naming the keys.
    ``class_names``: the classes of the run's labels (``camix.data.layouts.check_class_count`` returns them), which
    relations given by name refer to.

    The config layer checks values and their relations; these rules read the registry, so they live with it
    (``camix.preflight`` runs them before a run starts, with the other checks of a training config).
    """
    method, needs = cfg.method, method_of(cfg.method)
    if MIXES[method.mix].mixes and method.warmup_iterations > cfg.train.iterations:
        raise ConfigKeyError(
            f"config key 'method.warmup_iterations': {method.warmup_iterations} is longer than the run; it must be "
            f"<= train.iterations={cfg.train.iterations}",
            "method.warmup_iterations",
            "train.iterations",
        )
    if needs.target and cfg.data.target is None:
        raise ConfigKeyError(
            f"config key 'data.target': null, but method.name={method.name} needs an unlabelled target dataset; "
            "set data.target (name, root, split)",
            "data.target",
            "method.name",
        )
    if not needs.teacher and method.mic.weight > 0:
        raise ConfigKeyError(
            f"config key 'method.mic.weight': {method.mic.weight:g}, but method.name={method.name} has no teacher to "
            "give MIC its pseudo-labels; use method.name=mean_teacher (with a mix) or method.mic.weight=0",
            "method.mic.weight",
            "method.name",
        )
    if needs.target and MIXES[method.mix].prior:  # the contextual mask reads the relations
        relations_for(method.relations, class_names)
    if not needs.teacher and cfg.eval.model == "teacher":
        raise ConfigKeyError(
            f"config key 'eval.model': 'teacher', but method.name={method.name} trains no teacher; use 'student'",
            "eval.model",
            "method.name",
        )


def uses_prior(cfg: MethodConfig) -> bool:
    """Whether a run of ``cfg`` needs the spatial prior: a mixing method whose mask strategy reads it, prior on."""
    return method_of(cfg).target and MIXES[cfg.mix].prior and cfg.spatial_prior


def method_title(cfg: MethodConfig) -> str:
    """A short name of the method: the mask strategy of a mixing method, else the method's name."""
    return cfg.mix if method_of(cfg).target else cfg.name


def _class_id(name: int | str, class_names: Sequence[str]) -> int:
    if isinstance(name, int):
        return name
    if name not in class_names:
        raise ConfigKeyError(
            f"config key 'method.relations': unknown class {name!r} (the classes: {', '.join(class_names)})",
            "method.relations",
        )
    return list(class_names).index(name)


def paper_label(name: str, mix: str, trains_on_target: bool) -> str:
    """The paper's name of a method: ``Source only``, ``Oracle``, ``Mean Teacher``, ``+ CutMix`` ... ``+ CAMix``."""
    method = METHODS.get(name)
    if method is not None and not method.target:
        return "Oracle" if trains_on_target else "Source only"
    return MIXES[mix].label if mix in MIXES else str(mix)


def build_context(
    cfg: MethodConfig,
    *,
    student: nn.Module,
    teacher: nn.Module | None,
    num_classes: int,
    generator: torch.Generator,
    total_iterations: int,
    crop: tuple[int, int] | None = None,
    augment: Callable[[Tensor], Tensor] | None = None,
    prior: Tensor | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    imagenet: nn.Module | None = None,
    iteration: int = 0,
    teacher_group: int | None = None,
    hrda: HrdaConfig | None = None,
    output_stride: int = 8,
    class_names: Sequence[str] = CLASS_NAMES,
) -> StepContext:
    """The one builder of a :class:`StepContext` (trainer, benchmarks, tests).

    ``augment`` defaults to the strong augmentation of ``cfg.augment`` at the ``crop`` size (width, height), drawing
    from ``generator``; the prior is kept only when :func:`uses_prior` says the method reads it. ``teacher_group``:
    the teacher's passes per forward (:func:`passes_per_forward`; None: all in one). ``hrda``: ``model.hrda`` when the
    student is an HRDA network of output stride ``output_stride`` (:func:`camix.step_context.predict`).
    """
    if augment is None:
        assert crop is not None, "the strong augmentation needs the crop size"
        crop_w, crop_h = crop
        augment = StrongAugment(cfg.augment, crop_h, crop_w, generator)
    mic_augment = None
    if cfg.mic.weight > 0:
        assert crop is not None, "MIC's augmentation needs the crop size"
        mic_augment = StrongAugment(cfg.mic.augment, crop[1], crop[0], generator)
    return StepContext(
        student=student,
        teacher=teacher,
        cfg=cfg,
        num_classes=num_classes,
        generator=generator,
        augment=augment,
        total_iterations=total_iterations,
        prior=prior if uses_prior(cfg) else None,
        relations=relations_for(cfg.relations, class_names),
        autocast=autocast,
        iteration=iteration,
        imagenet=imagenet,
        teacher_group=teacher_group,
        mic_augment=mic_augment,
        hrda=hrda,
        output_stride=output_stride,
    )


def relations_for(
    spec: str | Mapping[int, Sequence[int]] | Mapping[str, Sequence[str]], class_names: Sequence[str] = CLASS_NAMES
) -> Mapping[int, Sequence[int]]:
    """The context relations of ``method.relations``: a preset name, a mapping of class ids, or one of class names
    (resolved against ``class_names``).

    Raises:
        ConfigKeyError: a class name that is not one of ``class_names``, or a preset on other classes than
            Cityscapes'.
    """
    if isinstance(spec, str) and spec != "none" and tuple(class_names) != CLASS_NAMES:
        raise ConfigKeyError(
            f"config key 'method.relations': {spec!r} relates Cityscapes classes (traffic light/sign -> pole, rider -> "
            "bicycle, motorcycle), but the dataset's classes are others; give them by name, e.g. {rider: [bicycle]}, "
            "or none",
            "method.relations",
        )
    if not isinstance(spec, str):
        return {_class_id(k, class_names): tuple(_class_id(v, class_names) for v in vs) for k, vs in spec.items()}
    presets: dict[str, Mapping[int, Sequence[int]]] = {
        "default": Fn.DEFAULT_RELATIONS,
        "extended": Fn.EXTENDED_RELATIONS,
        "none": {},
    }
    return presets[spec]
