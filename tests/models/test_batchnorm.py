"""The fused CPU channels-last BatchNorm + ReLU equals torch's BatchNorm followed by ReLU."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from gaze_attention.losses import TRAIN_GAZE_MODE, training_losses
from gaze_attention.models import GazeAttentionNet
from gaze_attention.models.batchnorm import _fast_path, bn_relu
from gaze_attention.models.fastpath import baseline_kernels
from gaze_attention.models.gaze_attention import ModelConfig

CL = torch.channels_last_3d


@pytest.fixture(autouse=True)
def two_threads():
    """The fused path is taken with more than one thread (torch's kernel is fast with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _pair(channels: int, momentum: float | None) -> tuple[torch.nn.BatchNorm3d, torch.nn.BatchNorm3d]:
    bn = torch.nn.BatchNorm3d(channels, eps=1e-3, momentum=momentum)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    return bn, copy.deepcopy(bn)


@pytest.mark.parametrize("shape", [(4, 8, 6, 10, 10), (2, 4, 3, 5, 7), (3, 24, 2, 4, 4)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_training_values_gradients_and_running_stats_equal_torch(shape, momentum) -> None:
    torch.manual_seed(0)
    # An offset mean: the variance must not come from E[x^2] - E[x]^2.
    x = (torch.randn(shape) * 3 + 20).contiguous(memory_format=CL).requires_grad_()
    ours, theirs = _pair(shape[1], momentum)
    assert _fast_path(x, ours)
    for _ in range(2):  # twice: the running averages and the batch counter advance alike
        y_ref = F.relu(theirs(x))
        y = bn_relu(x, ours)
        g = torch.randn_like(y_ref)
        ref = torch.autograd.grad(y_ref, [x, theirs.weight, theirs.bias], g)
        got = torch.autograd.grad(y, [x, ours.weight, ours.bias], g)
        assert y.is_contiguous(memory_format=CL)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 2


def test_other_layouts_dtypes_modes_and_one_thread_are_torchs_own_kernel() -> None:
    bn, _ = _pair(8, 0.1)
    assert not _fast_path(torch.randn(2, 8, 3, 4, 4), bn)  # contiguous format
    assert not _fast_path(torch.randn(2, 8, 3, 4, 4).to(torch.bfloat16).contiguous(memory_format=CL), bn)
    assert not _fast_path(torch.randn(2, 8, 1, 1, 1).contiguous(memory_format=CL), bn)  # both layouts
    x_cl = torch.randn(2, 8, 3, 4, 4).contiguous(memory_format=CL)
    assert _fast_path(x_cl, bn)
    with baseline_kernels():
        assert not _fast_path(x_cl, bn)
    torch.set_num_threads(1)
    assert not _fast_path(x_cl, bn)
    torch.set_num_threads(2)
    bn.eval()
    assert not _fast_path(x_cl, bn)
    x = torch.randn(2, 8, 3, 4, 4)
    a, b = _pair(8, 0.1)
    assert torch.equal(bn_relu(x, a), F.relu(b(x)))  # the same kernel: bit for bit


def test_a_tiny_network_step_matches_torchs_batchnorm() -> None:
    """One training step of a small two-stream network, fused and native, from one state."""
    cfg = ModelConfig(frames=8, crop=64, width=0.125, dropout=0.0, bn_momentum=0.1)
    torch.manual_seed(0)
    net = GazeAttentionNet(cfg, num_classes=4).to(memory_format=CL)
    twin = copy.deepcopy(net)
    rgb = torch.randn(2, 3, 8, 64, 64).contiguous(memory_format=CL)
    flow = torch.randn(2, 2, 8, 64, 64).contiguous(memory_format=CL)
    label = torch.tensor([1, 3])

    def step(model: GazeAttentionNet) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(5)  # the same Gumbel noise for both
        out = model(rgb, flow, gaze_mode=TRAIN_GAZE_MODE["direct"], tau=1.0)
        loss = training_losses(
            out, label, head=model.head, estimator="direct", eps=10.0,
            gaze_target=None, gaze_valid=None, kl_weight=0.0,
        )["total"]  # fmt: skip
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    loss, grads = step(net)
    with baseline_kernels():
        loss_ref, grads_ref = step(twin)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-4, atol=1e-5)
    assert grads.keys() == grads_ref.keys() and all(g is not None for g in grads.values())
    # Rounding differences grow through the network's depth: torch's own channels-last and
    # contiguous kernels disagree by 4e-4 of the gradient's norm here, and so does this one.
    flat = torch.cat([grads[n].flatten() for n in sorted(grads)])
    flat_ref = torch.cat([grads_ref[n].flatten() for n in sorted(grads)])
    assert float((flat - flat_ref).norm() / flat_ref.norm()) < 2e-3
    for (name, a), b in zip(net.named_buffers(), twin.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
