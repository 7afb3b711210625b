"""A re-creation of the released CAMix code's training iteration (DACS-based), for timing only.

Not used by the library; ``benchmarks/train_step.py --self-check`` checks its helpers. ``--baseline`` runs it
next to camix's fast path so that the speed-up is the ratio of two medians measured in the same process on the
same data. It follows the control flow of the authors' released code (which builds on DACS's ``trainUDA.py``),
written anew here:

* fp32, eager, contiguous tensors; the network is camix's DeepLab-v2 (the same architecture) with torch's own
  ``nn.BatchNorm2d`` layers, as in the released code (camix's :class:`ChunkedBatchNorm2d` takes its statistics its
  own way on the CPU);
* source loss with DACS's ``CrossEntropy2d`` (boolean-mask indexing of the valid pixels);
* the teacher's clean pass, then each of the N noisy passes as a separate forward call, each upsampled and
  soft-maxed at the input size; the released code's "noise" is ``clamp(randn * 0.1, 0.2, -0.2)`` (swapped
  bounds, so every pass adds -0.2 after drawing the random numbers);
* the pseudo-label (spatially modulated for CAMix) or the source label moved to the host (``.cpu().numpy()``),
  classes chosen per image with ``np.unique`` + ``np.random.choice``, the context relations added in Python,
  the mask built with numpy and copied back to the device;
* per-image mixing and DACS's strong transform per image (a new kornia ``ColorJitter`` module when
  ``random.uniform(0, 1) > 0.2``, a new ``GaussianBlur2d`` with ``np.random.uniform(0.15, 1.15)`` when > 0.5);
* DACS's confidence weight via ``.item()`` and ``np.size(np.array(targets.cpu()))``; the released SRC loss
  (mean weighted CE times U_M over sum U_M); ``.item()`` of both losses for logging;
* EMA as a Python loop over parameters: ``ema.data[:] = alpha * ema.data[:] + (1 - alpha) * param.data[:]``.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camix.data.labels import CAFFE_MEAN_BGR, IGNORE_INDEX
from camix.models import build_model, param_groups
from camix.models.batchnorm import ChunkedBatchNorm2d


@dataclass
class ReleasedState:
    """What the released loop holds between iterations."""

    method: str  # source_only | dacs | camix
    model: nn.Module
    ema_model: nn.Module
    optimizer: torch.optim.Optimizer
    prior: Tensor | None
    relations: Mapping[int, Sequence[int]]
    noise_passes: int = 8
    lr: float = 2.5e-4
    total_iterations: int = 250000
    threshold_ramp: int = 130000
    num_classes: int = 19


def build_released(
    model_name: str,
    method: str,
    device: torch.device,
    prior: Tensor | None,
    relations: Mapping[int, Sequence[int]],
    *,
    noise_passes: int = 8,
    seed: int = 0,
) -> ReleasedState:
    """The released code's model, EMA copy (parameters detached) and SGD over the two parameter groups."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = plain_batchnorm(build_model(model_name).to(device).train())
    ema_model = copy.deepcopy(model)
    for param in ema_model.parameters():
        param.detach_()
    groups = param_groups(model, 2.5e-4, 5e-4, 10.0)
    optimizer = torch.optim.SGD(groups, lr=2.5e-4, momentum=0.9, weight_decay=5e-4)
    return ReleasedState(method, model, ema_model, optimizer, prior, relations, noise_passes)


def plain_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every camix BatchNorm turned into torch's ``nn.BatchNorm2d`` (same parameters, buffers and
    flags: only the class changes), as the released network has."""
    for module in model.modules():
        if isinstance(module, ChunkedBatchNorm2d):
            module.__class__ = nn.BatchNorm2d
    return model


def cross_entropy_2d(predict: Tensor, target: Tensor) -> Tensor:
    """DACS's ``CrossEntropy2d``: select the valid pixels by boolean indexing, then a mean cross-entropy."""
    n, c, h, w = predict.shape
    valid = (target >= 0) & (target != IGNORE_INDEX)
    picked = target[valid]
    if picked.numel() == 0:
        return predict.sum() * 0
    predict = predict.transpose(1, 2).transpose(2, 3).contiguous()
    predict = predict[valid.view(n, h, w, 1).repeat(1, 1, 1, c)].view(-1, c)
    return F.cross_entropy(predict, picked)


def upsample(logits: Tensor, size: Sequence[int]) -> Tensor:
    """DACS's ``interp``: ``nn.Upsample(size, mode='bilinear', align_corners=True)``."""
    return nn.Upsample(size=tuple(size), mode="bilinear", align_corners=True)(logits)


def host_class_masks(
    label_maps: Tensor, relations: Mapping[int, Sequence[int]] | None, device: torch.device
) -> list[Tensor]:
    """Per image on the host: np.unique, half of the classes with np.random.choice, relations, np.isin."""
    maps = label_maps.cpu().numpy()
    masks = []
    for image_labels in maps:
        classes = np.unique(image_labels)
        count = len(classes)
        chosen = set(np.random.choice(classes, int((count + count % 2) / 2), replace=False).tolist())
        if relations:
            chosen = close_under(chosen, set(classes.tolist()), relations)
        mask = np.isin(image_labels, np.array(sorted(chosen))).astype(np.float32)
        masks.append(torch.from_numpy(mask).unsqueeze(0).to(device))
    return masks


def close_under(chosen: set[int], present: set[int], relations: Mapping[int, Sequence[int]]) -> set[int]:
    """Add related present classes until nothing changes (the released rules, as Python set logic)."""
    changed = True
    while changed:
        changed = False
        for c in list(chosen):
            for r in relations.get(c, ()):
                if r in present and r not in chosen:
                    chosen.add(r)
                    changed = True
    return chosen


def one_mix(mask: Tensor, pair: Tensor) -> Tensor:
    """DACS's ``oneMix`` on a stacked pair: ``mask * pair[0] + (1 - mask) * pair[1]`` -> batch of one."""
    stacked, _ = torch.broadcast_tensors(mask[0], pair[0])
    return (stacked * pair[0] + (1 - stacked) * pair[1]).unsqueeze(0)


def strong_transform(mask: Tensor, pair: Tensor, mean: Tensor) -> Tensor:
    """DACS's ``strongTransform`` for one image: mix, then colour jitter (p 0.8) and Gaussian blur (p 0.5)."""
    data = one_mix(mask, pair)
    if random.uniform(0, 1) > 0.2:
        jitter = nn.Sequential(kornia.augmentation.ColorJitter(0.25, 0.25, 0.25, 0.25))
        data = (jitter((data + mean) / 255) * 255 - mean).float()
    if random.uniform(0, 1) > 0.5:
        sigma = np.random.uniform(0.15, 1.15)
        ky = int(np.floor(np.ceil(0.1 * data.shape[2]) - 0.5 + np.ceil(0.1 * data.shape[2]) % 2))
        kx = int(np.floor(np.ceil(0.1 * data.shape[3]) - 0.5 + np.ceil(0.1 * data.shape[3]) % 2))
        blur = nn.Sequential(kornia.filters.GaussianBlur2d(kernel_size=(ky, kx), sigma=(sigma, sigma)))
        data = blur(data)
    return data


def noisy_significance(state: ReleasedState, image: Tensor, iteration: int) -> Tensor:
    """N separate noisy teacher passes, their mean softmax, entropy and the dynamic threshold (Eqs. 5-7)."""
    probs = []
    with torch.no_grad():
        for _ in range(state.noise_passes):
            noise = torch.clamp(torch.randn_like(image) * 0.1, 0.2, -0.2)  # the released bounds, swapped
            probs.append(torch.softmax(upsample(state.ema_model(image + noise), image.shape[-2:]), dim=1))
    mean = sum(probs[1:], probs[0]) / state.noise_passes
    entropy = -torch.sum(mean * torch.log(mean + 1e-10), dim=1)
    progress = min(iteration / state.threshold_ramp, 1.0)
    threshold = (0.75 + 0.25 * math.exp(-5.0 * (1.0 - progress) ** 2)) * math.log(state.num_classes)
    return (entropy < threshold).float()


def modulated_label(state: ReleasedState, prob: Tensor, boxes: Tensor) -> Tensor:
    """argmax of the teacher softmax times the spatial prior cropped at each target crop's box."""
    if state.prior is None:
        return prob.argmax(1)
    crops = [state.prior[:, t : t + h, left : left + w] for t, left, h, w in boxes.tolist()]
    return torch.argmax(prob * torch.stack(crops), dim=1)


def released_iteration(
    state: ReleasedState, source: Mapping[str, Tensor], target: Mapping[str, Tensor] | None, iteration: int
) -> dict[str, float]:
    """One training iteration in the released code's style; returns the logged losses (host floats)."""
    model, optimizer = state.model, state.optimizer
    model.train()
    optimizer.zero_grad()
    lr = state.lr * (1 - iteration / state.total_iterations) ** 0.9
    optimizer.param_groups[0]["lr"] = lr
    if len(optimizer.param_groups) > 1:
        optimizer.param_groups[1]["lr"] = lr * 10
    images, labels = source["image"], source["label"]
    loss_l = cross_entropy_2d(upsample(model(images), images.shape[-2:]), labels)
    logged = {"seg": 0.0}
    loss = loss_l
    if state.method != "source_only":
        assert target is not None
        loss_u = consistency(state, images, labels, target, iteration)
        loss = loss_l + loss_u
        logged["con"] = loss_u.item()
    loss.backward()
    optimizer.step()
    ema_update(state, iteration)
    logged["seg"] = loss_l.item()
    return logged


def consistency(
    state: ReleasedState, images: Tensor, labels: Tensor, target: Mapping[str, Tensor], iteration: int
) -> Tensor:
    """DACS's (ClassMix, source onto target) or CAMix's (contextual mask, target onto source) unlabelled loss."""
    inputs_u_w = target["image"]
    logits_u_w = upsample(state.ema_model(inputs_u_w), inputs_u_w.shape[-2:])
    softmax_u_w = torch.softmax(logits_u_w.detach(), dim=1)
    max_probs, argmax_u_w = torch.max(softmax_u_w, dim=1)
    device = images.device
    ones = torch.ones(max_probs.shape, device=device)
    if state.method == "camix":
        sig = noisy_significance(state, inputs_u_w, iteration)
        masks = host_class_masks(modulated_label(state, softmax_u_w, target["box"]), state.relations, device)
        first, second, first_labels, second_labels = inputs_u_w, images, argmax_u_w, labels
    else:
        sig = None
        masks = host_class_masks(labels, None, device)
        first, second, first_labels, second_labels = images, inputs_u_w, labels, argmax_u_w
    mean = torch.tensor(CAFFE_MEAN_BGR, device=device).view(1, 3, 1, 1)
    mixed = [strong_transform(masks[i], torch.stack((first[i], second[i])), mean) for i in range(len(masks))]
    logits_u_s = upsample(state.model(torch.cat(mixed)), images.shape[-2:])
    targets = torch.cat([one_mix(m, torch.stack((first_labels[i], second_labels[i]))) for i, m in enumerate(masks)])
    targets = targets.long()
    confident = torch.sum(max_probs.ge(0.968).long() == 1).item() / np.size(np.array(targets.cpu()))
    weight = confident * torch.ones(max_probs.shape, device=device)
    weight_pairs = (weight, ones) if state.method == "camix" else (ones, weight)
    weights = torch.cat(
        [one_mix(m, torch.stack((weight_pairs[0][i], weight_pairs[1][i]))) for i, m in enumerate(masks)]
    )
    ce = F.cross_entropy(logits_u_s, targets, ignore_index=IGNORE_INDEX, reduction="none")
    loss_u = torch.mean(ce * weights)
    if sig is None:
        return loss_u
    sig_m = torch.cat([one_mix(m, torch.stack((sig[i], ones[i]))) for i, m in enumerate(masks)])
    return torch.sum(loss_u * sig_m) / torch.sum(sig_m)  # the released SRC: a scalar times U_M over sum U_M


def ema_update(state: ReleasedState, iteration: int) -> None:
    """DACS's ``update_ema_variables``: a Python loop over the parameters."""
    alpha = min(1 - 1 / (iteration + 1), 0.99)
    for ema_param, param in zip(state.ema_model.parameters(), state.model.parameters(), strict=True):
        ema_param.data[:] = alpha * ema_param[:].data[:] + (1 - alpha) * param[:].data[:]
