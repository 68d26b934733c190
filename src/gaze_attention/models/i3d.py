"""Inflated 3-D Inception (I3D) backbone.

Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017, in the module and
parameter naming of the widely used PyTorch port (Conv3d_1a_7x7 ... Mixed_5c, units with
`conv3d` and `bn`), so that the Kinetics and Min & Corso (WACV 2021) checkpoints load with
`strict=True`. Padding follows TensorFlow's "SAME" rule.

Speed: where SAME padding is symmetric (every stride-1 convolution) it is handed to the
convolution itself instead of a separate `F.pad` copy; only the strided stem convolution and
the strided max-pools pad explicitly, and only when the amount is asymmetric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gaze_attention.models import fastpath
from gaze_attention.models.batchnorm import bn_relu

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (b0, b1a, b1b, b2a, b2b, b3b) output channels of each Inception module at full width.
INCEPTION_CHANNELS: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# The stem convolution's spatial strides: I3D's 2 (then MaxPool3d_2a_3x3 halves again), or 4
# with that max-pool left out. Both give the same [T/2, H/4, W/4] map after them; 4 computes
# the 7x7x7 stem at a quarter of the positions (the CPU-scale network's costliest layer).
STEM_STRIDES = (2, 4)

# Total stride of the network: a [T, H, W] clip gives [ceil(T/8), ceil(H/32), ceil(W/32)].
TEMPORAL_STRIDE = 8
SPATIAL_STRIDE = 32


def scaled(channels: int, width: float) -> int:
    """Channel count at a width multiplier (at least 4, so BatchNorm has something to do)."""
    return channels if width == 1.0 else max(4, int(round(channels * width)))


def check_stem_stride(stem_stride: object) -> int:
    """The stem's spatial stride, checked against `STEM_STRIDES`."""
    if isinstance(stem_stride, bool) or stem_stride not in STEM_STRIDES:
        raise ValueError(
            f"stem_stride must be one of {', '.join(map(str, STEM_STRIDES))} (the stem convolution's "
            f"spatial stride; 4 leaves out MaxPool3d_2a_3x3), got {stem_stride!r}"
        )
    return int(stem_stride)  # type: ignore[call-overload]


def check_stem_temporal_kernel(kernel: object) -> int:
    """The stem's temporal kernel size, checked: a positive int (I3D's is 7)."""
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1:
        raise ValueError(f"stem_temporal_kernel must be a positive int (I3D's stem is 7x7x7), got {kernel!r}")
    return kernel


def check_mixed(mixed: Sequence[str] | None) -> tuple[str, ...]:
    """The Inception modules to build (all nine for None), checked: known names, I3D's order."""
    if mixed is None:
        return tuple(INCEPTION_CHANNELS)
    names = list(mixed)
    order = list(INCEPTION_CHANNELS)
    unknown = [n for n in names if n not in INCEPTION_CHANNELS]
    if unknown:
        raise ValueError(f"unknown Inception modules {unknown} (known: {', '.join(order)})")
    if not names or names != sorted(set(names), key=order.index):
        raise ValueError(f"mixed must name at least one Inception module, each once, in I3D's order ({', '.join(order)}); got {names}")
    return tuple(names)


def inception_out_channels(name: str, width: float = 1.0) -> int:
    b0, _, b1b, _, b2b, b3b = (scaled(c, width) for c in INCEPTION_CHANNELS[name])
    return b0 + b1b + b2b + b3b


def output_grid(frames: int, height: int, width: int) -> tuple[int, int, int]:
    """Output size [T', H', W'] of the backbone for an input clip (SAME padding rounds up)."""
    return (
        math.ceil(frames / TEMPORAL_STRIDE),
        math.ceil(height / SPATIAL_STRIDE),
        math.ceil(width / SPATIAL_STRIDE),
    )


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (front, back) along one axis."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _same_pad_5d(shape: torch.Size, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> list[int]:
    # F.pad takes the last axis first: (W_front, W_back, H_front, H_back, T_front, T_back).
    pads: list[int] = []
    for axis in (4, 3, 2):
        pads.extend(_same_pad(shape[axis], kernel[axis - 2], stride[axis - 2]))
    return pads


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _lowp_cpu_t2(x: torch.Tensor, kernel_t: int) -> bool:
    if x.device.type != "cpu" or x.shape[2] != 2 or kernel_t != 3:
        return False
    return x.dtype in (torch.bfloat16, torch.float16) or torch.is_autocast_enabled("cpu")


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm + ReLU with SAME padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, int, int] = 1,
        stride: int | tuple[int, int, int] = 1,
    ) -> None:
        super().__init__()
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)
        # Stride 1 with an odd kernel pads symmetrically whatever the input size.
        self.static_pad = all(s == 1 and k % 2 == 1 for k, s in zip(self.kernel, self.stride))
        padding = tuple(k // 2 for k in self.kernel) if self.static_pad else 0
        self.conv3d = nn.Conv3d(
            in_channels, out_channels, self.kernel, self.stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm3d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.static_pad:
            x = F.pad(x, _same_pad_5d(x.shape, self.kernel, self.stride))
        elif _lowp_cpu_t2(x, self.kernel[0]):
            # torch 2.13's CPU bf16/fp16 Conv3d returns garbage weight gradients (often inf) for
            # a temporal kernel of 3 with its own padding over exactly 2 frames; padding first
            # and convolving unpadded is the same arithmetic and correct.
            pad = [p for k in self.kernel[::-1] for p in (k // 2, k // 2)]
            x = F.conv3d(F.pad(x, pad), self.conv3d.weight, None, self.stride)
            return bn_relu(x, self.bn)
        return bn_relu(self.conv3d(x), self.bn)


class MaxPool3dSame(nn.Module):
    """Max-pool with SAME padding.

    The inputs always follow a ReLU (values >= 0), so zero padding (the reference's `F.pad`)
    and the pool's own -inf padding give identical results; the pool's own padding (or, when
    all of it is at the back, `ceil_mode`'s partial windows) avoids a copy of the input.
    """

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pad_5d(x.shape, self.kernel, self.stride)
        front, back = pads[0::2], pads[1::2]
        if front == back and all(p <= k // 2 for p, k in zip(front, self.kernel[::-1])):
            return F.max_pool3d(x, self.kernel, self.stride, padding=tuple(front[::-1]))
        if not any(front) and fastpath.enabled():
            # No front padding means at most one frame or pixel at the back (SAME puts the
            # larger half there), and ceil_mode's partial last window is exactly that window.
            return F.max_pool3d(x, self.kernel, self.stride, ceil_mode=True)
        return F.max_pool3d(F.pad(x, pads), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-3x3; pool-1x1) concatenated on channels."""

    def __init__(self, in_channels: int, channels: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = channels
        self.b0 = Unit3D(in_channels, c0, 1)
        self.b1a = Unit3D(in_channels, c1a, 1)
        self.b1b = Unit3D(c1a, c1b, 3)
        self.b2a = Unit3D(in_channels, c2a, 1)
        self.b2b = Unit3D(c2a, c2b, 3)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b, 1)
        self.out_channels = c0 + c1b + c2b + c3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))],
            dim=1,
        )


class InceptionI3d(nn.Module):
    """I3D up to `Mixed_5c`, returning the `MaxPool3d_5a_2x2` and `Mixed_5c` endpoints.

    The Kinetics classifier (`logits`) is not part of this module: the gaze-attention network
    classifies with its own head, and checkpoint loading drops `logits.*` keys.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: float = 1.0,
        mixed: Sequence[str] | None = None,
        stem_stride: int = 2,
        stem_temporal_kernel: int = 7,
    ) -> None:
        """`mixed`: the Inception modules to build, in I3D's order (default all nine); each one
        built takes the channels the one before it gives, and the endpoints stay where they are.
        `stem_stride`: the stem convolution's spatial stride (`STEM_STRIDES`); at 4 there is no
        `MaxPool3d_2a_3x3`. The weights' names and shapes do not depend on it.
        `stem_temporal_kernel`: the stem convolution's temporal size (I3D's 7; its weight's shape
        follows)."""
        super().__init__()
        keep = check_mixed(mixed)
        ss, kt = check_stem_stride(stem_stride), check_stem_temporal_kernel(stem_temporal_kernel)
        c64, c192 = scaled(64, width), scaled(192, width)
        self.Conv3d_1a_7x7 = Unit3D(in_channels, c64, (kt, 7, 7), stride=(2, ss, ss))
        if ss == 2:
            self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(c64, c64, 1)
        self.Conv3d_2c_3x3 = Unit3D(c64, c192, 3)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = c192
        # Registration order is execution order (see forward); attribute names are the
        # reference's state-dict keys.
        for name in INCEPTION_CHANNELS:
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
                self.pool5_channels = channels
            if name in keep:
                module = InceptionModule(channels, tuple(scaled(c, width) for c in INCEPTION_CHANNELS[name]))
                setattr(self, name, module)
                channels = module.out_channels
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: [B, C_in, T, H, W]
        pool5 = None
        for name, module in self.named_children():
            x = module(x)
            if name == "MaxPool3d_5a_2x2":
                pool5 = x  # [B, 832, T', S, S]
        assert pool5 is not None
        return pool5, x  # x: [B, 1024, T', S, S]
