"""Gaze samples of any source, and their mapping onto the frames of a video by time.

Coordinates are normalised to [0, 1] of the image, origin top-left, x to the right, y down;
a pixel (u, v) whose centre is at integer coordinates maps to ((u + 0.5) / W, (v + 0.5) / H).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaze_attention.data.begaze import BLINK, FIXATION, GazeFormatError, SessionGaze, aggregate_samples

UNLABELLED = -1  # `GazeSamples.event` of a sample whose file gives no event type


class GazeSourceError(GazeFormatError):
    """A gaze file of a modern source that cannot be used; the message names the file and line."""


@dataclass
class GazeSamples:
    """Gaze samples of one recording, in file order.

    Either `t` (seconds on the source's clock, see `clock`) or `frame` (frame index of the
    video the file was written for) locates each sample. `x`, `y` are normalised image
    coordinates (nan: no point, e.g. a blink). `event` holds NONE/FIXATION/SACCADE/BLINK or
    UNLABELLED (-1); `yaw`, `pitch` are the gaze angles in radians where the source has them
    (Aria's central pupil frame), for the velocity of `classify_fixations` and, with
    `depth_m`, for the projection into the image.
    """

    x: np.ndarray  # [N] float64
    y: np.ndarray  # [N] float64
    t: np.ndarray | None = None  # [N] float64 seconds, non-decreasing
    frame: np.ndarray | None = None  # [N] int64
    confidence: np.ndarray | None = None  # [N] float64 in [0, 1]
    event: np.ndarray | None = None  # [N] int8
    yaw: np.ndarray | None = None  # [N] float64 radians
    pitch: np.ndarray | None = None  # [N] float64 radians
    depth_m: np.ndarray | None = None  # [N] float64 metres along the gaze ray (nan: unknown)
    source: str = ""
    path: Path | None = None
    clock: str = ""  # what `t` is measured from, for messages and docs
    report: str = ""  # rows the reader skipped (BeGaze and own CSVs), '' when none

    def __post_init__(self) -> None:
        n = len(self.x)
        if self.t is None and self.frame is None:
            raise ValueError("GazeSamples needs timestamps t or frame indices")
        for name in ("y", "t", "frame", "confidence", "event", "yaw", "pitch", "depth_m"):
            a = getattr(self, name)
            if a is not None and len(a) != n:
                raise ValueError(f"GazeSamples.{name} has {len(a)} entries, x has {n}")
        if self.event is not None:
            bad = (self.event < UNLABELLED) | (self.event > BLINK)
            if bad.any():
                raise ValueError(f"event codes must be -1..3, got {int(self.event[bad][0])}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labelled(self) -> np.ndarray:
        """[N] bool: the file gave this sample's event type."""
        if self.event is None:
            return np.zeros(len(self), dtype=bool)
        return self.event != UNLABELLED


def frame_index(
    t: np.ndarray, frame_times_s: np.ndarray, last_frame_duration_s: float | None = None
) -> np.ndarray:
    """[N] index of the frame whose display interval [pts_i, pts_{i+1}) holds each time; -1 outside.

    `frame_times_s` [F] is the presentation time of every decoded frame (increasing), so
    variable-frame-rate video maps exactly. The last frame lasts `last_frame_duration_s`
    (default: the median frame step).
    """
    ft = np.asarray(frame_times_s, dtype=np.float64)
    if ft.ndim != 1 or len(ft) == 0:
        raise ValueError("frame_times_s must be a non-empty 1-D array")
    if np.any(np.diff(ft) <= 0):
        raise ValueError("frame_times_s must be strictly increasing")
    if last_frame_duration_s is None:
        if len(ft) < 2:
            raise ValueError("one frame: give last_frame_duration_s")
        last_frame_duration_s = float(np.median(np.diff(ft)))
    idx = np.searchsorted(ft, t, side="right") - 1
    inside = (idx >= 0) & (t < ft[-1] + last_frame_duration_s)
    return np.where(inside, idx, -1)


def to_session_gaze(
    samples: GazeSamples,
    frame_times_s: np.ndarray | None = None,
    *,
    offset_s: float = 0.0,
    min_confidence: float = 0.0,
    last_frame_duration_s: float | None = None,
    num_frames: int | None = None,
) -> SessionGaze:
    """Samples -> per-frame gaze of the video (a `SessionGaze`, as `read_begaze` returns).

    Time-stamped samples go to the frame whose display interval holds `t + offset_s` (the
    offset moves the gaze clock onto the video's pts clock); frame-indexed samples keep their
    frame. Samples with confidence below `min_confidence`, without a point, or outside the
    video are dropped; frames left without a sample have no gaze (nan, NONE). Several samples
    of one frame are merged by `begaze.aggregate_samples`, exactly as EGTEA's are; samples
    with no event type count as fixations (as an own CSV without a type column does); run
    `classify_fixations` first to label them.
    """
    events = np.full(len(samples), FIXATION, dtype=np.int64)
    if samples.event is not None:
        events = np.where(samples.event == UNLABELLED, FIXATION, samples.event).astype(np.int64)
    # A blink carries no point (aggregate_samples ignores its coordinates) but still counts.
    keep = (np.isfinite(samples.x) & np.isfinite(samples.y)) | (events == BLINK)
    if samples.confidence is not None:
        conf = np.nan_to_num(samples.confidence, nan=1.0)
        keep &= conf >= min_confidence
    if samples.frame is not None and samples.t is None:
        idx = np.asarray(samples.frame, dtype=np.int64)
        if num_frames is None:
            num_frames = len(frame_times_s) if frame_times_s is not None else int(idx.max(initial=-1)) + 1
        idx = np.where((idx >= 0) & (idx < num_frames), idx, -1)
    else:
        if frame_times_s is None:
            raise ValueError("time-stamped gaze needs the video's frame times")
        idx = frame_index(np.asarray(samples.t) + offset_s, frame_times_s, last_frame_duration_s)
        num_frames = len(frame_times_s)
    keep &= idx >= 0
    points, ev = aggregate_samples(idx[keep], samples.x[keep], samples.y[keep], events[keep], num_frames)
    path = samples.path if samples.path is not None else Path(samples.source or "gaze")
    return SessionGaze(path=path, points=points, events=ev, num_samples=int(keep.sum()))


def to_frames(
    samples: GazeSamples,
    frame_times_s: np.ndarray | None = None,
    *,
    offset_s: float = 0.0,
    min_confidence: float = 0.0,
    last_frame_duration_s: float | None = None,
    num_frames: int | None = None,
) -> np.ndarray:
    """[F, 3] float32 x, y, event code per video frame: the layout of `gaze/<clip>.npy`.

    See `to_session_gaze` for the rules; nan, nan, 0 (NONE) where a frame has no gaze.
    """
    out = to_session_gaze(
        samples, frame_times_s, offset_s=offset_s, min_confidence=min_confidence,
        last_frame_duration_s=last_frame_duration_s, num_frames=num_frames,
    )  # fmt: skip
    return out.as_array()
