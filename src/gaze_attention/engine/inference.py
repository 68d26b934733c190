"""One inference path for evaluate, predict, visualize and the demo.

Reading top-down:

1. `WindowPolicy` says which windows of a clip the model sees. The default is the authors' test
   loop: non-overlapping windows of the model's frame count from frame 0, the incomplete tail
   dropped (a clip shorter than one window gets one edge-padded window). `stride` and `tail`
   are options for long videos; `max_windows` is evaluation's sparse mode.
2. A source (`ClipSource`) turns a clip into model-ready windows, a few at a time: `VideoReader` (any file
   PyAV opens; streaming, seeking, flow computed on the fly), `PreparedClip` (a folder written
   by `prepare`) and `TensorClip` (a clip already in memory, as visualize draws it). Every
   source resizes like `prepare`, upscales frames smaller than the crop, centre-crops and
   scales to [-1, 1] exactly as the test-time dataset does.
3. `run_windows` batches windows through the model. The gaze sample of a window depends only
   on (seed, clip name, window start): the Gumbel noise is drawn per window, so batch size,
   worker count and the number of processes do not change a prediction.
4. `average_logits` / `softmax` turn window logits into the clip's scores, the same way for
   every command.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import torch
from torch import nn

from gaze_attention.constants import EVAL_GAZE_MODES, PRECISIONS, PREPARED_SIZE
from gaze_attention.data.flow import FlowComputer, encode_flow
from gaze_attention.data.store import FrameStore
from gaze_attention.data.transforms import (
    CropFlip,
    fit_short_side,
    gaze_targets,
    stack_channels_last,
    to_unit_range,
)
from gaze_attention.estimators import sample_gumbel

SPARSE_WINDOWS = 10


# ----------------------------------------------------------------------------- window policy


@dataclass(frozen=True)
class WindowPolicy:
    """Which windows of a clip the model sees.

    stride: frames between window starts (None: the window length, i.e. non-overlapping).
    tail: add a window ending at the last frame when the regular ones leave frames uncovered.
    max_windows: keep at most this many, evenly spaced from the first to the last (sparse).
    """

    stride: int | None = None
    tail: bool = False
    max_windows: int | None = None

    def __post_init__(self) -> None:
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.max_windows is not None and self.max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {self.max_windows}")

    @classmethod
    def sparse(cls) -> WindowPolicy:
        return cls(max_windows=SPARSE_WINDOWS)

    def starts(self, length: int, frames: int) -> list[int]:
        """Start frames of the windows of a clip of `length` frames (sorted, at least one)."""
        step = self.stride or frames
        if length <= frames:
            return [0]
        starts = list(range(0, length - frames + 1, step))
        if self.tail and starts[-1] + frames < length:
            starts.append(length - frames)
        if self.max_windows is not None and len(starts) > self.max_windows:
            keep = np.unique(np.linspace(0, len(starts) - 1, self.max_windows).round().astype(np.int64))
            starts = [starts[i] for i in keep]
        return starts


def window_starts(length: int, frames: int, sparse: bool = False, max_windows: int = SPARSE_WINDOWS) -> list[int]:
    """Starts of the default (authors') windows; sparse keeps at most `max_windows` of them."""
    return WindowPolicy(max_windows=max_windows if sparse else None).starts(length, frames)


# ----------------------------------------------------------------------------- options, seeding


@dataclass(frozen=True)
class InferenceOptions:
    """How windows go through the model.

    gaze_mode: "sample" (one Gumbel-max draw per window, as the authors test), "argmax",
    "expected" or "none" (uniform gaze, for models trained without gaze). batch_size: windows
    per forward pass (None: `auto_batch_size`). channels_last: input memory format (None:
    follow the model's Conv3d weights).
    """

    gaze_mode: str = "sample"
    seed: int = 0
    batch_size: int | None = None
    precision: str = "fp32"
    channels_last: bool | None = None
    windows: WindowPolicy = field(default_factory=WindowPolicy)

    def __post_init__(self) -> None:
        if self.gaze_mode not in EVAL_GAZE_MODES:
            raise ValueError(f"gaze_mode must be one of {', '.join(EVAL_GAZE_MODES)}, got {self.gaze_mode!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def window_seed(seed: int, clip: str, start: int) -> int:
    """A 63-bit seed for the gaze sample of one window, stable across processes and runs."""
    digest = hashlib.blake2b(f"{seed}\0{clip}\0{start}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def window_noise(seed: int, clips: Sequence[str], starts: Sequence[int], grid: tuple[int, int]) -> torch.Tensor:
    """Gumbel noise [B, T', S, S] of a batch of windows, each from its own `window_seed` (CPU)."""
    t_slices, side = grid
    return torch.stack([
        sample_gumbel((t_slices, side, side), generator=torch.Generator().manual_seed(window_seed(seed, c, s)))
        for c, s in zip(clips, starts, strict=True)
    ])  # fmt: skip


def auto_batch_size(frames: int, crop: int, device: torch.device) -> int:
    """Windows per forward pass when the caller does not say.

    On a GPU, 8. On a CPU, about one paper-sized window (24 x 224 x 224) of input per pass:
    larger batches push the activations out of cache and lower the windows/s (measured on the
    paper network, bf16: 3.6 windows/s one at a time, 2.0 in batches of 8), while small models'
    windows are still worth batching.
    """
    if device.type != "cpu":
        return 8
    return int(max(1, min(16, (24 * 224 * 224) // max(1, frames * crop * crop))))


def autocast_context(device: torch.device, precision: str) -> torch.autocast:
    if precision == "auto":  # the probe is made once per process and device (engine/precision.py)
        from gaze_attention.engine.precision import resolve_precision

        precision = resolve_precision(precision, device).precision
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def model_memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last_3d when the model's Conv3d weights are in it (inputs should follow), else contiguous."""
    for p in model.parameters():
        if p.dim() == 5 and p.shape[1] > 1 and p.shape[2:].numel() > 1:
            if not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last_3d):
                return torch.channels_last_3d
            return torch.contiguous_format
    return torch.contiguous_format


def use_cpu_layout(model: nn.Module, device: torch.device | str) -> bool:
    """On a CPU, put an I3D model's weights in channels_last_3d (in place) and return True:
    its inputs then follow (`model_memory_format`).

    `benchmarks/eval_layout.py`, 2026-12-01 (Intel Xeon, 2 threads, fp32): the demo's network
    evaluated 240 test clips 1.60x faster than contiguous, the `paper` network's forward was
    1.60x faster; contiguous max-pooling was 5-10x slower than in
    channels_last_3d at the tiny width. Other devices and backbones are left as they are.
    """
    from gaze_attention.engine.checkpoint import unwrap
    from gaze_attention.models.backbone import TwoStreamI3D

    net = unwrap(model)
    if torch.device(device).type != "cpu" or not isinstance(getattr(net, "backbone", None), TwoStreamI3D):
        return False
    net.to(memory_format=torch.channels_last_3d)
    return True


# ----------------------------------------------------------------------------- windows


@dataclass
class Window:
    """One model input: rgb [3, T, c, c] and flow [2, T, c, c] in [-1, 1].

    start: first frame in the source; frames: real frames in it (the rest repeat the last);
    points: [T, 2] recorded fixations normalised to the crop (nan: none), when the source has them.
    """

    clip: str
    start: int
    rgb: torch.Tensor
    flow: torch.Tensor | None = None
    points: np.ndarray | None = None
    frames: int = 0


class CenterCrop:
    """The test-time geometry of frames of one size: upscale if smaller than the crop, centre crop."""

    def __init__(self, height: int, width: int, crop: int) -> None:
        fitted = fit_short_side(np.zeros((1, height, width, 1), np.uint8), crop).shape
        self.crop = crop
        self.box = CropFlip.center(fitted[1], fitted[2], crop)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [L, h, w, C] -> uint8 [L, c, c, C] (flow: C = 2, never flipped at test time)."""
        return np.ascontiguousarray(self.box.frames(fit_short_side(frames, self.crop)))


def fixation_cells(points: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """Fixation cell (row, col) per slice of one window, as training targets define it: [T', 2] (-1: none)."""
    target, valid = gaze_targets(points, grid)  # [T', S, S], [T']
    idx = target.flatten(1).argmax(-1)
    cells = torch.stack([idx // grid[1], idx % grid[1]], -1)
    cells[~valid] = -1
    return cells


@runtime_checkable
class ClipSource(Protocol):
    """What evaluate, predict, visualize and the demo read windows from.

    A new kind of input (a long recording cut into segments, a clip decoded from another
    container) plugs in by giving these three members; the engine needs nothing else.
    `TensorClip`, `PreparedClip` and `VideoReader` are the sources of this package.
    """

    name: str
    num_frames: int

    def windows(self, starts: Iterable[int], frames: int) -> Iterator[Window]:
        """Model-ready windows (`Window`) starting at `starts`, `frames` long, edge-padded."""
        ...


class TensorClip:
    """Windows of a clip already in memory (rgb [3, L, c, c], flow [2, L, c, c] in [-1, 1])."""

    def __init__(self, rgb: torch.Tensor, flow: torch.Tensor | None = None, name: str = "",
                 points: np.ndarray | None = None) -> None:  # fmt: skip
        self.rgb, self.flow, self.name, self.points = rgb, flow, name, points
        self.num_frames = int(rgb.shape[1])

    def window(self, start: int, frames: int) -> Window:
        idx = torch.clamp(torch.arange(start, start + frames), max=self.num_frames - 1)  # edge-pad
        return Window(
            clip=self.name,
            start=start,
            rgb=self.rgb[:, idx],
            flow=None if self.flow is None else self.flow[:, idx],
            points=None if self.points is None else self.points[idx.numpy()],
            frames=min(frames, self.num_frames - start),
        )

    def windows(self, starts: Iterable[int], frames: int) -> Iterator[Window]:
        for s in starts:
            yield self.window(s, frames)


class PreparedClip:
    """Windows of one clip of a prepared folder (any layout `FrameStore` reads), read one
    window at a time.

    store: the folder's `FrameStore` (or a `PreparedData`, or the folder's path). num_frames /
    flow_frames: frames on disk (None: counted); flow has one frame fewer in dense_flow
    output, so the last flow frame repeats.
    """

    def __init__(self, store: FrameStore | Any, name: str, crop: int, use_flow: bool,
                 num_frames: int | None = None, flow_frames: int | None = None) -> None:  # fmt: skip
        if isinstance(store, str | os.PathLike):
            store = FrameStore(store)
        self.store: FrameStore = getattr(store, "store", store)  # a PreparedData holds one
        # MemoryData (the demo's runs) holds whole clips decoded and scaled: read windows there.
        self._memory = store if getattr(store, "in_memory", False) else None
        self.name, self.crop, self.use_flow = name, crop, use_flow
        if num_frames is None or (use_flow and flow_frames is None):
            counted, counted_flow = self.store.counts(name)
            num_frames = counted if num_frames is None else num_frames
            flow_frames = counted_flow if flow_frames is None else flow_frames
        if num_frames < 1:
            raise FileNotFoundError(f"clip {name}: no frames at {self.store.describe_clip(name)}")
        if use_flow and not flow_frames:
            raise FileNotFoundError(
                f"the model uses optical flow but clip {name} under {self.store.root} has no flow frames"
            )
        self.num_frames = num_frames
        self.flow_frames = flow_frames or num_frames
        self._gaze: np.ndarray | None = None
        self._geometry: CenterCrop | None = None

    def gaze(self) -> np.ndarray:
        """[num_frames, 2] recorded fixations (x, y normalised to the frame; nan: none)."""
        if self._gaze is None:
            self._gaze = self.store.fixations(self.name, self.num_frames)
        return self._gaze

    def read(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Frames `idx` as cropped uint8 rgb [L, c, c, 3], flow [L, c, c, 2] and crop-normalised points [L, 2]."""
        if self._memory is not None:
            rgb, flow = self._memory.fitted_frames(
                self.name, idx, crop=self.crop, use_flow=self.use_flow,
                num_frames=self.num_frames, flow_frames=self.flow_frames,
            )  # fmt: skip
        else:
            rgb, flow = self.store.frames(self.name, idx, use_flow=self.use_flow, flow_frames=self.flow_frames)
        if self._geometry is None:
            self._geometry = CenterCrop(rgb.shape[1], rgb.shape[2], self.crop)
        points = self._geometry.box.points(self.gaze()[idx])
        return self._geometry(rgb), None if flow is None else self._geometry(flow), points

    def window(self, start: int, frames: int) -> Window:
        idx = np.minimum(np.arange(start, start + frames), self.num_frames - 1)  # [T]; edge-padded
        rgb, flow, points = self.read(idx)
        return Window(
            clip=self.name,
            start=start,
            rgb=to_unit_range(rgb),
            flow=None if flow is None else to_unit_range(flow),
            points=points,
            frames=min(frames, self.num_frames - start),
        )

    def windows(self, starts: Iterable[int], frames: int) -> Iterator[Window]:
        for s in starts:
            yield self.window(s, frames)


class VideoReader:
    """A video file that PyAV opens (mp4, mkv, avi, webm, GIF, ...), read as a stream.

    A thin user of `gaze_attention.video.Video`, the decoder `prepare` uses: the same frame
    indices and times (from each frame's pts), upright frames, the count of frames that decode.
    Frames are resized to `size` = (w, h) with PyAV's area filter, as `prepare` does. Only the
    frames of the windows in flight are held; `start` seeks to the keyframe before it. Optical
    flow (8-bit, the `prepare` convention: flow i is frame i -> i+1, the last repeats the one
    before) is computed on the fly between consecutive resized frames. What the decoder notes
    (a truncated file, rotation applied) is told once, as a `VideoWarning`.
    """

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] = PREPARED_SIZE, start: int = 0,
                 max_frames: int | None = None) -> None:  # fmt: skip
        from gaze_attention.video import Video, VideoWarning

        self.path = Path(path)
        if start < 0:
            raise ValueError(f"start frame must be >= 0, got {start}")
        self.video = Video(self.path)
        for note in self.video.notes:
            warnings.warn(note, VideoWarning, stacklevel=2)
        self.size, self.start, self.max_frames = size, start, max_frames
        self.width, self.height = self.video.width, self.video.height
        self.fps = self.video.fps
        self.total_frames = self.video.num_frames
        n = max(0, self.total_frames - start)
        self.num_frames = n if max_frames is None else min(n, max_frames)
        if self.num_frames < 1:
            raise ValueError(f"{self.path}: no frames from frame {start} (it has {self.total_frames})")
        # [num_frames] seconds of each frame read (index from `start`), from the stream's pts.
        self.timestamps = self.video.timestamps[start : start + self.num_frames]

    @property
    def name(self) -> str:
        return self.path.stem

    def end_time(self, index: int) -> float:
        """When frame `index` (from `start`) stops being shown, in seconds."""
        return self.video.end_time(self.start + index)

    def frames(self, extra: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """(index from `start`, RGB uint8 [h, w, 3] at `size`) for the range and `extra` frames after it."""
        stop = self.start + self.num_frames + extra
        for frame in self.video.frames(self.size, self.start, stop):
            yield frame.index - self.start, frame.image

    def model_frames(self, crop: int, flow: str | None) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """(index, cropped rgb uint8 [c, c, 3], cropped flow uint8 [c, c, 2] or None), one frame at a time."""
        w, h = self.size
        geometry = CenterCrop(h, w, crop)
        if flow is None:
            for i, rgb in self.frames():
                yield i, geometry(rgb[None])[0], None
            return
        computer = FlowComputer(flow)
        prev: tuple[int, np.ndarray, np.ndarray] | None = None
        last_uv = encode_flow(np.zeros((h, w, 2), np.float32))  # a single frame gets zero flow
        for i, rgb in self.frames(extra=1):  # one frame past the range gives its last flow
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            if prev is not None:
                last_uv = encode_flow(computer(prev[2], grey))
                yield prev[0], geometry(prev[1][None])[0], geometry(last_uv[None])[0]
            prev = (i, rgb, grey) if i < self.num_frames else None
            if prev is None:
                return
        if prev is not None:
            yield prev[0], geometry(prev[1][None])[0], geometry(last_uv[None])[0]

    def windows(self, starts: Sequence[int], frames: int, crop: int, flow: str | None) -> Iterator[Window]:
        """Windows at `starts` (sorted), assembled as the frames stream by."""
        yield from stream_windows(self.model_frames(crop, flow), starts, frames, self.name)


def stream_windows(
    frames: Iterable[tuple[int, np.ndarray, np.ndarray | None]], starts: Sequence[int], length: int, clip: str = ""
) -> Iterator[Window]:
    """Assemble windows from a stream of (index, rgb, flow) frames, holding only the frames they need.

    A window that runs past the last frame repeats it (edge padding, as the test-time dataset
    does); windows that start after the last frame are dropped.
    """
    pending = deque(sorted(starts))
    buf: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    last = -1

    def assemble(s: int) -> Window:
        picks = []
        for k in range(s, s + length):
            k = min(k, last)
            while k not in buf and k > s:  # a frame the decoder skipped: repeat the one before
                k -= 1
            picks.append(buf[k] if k in buf else buf[min(buf)])
        rgb = np.stack([p[0] for p in picks])  # [T, c, c, 3]
        flow = None if picks[0][1] is None else np.stack([p[1] for p in picks])  # [T, c, c, 2]
        return Window(clip=clip, start=s, rgb=to_unit_range(rgb),
                      flow=None if flow is None else to_unit_range(flow), frames=min(length, last - s + 1))  # fmt: skip

    for i, rgb, flow in frames:
        if not pending:
            break
        last = i
        if i >= pending[0]:
            buf[i] = (rgb, flow)
        while pending and pending[0] + length - 1 <= i:
            yield assemble(pending.popleft())
            first = pending[0] if pending else i + 1
            for k in [k for k in buf if k < first]:
                del buf[k]
    while pending and buf and pending[0] <= last:
        yield assemble(pending.popleft())


# ----------------------------------------------------------------------------- running the model


@dataclass
class WindowOutput:
    """What one window leaves behind, on the CPU: logits [C] (float64), gaze logits [T', S, S]
    (None in gaze mode none), z [T', S, S] the gaze map the head used, attention [T', S, S]."""

    clip: str
    start: int
    frames: int
    logits: torch.Tensor
    gaze_logits: torch.Tensor | None
    z: torch.Tensor
    attention: torch.Tensor
    points: np.ndarray | None = None  # the window's recorded fixations, passed through


def forward_windows(net: nn.Module, rgb: torch.Tensor, flow: torch.Tensor | None, clips: Sequence[str],
                    starts: Sequence[int], options: InferenceOptions) -> Any:  # fmt: skip
    """One forward pass of a batch of windows (rgb [B, 3, T, c, c] on the model's device).

    Not wrapped in no_grad, so Grad-CAM++ can use it; the gaze noise is per window.
    """
    dev = rgb.device
    noise = None
    if options.gaze_mode == "sample":
        noise = window_noise(options.seed, clips, starts, tuple(net.grid)).to(dev)
    with autocast_context(dev, options.precision):
        return net(rgb, flow, gaze_mode=options.gaze_mode, noise=noise)


def _batches(windows: Iterable[Window], size: int) -> Iterator[list[Window]]:
    batch: list[Window] = []
    for w in windows:
        batch.append(w)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def run_windows(model: nn.Module, windows: Iterable[Window], options: InferenceOptions,
                device: torch.device | str | None = None) -> Iterator[WindowOutput]:  # fmt: skip
    """Run windows through the model (in eval mode, restored afterwards), `batch_size` at a time."""
    from gaze_attention.engine.checkpoint import unwrap

    net = unwrap(model)
    cfg = net.config
    dev = torch.device(device) if device is not None else next(net.parameters()).device
    batch_size = options.batch_size or auto_batch_size(cfg.frames, cfg.crop, dev)
    if options.channels_last is None:
        memory = model_memory_format(net)
    else:
        memory = torch.channels_last_3d if options.channels_last else torch.contiguous_format
    was_training = net.training
    net.eval()
    try:
        for batch in _batches(windows, batch_size):
            rgb = _stack([w.rgb for w in batch], dev, memory)
            flow = None
            if cfg.use_flow:
                if batch[0].flow is None:
                    raise ValueError("the model uses optical flow but the input has none")
                flow = _stack([w.flow for w in batch], dev, memory)
            clips, starts = [w.clip for w in batch], [w.start for w in batch]
            out = forward_windows(net, rgb, flow, clips, starts, options)
            logits = out.logits.double().cpu()
            gaze = None if out.gaze_logits is None else out.gaze_logits.float().cpu()
            z, att = out.z.float().cpu(), out.attention.float().cpu()
            for j, w in enumerate(batch):
                yield WindowOutput(w.clip, w.start, w.frames, logits[j], None if gaze is None else gaze[j], z[j],
                                   att[j], w.points)  # fmt: skip
    finally:
        net.train(was_training)


def _stack(tensors: list[torch.Tensor], device: torch.device, memory: torch.memory_format) -> torch.Tensor:
    """The windows as one batch [B, C, T, H, W] on `device` in `memory` format. On a CPU the
    windows are copied straight into a channels_last_3d batch: one pass over the data instead
    of a stack and then a second, transposing copy (1.5x faster for 32 windows of 3x24x112^2)."""
    if device.type == "cpu" and memory == torch.channels_last_3d and all(t.device.type == "cpu" for t in tensors):
        return stack_channels_last(tensors)
    return torch.stack(tensors).to(device).contiguous(memory_format=memory)


def average_logits(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """The clip's logits: the mean over its windows (float64) [C]."""
    return torch.stack([lg.double() for lg in logits]).mean(0)


def softmax(logits: torch.Tensor) -> np.ndarray:
    """Class probabilities of clip logits (float64) [C]."""
    return torch.softmax(logits.double(), -1).numpy()


__all__ = [
    "PREPARED_SIZE",
    "SPARSE_WINDOWS",
    "CenterCrop",
    "InferenceOptions",
    "ClipSource",
    "PreparedClip",
    "TensorClip",
    "VideoReader",
    "Window",
    "WindowOutput",
    "WindowPolicy",
    "auto_batch_size",
    "autocast_context",
    "average_logits",
    "fixation_cells",
    "forward_windows",
    "model_memory_format",
    "use_cpu_layout",
    "run_windows",
    "softmax",
    "stream_windows",
    "window_noise",
    "window_seed",
    "window_starts",
]
