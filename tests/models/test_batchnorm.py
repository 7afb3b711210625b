"""Per-chunk batch statistics: one batched forward equals separate forwards of each chunk."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from camix.models import build_model
from camix.models.batchnorm import ChunkedBatchNorm2d, deinterleave, interleave, per_pass_batch_stats


def test_chunked_forward_equals_separate_forwards() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv2_tiny", 19).train()
    separate_model = copy.deepcopy(model)
    clean = torch.randn(2, 3, 40, 40) * 50
    noisy = [clean + torch.randn_like(clean) * 25 for _ in range(3)]
    with torch.no_grad():
        expected = torch.stack([separate_model(x) for x in (clean, *noisy)], dim=1)  # [B, K, C, h, w]
        with per_pass_batch_stats(model, 4):
            batched = deinterleave(model(interleave([clean, *noisy])), 4)
        plain = deinterleave(model(interleave([clean, *noisy])), 4)  # outside the block: statistics over all 8
    assert torch.allclose(batched, expected, atol=1e-4)
    assert not torch.allclose(plain[:, 0], expected[:, 0], atol=1e-2)  # the bias the chunking removes
    assert all(m.chunks == 1 for m in model.modules() if isinstance(m, ChunkedBatchNorm2d))


def test_chunked_layer_keeps_the_state_dict_and_tracks_the_first_pass() -> None:
    layer = ChunkedBatchNorm2d(3)
    assert set(layer.state_dict()) == set(torch.nn.BatchNorm2d(3).state_dict())
    x = torch.randn(4, 3, 5, 5) + torch.tensor([0.0, 10.0, 0.0, 10.0]).view(4, 1, 1, 1)  # pass 1 is shifted by 10
    reference = torch.nn.BatchNorm2d(3)
    expected = torch.stack([reference(x[0::2]), F.batch_norm(x[1::2], None, None, training=True)], dim=1)
    layer.chunks = 2
    out = layer(x)
    assert torch.allclose(deinterleave(out, 2), expected, atol=1e-5)  # each pass its own statistics
    assert torch.allclose(layer.running_mean, reference.running_mean)  # pass 0 only: no trace of the shift
    assert torch.allclose(layer.running_var, reference.running_var)
    assert int(layer.num_batches_tracked) == 1


@pytest.mark.parametrize("momentum", [0.1, None])
def test_every_route_gives_each_pass_its_statistics(momentum: float | None) -> None:
    """The training-mode routes of a batch of 3 interleaved passes: camix's CPU statistics (float32, contiguous
    or channels-last), the per-slice reduction (channels-last; float64 here, on a GPU or under autocast any) and the
    passes folded into one native call (float64 here; on a GPU any contiguous batch) give pass 0 what
    ``nn.BatchNorm2d`` gives it alone, outputs and running statistics, for a fixed momentum and for the cumulative
    average (``momentum=None``, two steps)."""
    torch.manual_seed(0)
    x = torch.randn(6, 4, 7, 5) * torch.arange(1.0, 7.0).view(6, 1, 1, 1) + torch.arange(6.0).view(6, 1, 1, 1)
    first = ChunkedBatchNorm2d(4, momentum=momentum)
    torch.nn.init.uniform_(first.weight), torch.nn.init.uniform_(first.bias)
    last = torch.channels_last
    routes = {
        "cpu": x,
        "cpu_channels_last": x.contiguous(memory_format=last),
        "per_slice": x.double().contiguous(memory_format=last),
        "folded": x.double(),
    }
    reference = torch.nn.BatchNorm2d(4, momentum=momentum)
    reference.load_state_dict(first.state_dict())
    reference(x[0::3])
    expected = reference(x[0::3])
    for route, batch in routes.items():
        layer = copy.deepcopy(first).to(batch.dtype)
        with per_pass_batch_stats(layer, 3):
            layer(batch)
            out = layer(batch).contiguous()  # the second step: the cumulative average's 1/2
        torch.testing.assert_close(out[0::3].float(), expected, atol=1e-5, rtol=1e-5, msg=route)
        torch.testing.assert_close(layer.running_mean.float(), reference.running_mean, msg=route)
        torch.testing.assert_close(layer.running_var.float(), reference.running_var, msg=route)
        assert int(layer.num_batches_tracked) == 2, route


def test_interleave_puts_the_pass_fastest() -> None:
    a, b = torch.tensor([[1.0], [2.0]]), torch.tensor([[10.0], [20.0]])
    assert interleave([a, b]).flatten().tolist() == [1.0, 10.0, 2.0, 20.0]
    assert torch.equal(deinterleave(interleave([a, b]), 2)[:, 1], b)
    assert interleave([a]) is a


@pytest.mark.parametrize(
    ("chunks", "layout"), [(1, torch.contiguous_format), (2, torch.contiguous_format), (2, torch.channels_last)]
)
def test_cpu_statistics_and_gradients_equal_torch_batch_norm(chunks: int, layout: torch.memory_format) -> None:
    """camix's CPU training-mode BatchNorm (moments from ``group_norm``) against ``F.batch_norm`` in float64: the
    output, the running statistics and the gradients of the input, the weight and the bias, with one channel whose
    mean is large against its spread (where a one-pass variance loses its digits)."""
    torch.manual_seed(0)
    x = torch.randn(2 * chunks, 3, 6, 5) * 2 + 1
    x[:, 1] = x[:, 1] * 0.05 + 20  # a one-pass variance E[x²] - E[x]² would be off by about 1e-7 * 400² here
    layer = ChunkedBatchNorm2d(3)
    torch.nn.init.uniform_(layer.weight, 0.5, 1.5), torch.nn.init.uniform_(layer.bias)
    grad = torch.randn_like(x)
    leaf = x.clone().contiguous(memory_format=layout).requires_grad_(True)
    with per_pass_batch_stats(layer, chunks):
        (layer(leaf) * grad).sum().backward()
    reference = torch.nn.BatchNorm2d(3).double()
    reference.load_state_dict(layer.state_dict() | {"running_mean": torch.zeros(3), "running_var": torch.ones(3)})
    reference.num_batches_tracked.zero_()
    ref_leaf = x.double().requires_grad_(True)
    parts = deinterleave(ref_leaf, chunks)  # each pass normalised alone; pass 0 updates the running statistics
    outs = [reference(parts[:, 0])] + [
        F.batch_norm(parts[:, k], None, None, reference.weight, reference.bias, training=True) for k in range(1, chunks)
    ]
    (torch.stack(outs, dim=1).flatten(0, 1) * grad.double()).sum().backward()
    torch.testing.assert_close(leaf.grad, ref_leaf.grad.float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad.float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(layer.bias.grad, reference.bias.grad.float(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(layer.running_mean, reference.running_mean.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.running_var, reference.running_var.float(), atol=1e-5, rtol=1e-5)
    with torch.no_grad(), per_pass_batch_stats(layer, chunks, track=False):
        out = layer(x)
    torch.testing.assert_close(out.double(), torch.stack(outs, dim=1).flatten(0, 1).detach(), atol=1e-4, rtol=1e-4)


def test_an_in_place_relu_after_the_student_batch_norm_stays_cheap_in_backward() -> None:
    """A single pass returns the output itself, not a view of it: an in-place ReLU on a view would make autograd
    rebuild the tensor in backward (``AsStridedBackward0``/``CopySlices``, a copy and a zero fill per layer), and
    the gradient still equals ``nn.BatchNorm2d`` + ReLU's."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5)
    layer, reference = ChunkedBatchNorm2d(4), torch.nn.BatchNorm2d(4)
    leaf, ref_leaf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out = torch.relu_(layer(leaf))
    assert out.grad_fn is not None and out.grad_fn.name() == "ReluBackward0"
    out.sum().backward()
    torch.relu_(reference(ref_leaf)).sum().backward()
    torch.testing.assert_close(leaf.grad, ref_leaf.grad, atol=1e-5, rtol=1e-5)
