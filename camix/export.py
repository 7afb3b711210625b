"""ONNX export of the segmentation network, with a numerical check against PyTorch in onnxruntime.

The exported graph maps Caffe-normalised BGR images ``image`` [N,3,H,W] (float32) to ``logits`` [N,C,h,w] at
output stride 8 for DeepLab-v2 (``h = ceil(H/8)`` up to its rounding) or 4 for the DAFormer networks, with N, H and
W dynamic (an HRDA network: its fused whole-image inference at one fixed H and W, N = 1). Upsample the logits
to the image size (bilinear, ``align_corners=True``) and take the argmax for a label map, as ``camix predict``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camix.errors import CamixError
from camix.io import atomic_write_bytes

INSTALL_HINT = "pip install camix[onnx]"


class ExportError(CamixError):
    """ONNX export is unavailable or its output does not match PyTorch."""


def require(module: str) -> Any:
    """Import ``onnx`` / ``onnxruntime`` or raise a one-line ExportError saying how to install it."""
    try:
        return __import__(module)
    except ImportError:
        raise ExportError(f"{module} is not installed; {INSTALL_HINT}") from None


def export_onnx(
    model: torch.nn.Module,
    path: str | Path,
    *,
    opset: int = 17,
    sample_size: tuple[int, int] = (64, 96),
    fixed_size: bool = False,
) -> None:
    """Write ``model`` (eval mode, on the CPU) as ONNX with dynamic batch, height and width; checked by onnx.

    Args:
        model: the network.
        path: the ``.onnx`` file (written atomically).
        opset: ONNX opset version.
        sample_size: (height, width) of the tracing input; any size runs afterwards unless ``fixed_size``.
        fixed_size: the graph takes one ``sample_size`` image only: HRDA's fused inference, whose sliding windows
            are laid out for one batch and image size when it is traced.
    """
    onnx = require("onnx")
    model = model.cpu().eval()
    sample = torch.zeros(1, 3, *sample_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            model,
            (sample,),
            buffer,  # type: ignore[arg-type]
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes=None
            if fixed_size
            else {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "h8", 3: "w8"}},
        )
    onnx.checker.check_model(onnx.load_model_from_string(buffer.getvalue()))
    atomic_write_bytes(path, buffer.getvalue())


def random_image(batch: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """A batch of uniform-noise images in the network's input range (0-255 minus the Caffe mean, BGR)."""
    from camix.labels import CAFFE_MEAN_BGR

    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch, 3, *size, generator=generator) * 255
    return pixels - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)


def max_abs_difference(model: torch.nn.Module, path: str | Path, image: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's logits for ``image``."""
    ort = require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(["logits"], {"image": image.numpy()})
    with torch.no_grad():
        torch_logits = model.cpu().eval()(image).numpy()
    if onnx_logits.shape != torch_logits.shape:
        raise ExportError(f"{path}: onnxruntime gives shape {onnx_logits.shape}, PyTorch {torch_logits.shape}")
    return float(np.abs(onnx_logits - torch_logits).max())


def onnxruntime_available() -> bool:
    """True when onnxruntime can be imported."""
    with contextlib.suppress(ImportError):
        __import__("onnxruntime")
        return True
    return False
