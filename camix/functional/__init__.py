"""The CAMix equations as pure functions (paper Sec. 3, Eqs. 1-11).

Every function is pure: no I/O, no global state, device and dtype follow the inputs, and randomness comes only
from an explicit ``torch.Generator`` (made by the caller on the inputs' device). The per-iteration functions do
not synchronise with the host. Shapes: B batch, C classes, H×W pixels, N stochastic passes; labels are int64
with ignore index 255.
"""

from camix.functional.classes import (
    DEFAULT_RELATIONS,
    EXTENDED_RELATIONS,
    RELATION_PRESETS,
    Relations,
    class_mask,
    close_relations_batched,
    expand_with_relations,
    label_bins,
    mask_from_selection,
    presence_matrix,
    relations_matrix,
    select_classes,
    select_half_batched,
)
from camix.functional.context import contextual_mask, modulated_pseudo_label, spatial_prior
from camix.functional.daformer import (
    THING_CLASSES,
    downscale_label_ratio,
    ignore_rows,
    rcs_class_probabilities,
    thing_feature_distance,
    warmup_poly_lr,
)
from camix.functional.hrda import detail_box, hrda_fuse, hrda_loss, slide_average, slide_boxes
from camix.functional.losses import consistency_loss, pseudo_label_weight, soft_mse_loss, src_loss
from camix.functional.masking import block_mask, mask_image, mic_loss
from camix.functional.metrics import confusion_matrix, iou, miou
from camix.functional.mixing import classmix_mask, cowmix_mask, cutmix_mask, mix
from camix.functional.teacher import ema_alpha, ema_update_
from camix.functional.uncertainty import dynamic_threshold, noisy_copies, predictive_entropy, significance_mask
from camix.labels import IGNORE_INDEX, MIOU13_CLASSES, MIOU16_CLASSES, NUM_CLASSES

__all__ = [
    "DEFAULT_RELATIONS",
    "EXTENDED_RELATIONS",
    "IGNORE_INDEX",
    "MIOU13_CLASSES",
    "MIOU16_CLASSES",
    "NUM_CLASSES",
    "RELATION_PRESETS",
    "THING_CLASSES",
    "Relations",
    "block_mask",
    "class_mask",
    "classmix_mask",
    "close_relations_batched",
    "confusion_matrix",
    "consistency_loss",
    "contextual_mask",
    "cowmix_mask",
    "cutmix_mask",
    "detail_box",
    "downscale_label_ratio",
    "dynamic_threshold",
    "ema_alpha",
    "ema_update_",
    "expand_with_relations",
    "hrda_fuse",
    "hrda_loss",
    "ignore_rows",
    "iou",
    "label_bins",
    "mask_from_selection",
    "mask_image",
    "mic_loss",
    "miou",
    "mix",
    "modulated_pseudo_label",
    "noisy_copies",
    "predictive_entropy",
    "presence_matrix",
    "pseudo_label_weight",
    "rcs_class_probabilities",
    "relations_matrix",
    "select_classes",
    "select_half_batched",
    "significance_mask",
    "slide_average",
    "slide_boxes",
    "soft_mse_loss",
    "spatial_prior",
    "src_loss",
    "thing_feature_distance",
    "warmup_poly_lr",
]
