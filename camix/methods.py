"""The method registry: method families as step functions that return named losses, and mask strategies.

A method is a :class:`Method` record in :data:`METHODS` (its step, whether it needs an EMA teacher and a target
batch); a mask strategy is a :class:`MixStrategy` record in :data:`MIXES` (its mask function, its report label,
whether it reads the spatial prior and the SigMask level). :func:`build_context` is the one builder of a step's
:class:`StepContext`. No other module compares method or mix names; adding a mask strategy is a function and one
entry in :data:`MIXES` plus its literal in ``MethodConfig.mix`` (see docs/architecture.md).

``source_only``: cross-entropy on labelled source crops (also the oracle, trained on target labels).
``mean_teacher``: source cross-entropy plus a consistency loss between the student on a (mixed, strongly
augmented) image and the EMA teacher's pseudo-label; the mask strategy picks the baseline:

===================  ============================================  ===========================
``method.mix``       mask M (True = pixel taken from the target)    paper
===================  ============================================  ===========================
none                 all target (plain mean teacher)               Table 2/6 "Mean Teacher"
cutmix / cowmix      a box / a smooth random region                Table 2
classmix             not( half the classes of the source label )    DACS
inverse_classmix     half the classes of the teacher pseudo-label  iDACS
camix                contextual mask (prior + relations), Eq. 1    CAMix (Algorithm 1)
===================  ============================================  ===========================

Paper: Sec. 3 (Algorithm 1). The step functions never synchronise with the host:
all masks, selections and thresholds stay on the device.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camix import functional as Fn
from camix.augment import StrongAugment
from camix.config import Config, MethodConfig
from camix.data.batch import Batch
from camix.labels import IGNORE_INDEX
from camix.models.batchnorm import per_pass_batch_stats
from camix.validation import ConfigKeyError


@dataclass
class StepContext:
    """What a step needs besides the batch. ``prior`` is the spatial prior at the target image size."""

    student: nn.Module
    teacher: nn.Module | None
    cfg: MethodConfig
    num_classes: int
    generator: torch.Generator
    augment: Callable[[Tensor], Tensor]
    total_iterations: int
    prior: Tensor | None = None
    relations: Mapping[int, Sequence[int]] = field(default_factory=dict)
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    iteration: int = 0
    imagenet: nn.Module | None = None  # the frozen initial network, when the FD loss is on
    teacher_group: int | None = None  # the teacher's passes per forward (None: all N + 1 in one forward)


@dataclass(frozen=True)
class MixedBatch:
    """What a mixing step trained the student on (Sec. 3.2-3.3), after the flip and before the strong augmentation
    of the image: the statistics the loop logs and the tiles of the debug panel (the paper's Figure 2)."""

    image: Tensor  # [B,3,H,W] the mixed image x_M (Eq. 2), after the strong augmentation, detached
    mask: Tensor  # [B,H,W] bool M, True where the pixel comes from the target
    label: Tensor  # [B,H,W] int64 the mixed label Y_M (Eq. 4)
    significance: Tensor  # [B,H,W] the mixed significance mask U_M (Eq. 8), ones when the SigMask level is off
    pseudo_label: Tensor  # [B,H,W] int64 the teacher's pseudo-label of the target
    weight: Tensor  # [B,H,W] the mixed confidence weight


@dataclass
class StepOutput:
    """Named losses (summed by the loop, logged as ``loss/<name>``), for a mixing step its mixed batch, and the
    tiles of the debug panel: caption -> a tensor of the batch's first image (``camix.visualize.debug_panel``)."""

    losses: dict[str, Tensor]
    mixed: MixedBatch | None = None
    tiles: dict[str, Tensor] = field(default_factory=dict)


def upsampled_logits(model: nn.Module, image: Tensor) -> Tensor:
    """Model logits bilinearly upsampled to the input size (align_corners=True, as DACS), in float32."""
    logits = model(image)
    return F.interpolate(logits.float(), size=image.shape[-2:], mode="bilinear", align_corners=True)


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
            logits = upsampled_logits(ctx.student, image)
        return StepOutput({"seg": F.cross_entropy(logits, source["label"], ignore_index=IGNORE_INDEX)}, tiles=tiles)
    with ctx.autocast():
        raw, features = ctx.student(image, return_features=True)
        with torch.no_grad():
            imagenet_features = ctx.imagenet.features(image)  # type: ignore[operator]  # camix networks have it
    logits = F.interpolate(raw.float(), size=image.shape[-2:], mode="bilinear", align_corners=True)
    loss = F.cross_entropy(logits, source["label"], ignore_index=IGNORE_INDEX)
    distance = Fn.thing_feature_distance(
        features.float(), imagenet_features.float(), source["label"], fd.classes, fd.min_ratio, ctx.num_classes
    )
    return StepOutput({"seg": loss, "fd": fd.weight * distance}, tiles=tiles)


def active_mix(cfg: MethodConfig, iteration: int) -> str:
    """The mask strategy at ``iteration``: every mix mode runs ClassMix (DACS) during the warm-up (released code)."""
    if iteration < cfg.warmup_iterations:
        return "classmix"
    return cfg.mix


@dataclass
class TeacherView:
    """The teacher's reading of the target batch (Sec. 3.1-3.3)."""

    prob: Tensor  # [B,C,H,W] softmax at the input size
    pseudo: Tensor  # [B,H,W] int64 argmax
    weight: Tensor  # [B,H,W] DACS confidence weight
    significance: Tensor | None  # [B,H,W] U_T, or None when the SigMask level is off


def needs_significance(cfg: MethodConfig, mix: str) -> bool:
    """The SigMask level needs the N noisy teacher passes (Eq. 5-7) only for the SRC loss."""
    return cfg.significance_mask and cfg.consistency == "src" and MIXES[mix].significance


def teacher_view(ctx: StepContext, image: Tensor, significance: bool) -> TeacherView:
    """The teacher over the clean target and (``significance``) its N noisy copies (Eq. 5): ``ctx.teacher_group``
    passes per forward, each pass normalised with its own batch statistics, so the result is that of N + 1 separate
    forwards whatever the grouping (:func:`teacher_logits`)."""
    assert ctx.teacher is not None
    cfg = ctx.cfg
    passes = [image]
    if significance:
        noisy = Fn.noisy_copies(
            image, cfg.noise_passes, ctx.generator, std=cfg.noise_std, clip=cfg.noise_clip, official=cfg.official_noise
        )
        passes += list(noisy.unbind(0))
    clean, noisy_mean = teacher_logits(ctx, passes)
    size = image.shape[-2:]
    prob = F.interpolate(clean, size=size, mode="bilinear", align_corners=True).softmax(1)
    max_prob, pseudo = prob.max(1)
    weight = Fn.pseudo_label_weight(
        max_prob, cfg.pseudo_threshold, mode=cfg.confidence_weight, per_image=cfg.confidence_per_image
    )
    if cfg.ignore_top or cfg.ignore_bottom:  # DAFormer: no pseudo-label training on the ego vehicle's rows
        weight = Fn.ignore_rows(weight, cfg.ignore_top, cfg.ignore_bottom)
    sig = significance_from_passes(ctx, noisy_mean, size) if noisy_mean is not None else None
    return TeacherView(prob, pseudo, weight, sig)


def teacher_logits(ctx: StepContext, passes: Sequence[Tensor]) -> tuple[Tensor, Tensor | None]:
    """The teacher's float32 logits of the first (clean) pass, and the mean softmax of the other passes (None when
    there are none), at the logits' resolution. Passes run ``ctx.teacher_group`` per forward; only the clean pass
    updates the teacher's running BatchNorm statistics."""
    assert ctx.teacher is not None
    group = max(1, min(ctx.teacher_group or len(passes), len(passes)))
    clean: Tensor | None = None
    prob_sum: Tensor | None = None
    for start in range(0, len(passes), group):
        chunk = passes[start : start + group]
        inputs = chunk[0] if len(chunk) == 1 else torch.cat(list(chunk))
        with torch.no_grad(), ctx.autocast(), per_pass_batch_stats(ctx.teacher, len(chunk), track=start == 0):
            logits = ctx.teacher(inputs).float()
        if start == 0:
            clean, logits = logits[: passes[0].shape[0]], logits[passes[0].shape[0] :]
        if logits.numel():
            probs = logits.softmax(1).unflatten(0, (-1, passes[0].shape[0])).sum(0)
            prob_sum = probs if prob_sum is None else prob_sum + probs
    assert clean is not None
    return clean, prob_sum / (len(passes) - 1) if prob_sum is not None else None


def significance_from_passes(ctx: StepContext, mean_prob: Tensor, size: torch.Size) -> Tensor:
    """U_T (Sec. 3.3, Eqs. 5-7) from the mean softmax ``[B,C,h,w]`` of the N noisy passes at the logits' resolution
    (Eqs. 5-6 need only that mean).

    ``significance_resolution: input`` upsamples the mean probabilities to the input size and thresholds there (a
    0/1 mask); ``logits`` thresholds at the logits' resolution, with the released code's literal entropy, and
    upsamples the 0/1 mask bilinearly (a soft mask).
    """
    cfg = ctx.cfg
    k_sup = cfg.k_sup if cfg.k_sup is not None else math.log(ctx.num_classes)
    threshold = Fn.dynamic_threshold(
        ctx.iteration,
        cfg.threshold_ramp if cfg.threshold_ramp is not None else ctx.total_iterations,
        beta=cfg.threshold_beta,
        gamma=cfg.threshold_gamma,
        k_sup=k_sup,
        form=cfg.threshold_form,
    )
    if cfg.significance_resolution == "logits":
        hard = Fn.significance_mask(Fn.predictive_entropy(mean_prob.unsqueeze(0), official=True), threshold)
        return F.interpolate(hard.unsqueeze(1), size=size, mode="bilinear", align_corners=True).squeeze(1)
    upsampled = F.interpolate(mean_prob, size=size, mode="bilinear", align_corners=True)
    return Fn.significance_mask(Fn.predictive_entropy(upsampled.unsqueeze(0)), threshold)


def crop_prior(prior: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """The spatial prior ``[C,H,W]`` cropped at each target crop's box -> ``[B,C,h,w]``, on the device.

    ``boxes`` is ``[B,4]`` (top, left, height, width) on the prior's device; every crop of a batch has the
    crop size ``size`` = (h, w) (the boxes' own height and width are not read, so nothing goes to the host).
    Where a crop overhangs an image smaller than the crop (padded by the loader, ``camix.data.transforms``),
    the prior is uniform (``1/C``): it leaves the teacher's argmax there unchanged.
    """
    h, w = size
    rows = boxes[:, 0, None] + torch.arange(h, device=boxes.device)  # [B,h]
    cols = boxes[:, 1, None] + torch.arange(w, device=boxes.device)  # [B,w]
    inside = (rows < prior.shape[-2])[:, :, None] & (cols < prior.shape[-1])[:, None, :]  # [B,h,w]
    rows, cols = rows.clamp(max=prior.shape[-2] - 1), cols.clamp(max=prior.shape[-1] - 1)
    crops = prior[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1)  # [C,B,h,w] -> [B,C,h,w]
    return torch.where(inside[:, None], crops, 1.0 / prior.shape[0])  # a Python scalar keeps the prior's dtype


def all_target(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """Plain mean teacher: every pixel comes from the target."""
    return torch.ones(tuple(view.pseudo.shape), dtype=torch.bool, device=view.pseudo.device)


def classmix(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """DACS: half the classes of the source label pasted onto the target."""
    return ~Fn.classmix_mask(source["label"], ctx.generator, count_ignore=ctx.cfg.classmix_count_ignore)


def inverse_classmix(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """iDACS: half the classes of the teacher pseudo-label pasted onto the source."""
    return Fn.classmix_mask(view.pseudo, ctx.generator)


def cutmix(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """CutMix: a source box pasted onto the target."""
    return ~Fn.cutmix_mask(tuple(view.pseudo.shape), ctx.generator)  # type: ignore[arg-type]


def cowmix(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """CowMix: a smooth random source region pasted onto the target."""
    shape = tuple(view.pseudo.shape)
    return ~Fn.cowmix_mask(shape, ctx.generator, sigma=ctx.cfg.cowmix_sigma, p=ctx.cfg.cowmix_p)  # type: ignore[arg-type]


def contextual(ctx: StepContext, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """CAMix: the contextual mask of Eq. 1 from the teacher's probabilities, the cropped prior and the relations."""
    prior = None
    if ctx.cfg.spatial_prior and ctx.prior is not None:
        size = (view.prob.shape[-2], view.prob.shape[-1])
        prior = crop_prior(ctx.prior, target["box"], size).to(view.prob.dtype)
    return Fn.contextual_mask(view.prob, prior, ctx.relations, ctx.generator)


@dataclass(frozen=True)
class MixStrategy:
    """A mask strategy (``method.mix``): its mask M and what it needs besides the teacher's view."""

    mask: Callable[[StepContext, TeacherView, Batch, Batch], Tensor]  # bool [B,H,W], True = pixel from the target
    label: str  # the paper's name, in reports
    prior: bool = False  # reads the spatial prior (built only when method.spatial_prior is on)
    mixes: bool = True  # pastes source pixels (False: the plain mean teacher, whose ClassMix warm-up is optional)
    significance: bool = False  # the SigMask level (Sec. 3.3) applies to it


MIXES: dict[str, MixStrategy] = {
    "none": MixStrategy(all_target, "Mean Teacher", significance=True, mixes=False),
    "cutmix": MixStrategy(cutmix, "+ CutMix"),
    "cowmix": MixStrategy(cowmix, "+ CowMix"),
    "classmix": MixStrategy(classmix, "+ DACS"),
    "inverse_classmix": MixStrategy(inverse_classmix, "+ iDACS"),
    "camix": MixStrategy(contextual, "+ CAMix", prior=True, significance=True),
}


def target_mask(ctx: StepContext, mix: str, view: TeacherView, source: Batch, target: Batch) -> Tensor:
    """The mask M of strategy ``mix``: a bool [B,H,W] that is True where the mixed pixel comes from the target."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix strategy {mix!r}")
    return MIXES[mix].mask(ctx, view, source, target)


def mean_teacher(ctx: StepContext, source: Batch, target: Batch | None) -> StepOutput:
    """Algorithm 1 (and its baselines): source CE + lambda * consistency on the mixed image (Eq. 2, 4, 8, 9, 11)."""
    assert target is not None, "mean_teacher needs a target batch"
    cfg, mix = ctx.cfg, active_mix(ctx.cfg, ctx.iteration)
    out = source_only(ctx, source)
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
        logits = upsampled_logits(ctx.student, image)
    # the ClassMix warm-up has no significance mask: SRC falls back to the weighted CE (which the released SRC equals)
    kind = "ce" if mix != cfg.mix and cfg.consistency == "src" else cfg.consistency
    if kind == "mse" and cfg.official_mse:  # Table 5's MSE as released: soft, unmixed teacher target
        confident = (view.prob.amax(1) >= cfg.pseudo_threshold).to(logits.dtype).mean()
        con = Fn.soft_mse_loss(logits, view.prob, confident)
    else:
        con = Fn.consistency_loss(logits, label, sig, weight, kind=kind, official=cfg.official_src)
    out.losses["con"] = cfg.lambda_con * con
    out.mixed = MixedBatch(image.detach(), mask, label, sig, view.pseudo, weight)
    out.tiles.update(mixed_tiles(target, out.mixed))
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


StepFn = Callable[[StepContext, Batch, Batch | None], StepOutput]


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


def check_method_config(cfg: Config) -> None:
    """What the method of ``cfg`` needs of the rest of the config; a :class:`ConfigKeyError` naming the keys.

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
) -> StepContext:
    """The one builder of a :class:`StepContext` (trainer, benchmarks, tests).

    ``augment`` defaults to the strong augmentation of ``cfg.augment`` at the ``crop`` size (width, height), drawing
    from ``generator``; the prior is kept only when :func:`uses_prior` says the method reads it. ``teacher_group``:
    the teacher's passes per forward (:func:`passes_per_forward`; None: all in one).
    """
    if augment is None:
        assert crop is not None, "the strong augmentation needs the crop size"
        crop_w, crop_h = crop
        augment = StrongAugment(cfg.augment, crop_h, crop_w, generator)
    return StepContext(
        student=student,
        teacher=teacher,
        cfg=cfg,
        num_classes=num_classes,
        generator=generator,
        augment=augment,
        total_iterations=total_iterations,
        prior=prior if uses_prior(cfg) else None,
        relations=relations_for(cfg.relations),
        autocast=autocast,
        iteration=iteration,
        imagenet=imagenet,
        teacher_group=teacher_group,
    )


def passes_per_forward(setting: str | int, device: torch.device) -> int | None:
    """How many of the teacher's N + 1 passes run in one forward, for ``train.teacher_passes``: ``separate`` (1),
    ``batched`` (None: all), a number of passes, or ``auto``: separate on the CPU, where one forward over
    (N + 1)·B images costs more than N + 1 forwards over B (benchmarks/RESULTS.md), batched elsewhere."""
    if isinstance(setting, int):
        return setting
    if setting == "auto":
        setting = "separate" if device.type == "cpu" else "batched"
    return 1 if setting == "separate" else None


def relations_for(spec: str | Mapping[int, Sequence[int]]) -> Mapping[int, Sequence[int]]:
    """The context relations of ``method.relations``: a preset name or an explicit mapping."""
    if not isinstance(spec, str):
        return spec
    presets: dict[str, Mapping[int, Sequence[int]]] = {
        "default": Fn.DEFAULT_RELATIONS,
        "extended": Fn.EXTENDED_RELATIONS,
        "none": {},
    }
    return presets[spec]
