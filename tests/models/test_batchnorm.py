"""Per-chunk batch statistics: one batched forward equals separate forwards of each chunk."""

from __future__ import annotations

import copy

import torch

from camix.models import build_model
from camix.models.batchnorm import ChunkedBatchNorm2d, per_pass_batch_stats


def test_chunked_forward_equals_separate_forwards() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv2_tiny", 19).train()
    separate_model = copy.deepcopy(model)
    clean = torch.randn(2, 3, 40, 40) * 50
    noisy = [clean + torch.randn_like(clean) * 25 for _ in range(3)]
    with torch.no_grad():
        expected = torch.cat([separate_model(x) for x in (clean, *noisy)])
        with per_pass_batch_stats(model, 4):
            batched = model(torch.cat([clean, *noisy]))
        plain = model(torch.cat([clean, *noisy]))  # outside the block: statistics over all 8 images
    assert torch.allclose(batched, expected, atol=1e-4)
    assert not torch.allclose(plain[:2], expected[:2], atol=1e-2)  # the bias the chunking removes
    assert all(m.chunks == 1 for m in model.modules() if isinstance(m, ChunkedBatchNorm2d))


def test_chunked_layer_keeps_the_state_dict_and_tracks_the_first_chunk() -> None:
    layer = ChunkedBatchNorm2d(3)
    assert set(layer.state_dict()) == set(torch.nn.BatchNorm2d(3).state_dict())
    x = torch.randn(4, 3, 5, 5) + torch.tensor([0.0, 0.0, 10.0, 10.0]).view(4, 1, 1, 1)
    reference = torch.nn.BatchNorm2d(3)
    reference(x[:2])
    layer.chunks = 2
    layer(x)
    assert torch.allclose(layer.running_mean, reference.running_mean)
    assert torch.allclose(layer.running_var, reference.running_var)
    assert int(layer.num_batches_tracked) == 1
