"""SegFormer's Mix Transformer (MiT) encoder, B0-B5 and a CPU-sized variant, written for camix.

Xie et al., "SegFormer: Simple and Efficient Design for Semantic Segmentation with Transformers" (NeurIPS 2021),
Sec. 3.1: four stages of overlapping patch embeddings (7x7 stride 4, then 3x3 stride 2) followed by blocks of
efficient self-attention (keys and values spatially reduced by a strided conv of ratio R) and a Mix-FFN (an MLP
with a 3x3 depthwise conv between its two linear layers); the encoder returns the four feature maps at strides
4, 8, 16 and 32. DAFormer (Hoyer et al., CVPR 2022, Sec. 3.2) uses MiT-B5 as its encoder.

The module tree reproduces the state-dict names and shapes of the community's ImageNet checkpoints
``mit_b0.pth`` ... ``mit_b5.pth`` (``patch_embed1.proj.weight``, ``block1.0.attn.q.weight``,
``block1.0.attn.kv.weight``, ``block1.0.attn.sr.weight``, ``block1.0.mlp.dwconv.dwconv.weight``,
``norm1.weight``, ...), so that those files load without renaming. The checkpoints' ImageNet classifier
(``head.*``) has no counterpart here. Written from the paper and the names of the released checkpoints; it
depends on neither mmcv nor timm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LAYER_NORM_EPS = 1e-6


@dataclass(frozen=True)
class MiTSpec:
    """The shape of one MiT: per-stage embedding widths, depths, heads and spatial-reduction ratios."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratio: int = 4
    drop_path: float = 0.1


WIDE = (64, 128, 320, 512)
MIT_SPECS: dict[str, MiTSpec] = {
    "mit_b0": MiTSpec((32, 64, 160, 256), (2, 2, 2, 2)),
    "mit_b1": MiTSpec(WIDE, (2, 2, 2, 2)),
    "mit_b2": MiTSpec(WIDE, (3, 4, 6, 3)),
    "mit_b3": MiTSpec(WIDE, (3, 4, 18, 3)),
    "mit_b4": MiTSpec(WIDE, (3, 8, 27, 3)),
    "mit_b5": MiTSpec(WIDE, (3, 6, 40, 3)),
    # camix's CPU variant for SynthCity: B0's design at half its width (16-channel heads), one block per stage
    "mit_tiny": MiTSpec((16, 32, 64, 128), (1, 1, 1, 1), num_heads=(1, 2, 4, 8)),
}


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random subset of samples (rate ``p``)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """``x`` unchanged in eval mode or at rate 0, else ``x * keep / (1 - p)`` with one Bernoulli draw per sample."""
        if not self.training or self.p <= 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class OverlapPatchEmbed(nn.Module):
    """A strided conv with overlapping windows (padding ``kernel // 2``), then LayerNorm over the channels."""

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim, eps=1e-5)  # the released encoder builds this one with LayerNorm's default eps

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        """``[B, C, H, W]`` -> tokens ``[B, h*w, dim]`` and the grid size ``(h, w)``."""
        x = self.proj(x)
        height, width = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class EfficientAttention(nn.Module):
    """Multi-head self-attention whose keys and values come from a grid reduced ``sr_ratio`` times per side."""

    def __init__(self, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding width {dim} is not divisible by {heads} heads")
        self.heads, self.sr_ratio = heads, sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=1e-5)  # LayerNorm's default eps here too, as in the released encoder

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """Tokens ``[B, N, C]`` on an ``height x width`` grid -> attended tokens ``[B, N, C]``."""
        batch, tokens, dim = x.shape
        q = self.q(x).view(batch, tokens, self.heads, -1).transpose(1, 2)
        source = x
        if self.sr_ratio > 1:
            grid = x.transpose(1, 2).reshape(batch, dim, height, width)
            source = self.norm(self.sr(grid).flatten(2).transpose(1, 2))
        k, v = self.kv(source).view(batch, -1, 2, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class DepthwiseConv(nn.Module):
    """The 3x3 depthwise conv of Mix-FFN, applied to tokens laid back on their grid."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """``[B, N, C]`` -> ``[B, N, C]``."""
        batch, _, dim = x.shape
        grid = x.transpose(1, 2).reshape(batch, dim, height, width)
        return self.dwconv(grid).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """Linear -> depthwise 3x3 conv -> GELU -> linear (SegFormer Sec. 3.1, Mix-FFN)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DepthwiseConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """``[B, N, C]`` -> ``[B, N, C]``."""
        return self.fc2(self.act(self.dwconv(self.fc1(x), height, width)))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``, both with stochastic depth."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, mlp_ratio: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = EfficientAttention(dim, heads, sr_ratio)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """Tokens ``[B, N, C]`` -> ``[B, N, C]``."""
        x = x + self.drop_path(self.attn(self.norm1(x), height, width))
        return x + self.drop_path(self.mlp(self.norm2(x), height, width))


class MixVisionTransformer(nn.Module):
    """The MiT encoder: ``[B, 3, H, W]`` -> four feature maps at strides 4, 8, 16, 32 with ``spec.embed_dims`` channels.

    Attributes ``patch_embed{i}``, ``block{i}`` and ``norm{i}`` (i = 1..4) carry the checkpoint names.
    Stochastic depth rises linearly from 0 on the first block to ``spec.drop_path`` on the last.
    """

    def __init__(self, spec: MiTSpec, in_channels: int = 3) -> None:
        super().__init__()
        self.spec = spec
        self.embed_dims = spec.embed_dims
        rates = torch.linspace(0, spec.drop_path, sum(spec.depths)).tolist()
        start = 0
        for stage, (dim, depth) in enumerate(zip(spec.embed_dims, spec.depths, strict=True), start=1):
            previous = in_channels if stage == 1 else spec.embed_dims[stage - 2]
            kernel, stride = (7, 4) if stage == 1 else (3, 2)
            heads, ratio = spec.num_heads[stage - 1], spec.sr_ratios[stage - 1]
            blocks = [TransformerBlock(dim, heads, ratio, spec.mlp_ratio, rates[start + i]) for i in range(depth)]
            setattr(self, f"patch_embed{stage}", OverlapPatchEmbed(previous, dim, kernel, stride))
            setattr(self, f"block{stage}", nn.ModuleList(blocks))
            setattr(self, f"norm{stage}", nn.LayerNorm(dim, eps=LAYER_NORM_EPS))
            start += depth
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> list[Tensor]:
        """The four stages' outputs ``[B, C_i, H / s_i, W / s_i]`` (s = 4, 8, 16, 32, rounded up)."""
        outputs: list[Tensor] = []
        for stage in range(1, 5):
            tokens, height, width = getattr(self, f"patch_embed{stage}")(x)
            for block in getattr(self, f"block{stage}"):
                tokens = block(tokens, height, width)
            tokens = getattr(self, f"norm{stage}")(tokens)
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)
            outputs.append(x)
        return outputs


def _init_weights(module: nn.Module) -> None:
    """SegFormer's initialisation: truncated normal (std 0.02) linears, unit LayerNorms, He-normal convs (fan-out)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        fan_out = kh * kw * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def mit(name: str) -> MixVisionTransformer:
    """Build the MiT encoder ``name`` (a key of ``MIT_SPECS``, e.g. ``"mit_b5"``)."""
    return MixVisionTransformer(MIT_SPECS[name])
