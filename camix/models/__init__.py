"""Segmentation networks (DeepLab-v2, DAFormer), their registry, pretrained-weight loading and a run's extra copies.

Example:
    >>> from camix.models import build_model, param_groups
    >>> model = build_model("deeplabv2_tiny", num_classes=19)
    >>> groups = param_groups(model, lr=2.5e-4, weight_decay=5e-4)  # classifier at 10x
"""

from camix.models.copies import frozen_copy, set_teacher_mode_
from camix.models.deeplabv2 import (
    ASPP_DILATIONS,
    BasicBlock,
    Bottleneck,
    ClassifierModule,
    DeepLabV2,
    count_parameters,
    output_size,
    param_groups,
    set_bn_trainable,
)
from camix.models.hrda import HRDA, HrdaOutput, base_network, build_network
from camix.models.registry import MODELS, build_model, check_hrda_config, register
from camix.models.weights import LoadReport, load_pretrained

__all__ = [
    "ASPP_DILATIONS",
    "HRDA",
    "MODELS",
    "BasicBlock",
    "Bottleneck",
    "ClassifierModule",
    "DeepLabV2",
    "HrdaOutput",
    "LoadReport",
    "base_network",
    "build_model",
    "build_network",
    "check_hrda_config",
    "count_parameters",
    "frozen_copy",
    "load_pretrained",
    "output_size",
    "param_groups",
    "register",
    "set_bn_trainable",
    "set_teacher_mode_",
]
