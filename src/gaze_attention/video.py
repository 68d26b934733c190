"""The one video decoder: prepare, predict and visualize read video files through it.

One set of rules for every command:

- time: frame i's time is (pts_i - start_time) * time_base in seconds, from the stream's own
  timestamps, so a clip whose stream starts late (start_time > 0) and variable-frame-rate video
  are timed and indexed the same way everywhere; frame i is the i-th frame in presentation order;
- seeking to frame i goes back to the keyframe before its pts and decodes forward to it;
- the frame count is what decodes: when the container claims more frames than its packets hold
  (a truncated file) the frames are counted by decoding, and a note says so;
- rotation metadata (the display matrix, PyAV `frame.rotation`) is applied, so frames come out
  upright, and a note says so;
- a file without a video stream is refused with one line (`VideoError`).

Leaf module: numpy, PyAV and nothing of the package, so prepare workers stay light.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from gaze_attention.errors import GazeAttentionError

DEFAULT_FPS = 24.0  # when a stream states no usable rate (EGTEA's rate)


class VideoError(GazeAttentionError, ValueError):
    """A file that is not a readable video (no video stream, nothing decodes); one line."""


class VideoWarning(UserWarning):
    """Something about a video the user should know (truncated, rotated)."""


class Frame(NamedTuple):
    """One decoded frame: its index in the video, its time in seconds, the upright image."""

    index: int
    time: float
    image: np.ndarray  # uint8 [h, w, 3]


def frame_rate(stream: av.video.stream.VideoStream) -> float:
    """The stream's nominal rate: average, else guessed, else base, else 24 fps."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    return fps if fps > 0 else DEFAULT_FPS


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: PyAV cannot read it ({exc})") from None


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(f"{path}: no video stream (streams: {', '.join(kinds)}); expected a video file")
    return container.streams.video[0]


def _quarter_turns(rotation: float) -> int:
    """Counter-clockwise quarter turns that make a frame with this display rotation upright."""
    return int(round(rotation / 90.0)) % 4


class Video:
    """A video file opened for decoding: geometry, rate, per-frame timestamps, notes.

    Opening demuxes the whole file once to learn every frame's pts (no decoding: 0.16 s for
    3000 frames on the 2-core development machine, so seconds for an hour of video) and
    decodes the first frame to learn the rotation.

    width, height: upright size in pixels; rotation: degrees counter-clockwise applied to the
    stored frames (0, 90, 180 or 270); fps: nominal rate; num_frames: frames that decode;
    claimed_frames: what the container says (0: nothing); timestamps: [num_frames] seconds
    from the stream's start; start_time: that start in the container's clock, in seconds
    (frame times are counted from it, so the first frame is at 0); notes: one line per
    thing worth telling (truncated, rotated), for the caller to print or collect.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        self.notes: list[str] = []
        with _open(self.path) as container:
            stream = _video_stream(container, self.path)
            self.fps = frame_rate(stream)
            self.claimed_frames = int(stream.frames or 0)
            self._time_base = stream.time_base
            start = stream.start_time
            pts = self._demux_pts(container, stream)
        with _open(self.path) as container:
            first = self._first_frame(container, _video_stream(container, self.path))
            rotation, w, h = first.rotation or 0, first.width, first.height
        self._start_pts = start if start is not None else (pts[0] if pts else 0)
        self.start_time = float(self._start_pts * self._time_base) if self._time_base is not None else 0.0
        self.rotation = 90 * _quarter_turns(rotation)
        if rotation % 90:
            self.notes.append(f"{self.path}: display rotation {rotation:g} degrees rounded to {self.rotation}")
        elif self.rotation:
            upright = f", {h}x{w} instead of the stored {w}x{h}" if self.rotation % 180 else ""
            self.notes.append(
                f"{self.path}: its rotation metadata ({rotation:g} degrees) is applied: frames are read upright{upright}"
            )
        self.width, self.height = (h, w) if self.rotation % 180 else (w, h)
        self._pts = pts  # presentation order; None: the container gives no timestamps
        if pts is not None and self.claimed_frames > len(pts):
            self._pts = self._decodable_pts()
        n = len(self._pts) if self._pts is not None else self._count_decodable()
        if self.claimed_frames > n:
            self.notes.append(
                f"{self.path}: the container claims {self.claimed_frames} frames but only {n} decode "
                "(a truncated file?); using those"
            )
        self.num_frames = n
        if self._pts is not None:
            self.timestamps = (np.asarray(self._pts, np.float64) - self._start_pts) * float(self._time_base)
            self._index = {p: i for i, p in enumerate(self._pts)}
        else:
            self.timestamps = np.arange(n, dtype=np.float64) / self.fps
            self._index = {}

    # ------------------------------------------------------------------------- opening

    def _demux_pts(self, container, stream) -> list[int] | None:
        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if not packet.size or packet.is_discard:
                    continue
                if packet.pts is None:
                    return None
                pts.append(int(packet.pts))
        except av.error.FFmpegError:  # a cut file: what was demuxed is what there is
            pass
        if self._time_base is None:
            return None
        return sorted(set(pts))

    def _first_frame(self, container, stream) -> av.VideoFrame:
        try:
            for frame in container.decode(stream):
                return frame
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: no frame decodes ({exc})") from None
        raise VideoError(f"{self.path}: no frames (an empty video stream)")

    def _decoded(self) -> Iterator[av.VideoFrame]:
        """Every frame from the start, stopping quietly at the first undecodable packet."""
        with _open(self.path) as container:
            stream = container.streams.video[0]
            try:
                yield from container.decode(stream)
            except av.error.FFmpegError:
                return

    def _decodable_pts(self) -> list[int] | None:
        pts = [f.pts for f in self._decoded()]
        return None if any(p is None for p in pts) else sorted(set(pts))

    def _count_decodable(self) -> int:
        return sum(1 for _ in self._decoded())

    # ------------------------------------------------------------------------- reading

    def index_at(self, seconds: float) -> int:
        """The frame shown at `seconds` (from the stream's start): the last one starting at or before it."""
        return int(self.indices_at(np.asarray([seconds]))[0])

    def indices_at(self, seconds: np.ndarray) -> np.ndarray:
        """`index_at` for many times at once, e.g. time-stamped gaze samples: int64 [N] from [N] seconds.

        Times before the first frame map to frame 0; after the last, to the last frame (check
        `end_time(num_frames - 1)` to drop samples past the video).
        """
        idx = np.searchsorted(self.timestamps, np.asarray(seconds, np.float64) + 1e-9, side="right") - 1
        return np.clip(idx, 0, max(self.num_frames - 1, 0)).astype(np.int64)

    def end_time(self, index: int) -> float:
        """When frame `index` stops being shown: the next frame's time, or the last plus one nominal frame."""
        if index + 1 < self.num_frames:
            return float(self.timestamps[index + 1])
        return float(self.timestamps[-1]) + 1.0 / self.fps if self.num_frames else 0.0

    def frames(
        self,
        size: tuple[int, int] | None = None,
        start: int = 0,
        stop: int | None = None,
        pixel_format: str = "rgb24",
    ) -> Iterator[Frame]:
        """Frames [start, stop) in order, upright, resized to size = (w, h) with an area filter.

        start > 0 seeks to the keyframe before frame `start` and decodes forward to its pts, so
        only the needed part of a long video is read. The last frames of a file that stops
        decoding early are simply not yielded.
        """
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        if start >= stop:
            return
        turns = _quarter_turns(self.rotation)
        kwargs = {}
        if size is not None:  # resize the stored frame so that it is `size` once upright
            w, h = size
            kwargs = {"width": h if turns % 2 else w, "height": w if turns % 2 else h, "interpolation": "AREA"}
        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            seek = start > 0 and self._pts is not None
            if seek:
                container.seek(self._pts[start], stream=stream, backward=True)
            index = -1
            try:
                for frame in container.decode(stream):
                    if frame.pts is not None and self._pts is not None:
                        found = self._index.get(frame.pts)
                        # A pts the demuxer did not list sits where its time puts it.
                        index = int(np.searchsorted(self._pts, frame.pts)) if found is None else found
                    else:
                        index += 1
                    if index < start:
                        continue
                    if index >= stop:
                        break
                    image = frame.to_ndarray(format=pixel_format, **kwargs)
                    if turns:
                        image = np.ascontiguousarray(np.rot90(image, turns))
                    yield Frame(index, float(self.timestamps[index]), image)
            except av.error.FFmpegError:  # a damaged packet ends the video here
                return

    def read(
        self,
        size: tuple[int, int] | None = None,
        start: int = 0,
        stop: int | None = None,
        pixel_format: str = "rgb24",
    ) -> list[np.ndarray]:
        """The images of `frames(...)` as a list."""
        return [f.image for f in self.frames(size, start, stop, pixel_format)]


def open_video(path: str | os.PathLike) -> Video:
    """`Video(path)`: FileNotFoundError when missing, VideoError when not a readable video."""
    return Video(path)


def aspect_changes(width: int, height: int, size: tuple[int, int], tolerance: float = 0.01) -> bool:
    """Whether resizing width x height to size = (w, h) stretches the picture by more than `tolerance`."""
    if width <= 0 or height <= 0:
        return False
    return abs((size[0] / size[1]) / (width / height) - 1.0) > tolerance


__all__ = [
    "DEFAULT_FPS",
    "Frame",
    "Video",
    "VideoError",
    "VideoWarning",
    "aspect_changes",
    "frame_rate",
    "open_video",
]
