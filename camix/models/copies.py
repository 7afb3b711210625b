"""The extra networks a run keeps beside its student: the EMA teacher and DAFormer's frozen ImageNet copy."""

from __future__ import annotations

import copy

from torch import nn

from camix.models.mit import DropPath


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with no trainable parameter (DAFormer's ImageNet model for the FD loss)."""
    return copy.deepcopy(model).requires_grad_(False).eval()


def set_teacher_mode_(teacher: nn.Module, train_mode: bool) -> nn.Module:
    """The teacher's mode; in train mode (batch statistics) its dropout and stochastic depth stay off, as DAFormer's."""
    teacher.train(train_mode)
    for module in teacher.modules():
        if isinstance(module, (nn.modules.dropout._DropoutNd, DropPath)):
            module.eval()
    return teacher
