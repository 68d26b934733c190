"""BatchNorm followed by ReLU, with a faster backward for channels-last tensors on the CPU.

torch 2.13's multi-threaded CPU BatchNorm backward is slow on channels-last 5-D tensors with
few channels (the `tiny` network's 4-24): with 2 threads the backward of a [8, 8, 12, 56, 56]
tensor took 25 ms, against 7 ms with one thread and 3 ms in the contiguous format, and
BatchNorm's backward was a fifth of a `tiny` training step. A channels-last tensor is a
row-major [N*T*H*W, C] matrix whose column sums are fast, so in training, with more than one
thread, `bn_relu` runs torch's own forward on that matrix (batch statistics, running averages
and eps exactly as `nn.BatchNorm3d`), applies the ReLU in place, and computes the backward of
both itself in a few vectorised passes (no separate ReLU backward, no mask tensor).

Everywhere else (CUDA, the contiguous format, bf16/fp16, evaluation, one thread, where torch's
kernel is as fast) `bn_relu` is `F.relu(bn(x))`, the ReLU in place (out of place inside
`fastpath.baseline_kernels()`, the benchmark's baseline). `benchmarks/train_speed.py` measures the effect;
tests/models/test_batchnorm.py checks the values, gradients and running statistics against
torch's own BatchNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gaze_attention.models import fastpath


def _fast_path(x: torch.Tensor, bn: nn.BatchNorm3d) -> bool:
    return (
        fastpath.enabled()
        and bn.training
        and x.device.type == "cpu"
        and torch.get_num_threads() > 1
        and x.dim() == 5
        and x.dtype == torch.float32  # bf16 takes fp32 statistics inside torch's kernel
        and bn.affine
        and bn.track_running_stats
        and x.is_contiguous(memory_format=torch.channels_last_3d)
        and not x.is_contiguous()  # a [B, C, 1, 1, 1]-like tensor is both: leave it to torch
    )


def bn_relu(x: torch.Tensor, bn: nn.BatchNorm3d) -> torch.Tensor:
    """`F.relu(bn(x))`, with a faster backward on CPU channels-last tensors."""
    if not _fast_path(x, bn):
        # In place: BatchNorm keeps its input for backward, not its output.
        return F.relu(bn(x), inplace=fastpath.enabled())
    assert bn.num_batches_tracked is not None
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
    # nn.BatchNorm's rule: momentum None is a cumulative average.
    factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    b, c, t, h, w = x.shape
    rows = x.permute(0, 2, 3, 4, 1).reshape(-1, c)  # [B*T*H*W, C], a view of channels-last x
    out = _TrainBNReLU.apply(rows, bn.weight, bn.bias, bn.running_mean, bn.running_var, factor, bn.eps)
    return out.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)  # [B, C, T, H, W], channels-last


class _TrainBNReLU(torch.autograd.Function):
    """relu(batch-normalised rows * weight + bias) over the rows of a [M, C] matrix."""

    @staticmethod
    def forward(ctx, rows, weight, bias, running_mean, running_var, momentum, eps):  # type: ignore[override]
        # torch's forward (it also updates the running averages, unbiased variance included);
        # a 2-D [M, C] input is its [N, C] case, fast with any number of threads.
        out, mean, invstd = torch.ops.aten.native_batch_norm(
            rows, weight, bias, running_mean, running_var, True, momentum, eps
        )
        out.relu_()
        ctx.save_for_backward(rows, out, weight, mean, invstd)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        rows, out, weight, mean, invstd = ctx.saved_tensors
        m = rows.shape[0]
        # threshold_backward is torch's own ReLU backward: one vectorised pass, no mask tensor.
        g = torch.ops.aten.threshold_backward(grad_out, out, 0)  # [M, C]
        grad_bias = g.sum(0)  # [C]
        # sum(g * xhat) with xhat = (rows - mean) * invstd, without forming xhat
        grad_weight = ((g * rows).sum(0) - mean * grad_bias) * invstd  # [C]
        grad_rows = None
        if ctx.needs_input_grad[0]:
            # d/dx of BatchNorm with batch statistics, weight * invstd * (g - mean(g) -
            # xhat * mean(g * xhat)), written as g * scale + rows * k1 + k0:
            scale = weight * invstd
            k1 = -scale * invstd * grad_weight / m
            k0 = -scale * grad_bias / m - mean * k1
            grad_rows = torch.addcmul(k0, rows, k1).addcmul_(g, scale)
        return (
            grad_rows,
            grad_weight if ctx.needs_input_grad[1] else None,
            grad_bias if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
            None,
        )
