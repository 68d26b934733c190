"""Gaze from today's recordings (Ego4D, Project Aria MPS, Ego-Exo4D) and long-video segments.

Readers return `GazeSamples` (time-stamped or frame-indexed samples); `to_frames` turns them
into the per-frame `[F, 3]` (x, y, event) array that `prepare` writes as `gaze/<clip>.npy`.
See docs/sources.md.
"""

from gaze_attention.data.sources.detect import read_gaze
from gaze_attention.data.sources.fixations import IVTConfig, classify_fixations
from gaze_attention.data.sources.samples import GazeSamples, GazeSourceError, to_frames, to_session_gaze
from gaze_attention.data.sources.segments import (
    Segment,
    SegmentError,
    check_segments,
    extend_range,
    read_segments,
    segment_frame_range,
)

__all__ = [
    "GazeSamples",
    "GazeSourceError",
    "IVTConfig",
    "Segment",
    "SegmentError",
    "check_segments",
    "classify_fixations",
    "extend_range",
    "read_gaze",
    "read_segments",
    "segment_frame_range",
    "to_frames",
    "to_session_gaze",
]
