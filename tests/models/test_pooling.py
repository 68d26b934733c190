"""MaxPool3dSame equals the reference's zero padding then pooling, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gaze_attention.models.i3d import MaxPool3dSame, _same_pad_5d

# The network's pools, on the sizes the presets give them, and odd sizes besides.
POOLS = [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2)), ((3, 3, 3), (1, 1, 1))]
SHAPES = [(2, 3, 12, 56, 56), (2, 3, 6, 28, 28), (2, 3, 5, 7, 9), (1, 2, 3, 3, 3), (1, 2, 1, 5, 4), (1, 2, 2, 2, 2)]


@pytest.mark.parametrize("kernel,stride", POOLS)
@pytest.mark.parametrize("shape", SHAPES)
def test_same_pooling_equals_zero_padding_then_pooling(kernel, stride, shape) -> None:
    torch.manual_seed(0)
    # The pools follow a ReLU: many exact zeros, so ties with the zero padding happen. Where a
    # window holds only zeros, the gradient may go to the padding or to a zero of the input;
    # either way the ReLU before it passes none, so gradients are compared before the ReLU.
    pre = torch.randn(shape).contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    x = F.relu(pre)
    y = MaxPool3dSame(kernel, stride)(x)
    ref = F.max_pool3d(F.pad(x, _same_pad_5d(x.shape, kernel, stride)), kernel, stride)
    assert y.shape == ref.shape and torch.equal(y, ref)
    g = torch.randn_like(ref)
    (gx,) = torch.autograd.grad(y, pre, g, retain_graph=True)
    (gref,) = torch.autograd.grad(ref, pre, g)
    assert torch.equal(gx, gref)
