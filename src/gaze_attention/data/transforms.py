"""The joint crop/flip of RGB, flow and gaze, and gaze targets on the model's grid.

Frames are uint8 arrays [T, H, W, C] until the last step, so cropping and flipping are views
and cheap; `to_unit_range` converts to the model's float [-1, 1] layout [C, T, H, W].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from gaze_attention.data.flow import FLOW_BOUND, FLOW_METHODS, FlowComputer, decode_flow, encode_flow

__all__ = [
    "FLOW_BOUND",
    "FLOW_METHODS",
    "CropFlip",
    "FlowComputer",
    "decode_flow",
    "encode_flow",
    "fit_short_side",
    "view_short_side",
    "gaze_targets",
    "stack_channels_last",
    "to_unit_range",
]


@dataclass(frozen=True)
class CropFlip:
    """A spatial crop (top-left y0, x0, square side) of an H x W frame, then an optional flip."""

    y0: int
    x0: int
    size: int
    flip: bool
    height: int
    width: int

    @staticmethod
    def random(rng: np.random.Generator, height: int, width: int, size: int, flip: bool = True):
        """Uniform crop position; flip with probability 1/2 when `flip`."""
        return CropFlip(
            y0=int(rng.integers(0, height - size + 1)),
            x0=int(rng.integers(0, width - size + 1)),
            size=size,
            flip=bool(flip and rng.random() < 0.5),
            height=height,
            width=width,
        )

    @staticmethod
    def center(height: int, width: int, size: int) -> CropFlip:
        return CropFlip((height - size) // 2, (width - size) // 2, size, False, height, width)

    def frames(self, x: np.ndarray) -> np.ndarray:
        """[T, H, W, C] -> [T, size, size, C] (a view)."""
        x = x[:, self.y0 : self.y0 + self.size, self.x0 : self.x0 + self.size]
        return x[:, :, ::-1] if self.flip else x

    def flow(self, x: np.ndarray) -> np.ndarray:
        """Like `frames` for encoded flow [T, H, W, 2]; a mirrored u becomes 255 - u."""
        x = self.frames(x)
        if self.flip:
            x = x.copy()
            x[..., 0] = 255 - x[..., 0]
        return x

    def points(self, pts: np.ndarray) -> np.ndarray:
        """[T, 2] x, y normalised to the full frame -> normalised to the crop.

        Points that land outside the crop become nan (no gaze inside the view).
        """
        pts = np.asarray(pts, dtype=np.float32)
        x = (pts[:, 0] * self.width - self.x0) / self.size
        y = (pts[:, 1] * self.height - self.y0) / self.size
        if self.flip:
            x = 1.0 - x
        out = np.stack([x, y], axis=1)
        with np.errstate(invalid="ignore"):
            inside = (out >= 0).all(1) & (out < 1).all(1)
        out[~inside] = np.nan
        return out


def view_short_side(crop: int) -> int:
    """Largest short side a `crop` is taken from: the paper crops 224 from 256 (340x256 frames)."""
    return round(crop * 256 / 224)


def fit_short_side(frames: np.ndarray, size: int) -> np.ndarray:
    """Scale [T, H, W, C] so that a `size` crop sees what the paper's 224 crop of 340x256 sees.

    Frames smaller than the crop are upscaled to it; frames whose short side exceeds
    `view_short_side(size)` are downscaled to it (a 112 crop of 340x256 frames would otherwise
    see a third of the width). Frames in between, the paper's own 340x256 for 224, are kept.
    """
    t, h, w, c = frames.shape
    short = min(h, w)
    if short < size:
        target, interp = size, cv2.INTER_LINEAR
    elif short > view_short_side(size):
        target, interp = view_short_side(size), cv2.INTER_AREA
    else:
        return frames
    s = target / short
    nh, nw = max(target, round(h * s)), max(target, round(w * s))
    out = np.stack([cv2.resize(f, (nw, nh), interpolation=interp) for f in frames])
    return out.reshape(t, nh, nw, c)


def to_unit_range(frames: np.ndarray, channels_last: bool = False) -> torch.Tensor:
    """uint8 [T, H, W, C] -> float32 [C, T, H, W] in [-1, 1] (pixel * 2/255 - 1).

    `channels_last`: the result is a [C, T, H, W] view of a [T, H, W, C] array, the layout one
    clip has inside a channels_last_3d batch, so that `stack_channels_last` copies it into the
    batch in one contiguous pass; the values are the same bits either way.
    Done in numpy: single-threaded, so it does not contend with DataLoader workers or a busy
    machine the way torch's intra-op threads do on such small tensors.
    """
    src = frames if channels_last else frames.transpose(3, 0, 1, 2)
    out = np.empty(src.shape, dtype=np.float32)
    np.multiply(src, np.float32(2.0 / 255.0), out=out, casting="unsafe")
    out -= np.float32(1.0)
    x = torch.from_numpy(out)
    return x.permute(3, 0, 1, 2) if channels_last else x


def stack_channels_last(clips: Sequence[torch.Tensor]) -> torch.Tensor:
    """[C, T, H, W] CPU clips -> one channels_last_3d batch [B, C, T, H, W], each clip copied
    straight into it: one pass where `torch.stack` and a conversion are two strided ones (a
    contiguous copy per clip made by `to_unit_range(..., channels_last=True)`)."""
    first = clips[0]
    out = torch.empty((len(clips), *first.shape), dtype=first.dtype, memory_format=torch.channels_last_3d)
    for j, clip in enumerate(clips):
        out[j].copy_(clip)
    return out


def gaze_targets(
    points: np.ndarray | torch.Tensor,
    grid: tuple[int, int],
    frame: str = "first",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixation points of a window -> one-hot targets on the model's grid.

    points: [T, 2] x, y normalised to the (cropped, flipped) input, nan where the frame has no
    fixation. grid: (T', S). Slice t covers frames t*T/T' .. (t+1)*T/T' - 1.
    frame="first" (default, as the reference): slice t uses the fixation of its first frame;
    frame="first_valid": the first frame of the slice that has a fixation.
    The one-hot cell is the reference's pixel one-hot max-pooled to S x S.
    Returns target float32 [T', S, S] (sums to 1 where valid, zeros elsewhere), valid bool [T'].
    """
    pts = torch.as_tensor(np.asarray(points, dtype=np.float32))
    t_slices, s = grid
    steps = pts.shape[0] // t_slices
    if steps < 1:
        raise ValueError(f"{pts.shape[0]} frames cannot fill {t_slices} temporal slices")
    target = torch.zeros(t_slices, s, s)
    valid = torch.zeros(t_slices, dtype=torch.bool)
    for t in range(t_slices):
        cands = pts[t * steps : (t + 1) * steps] if frame == "first_valid" else pts[t * steps][None]
        if frame not in ("first", "first_valid"):
            raise ValueError(f"frame must be 'first' or 'first_valid', got {frame!r}")
        for x, y in cands.tolist():
            if np.isfinite(x) and np.isfinite(y) and 0 <= x <= 1 and 0 <= y <= 1:
                target[t, min(int(y * s), s - 1), min(int(x * s), s - 1)] = 1.0
                valid[t] = True
                break
    return target, valid
