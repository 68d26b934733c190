"""What a `prepare` run is asked to do (`PrepareOptions`), one clip's job, and the run's outcome."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaze_attention.data.flow import FLOW_METHODS
from gaze_attention.data.shards import Shard
from gaze_attention.errors import GazeAttentionError

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SETTINGS_FILE = "prepare.json"


class PrepareError(GazeAttentionError, RuntimeError):
    """The run cannot start (bad input folder, conflicting earlier output)."""


class ClipError(RuntimeError):
    """One clip cannot be prepared; the others go on."""


@dataclass(frozen=True)
class PrepareOptions:
    """Every setting of a run (see `prepare` for their meaning); checked on construction."""

    splits: tuple[int, ...] | None = None
    flow: str = "tvl1"
    size: tuple[int, int] = (340, 256)
    workers: int = 1
    min_frames: int = 24
    jpeg_quality: int = 95
    annotations: str | Path | None = None
    allow_missing_gaze: bool = False
    progress: bool = True
    shard: Shard | str | None = None  # "I/N" is parsed into a Shard
    flow_device: str = "auto"
    estimate: bool = False
    # The segments layout (long videos; see `prepare.segments`): where its files are, and how
    # its gaze is put on the video's frames.
    segments: str | Path | None = None  # the segments file (default RAW/segments.csv)
    videos: str | None = None  # folder of the long videos, or a path pattern with {video}
    gaze: str | None = None  # folder of the gaze files, or a path pattern with {video}
    calibration: str | None = None  # Aria calibration file, or a path pattern with {video}
    segments_in_frames: bool = False
    gaze_offset: float | str = 0.0  # seconds: gaze time = video time + offset; or a CSV of video,offset
    min_confidence: float | None = None  # None: the source's default (Ego4D 0.6, else 0)
    gaze_clock: str = "canonical"  # Ego4D's timestamp column
    aria_rotate: str = "none"  # "cw90": project Aria gaze into the upright image (Ego-Exo4D mp4s)
    ivt_velocity: float = 30.0  # deg/s, sources with gaze angles
    ivt_velocity_norm: float = 0.4  # normalised image units/s, the others
    ivt_min_fixation: float = 0.100  # seconds

    def __post_init__(self) -> None:
        if self.flow not in FLOW_METHODS:
            raise PrepareError(f"flow must be one of {', '.join(FLOW_METHODS)}; got {self.flow!r}")
        if isinstance(self.shard, str):
            try:
                object.__setattr__(self, "shard", Shard.parse(self.shard))
            except ValueError as e:
                raise PrepareError(str(e)) from None
        if self.splits is not None:
            object.__setattr__(self, "splits", tuple(self.splits))
        object.__setattr__(self, "size", tuple(self.size))
        # 0 workers = the main process does the work, as 1 does (the CLI's "0 = in the main process").
        object.__setattr__(self, "workers", max(1, int(self.workers)))
        for name in ("ivt_velocity", "ivt_velocity_norm", "ivt_min_fixation"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise PrepareError(f"{name.replace('_', '-')} must be a number >= 0; got {v!r}")
        if not isinstance(self.gaze_offset, str) and not math.isfinite(self.gaze_offset):
            raise PrepareError(f"gaze-offset must be a finite number of seconds; got {self.gaze_offset!r}")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise PrepareError(f"min-confidence must be from 0 to 1; got {self.min_confidence!r}")
        if self.aria_rotate not in ("none", "cw90"):
            raise PrepareError(f"aria-rotate must be none or cw90; got {self.aria_rotate!r}")
        if self.gaze_clock not in ("canonical", "component"):
            raise PrepareError(f"gaze-clock must be canonical or component; got {self.gaze_clock!r}")

    @property
    def split_list(self) -> list[int] | None:
        return None if self.splits is None else list(self.splits)

    @property
    def settings(self) -> dict:
        """What every clip of one output folder must share (the settings file)."""
        return {"flow": self.flow, "size": list(self.size), "min_frames": self.min_frames}

    @property
    def gaze_settings(self) -> dict:
        """What also decides the clips of the segments layout: how its gaze meets its frames."""
        return {
            "segments_in_frames": self.segments_in_frames, "gaze_offset": self.gaze_offset,
            "min_confidence": self.min_confidence, "gaze_clock": self.gaze_clock,
            "aria_rotate": self.aria_rotate, "ivt_velocity": self.ivt_velocity,
            "ivt_velocity_norm": self.ivt_velocity_norm, "ivt_min_fixation": self.ivt_min_fixation,
        }  # fmt: skip


@dataclass
class ClipJob:
    """Everything a worker needs to prepare one clip (picklable)."""

    name: str
    video: str
    label: int
    verb: int
    noun: int
    splits: list[str]
    session: str | None = None
    start_frame: int = 0  # session frame of the clip's first frame (0 for own recordings)
    session_video: str | None = None
    gaze_source: str = "missing"  # "begaze" | "csv" | "missing"
    gaze_rows: np.ndarray | None = None  # [N, 3] gaze of session frames gaze_offset..
    gaze_offset: int = 0
    gaze_error: str | None = None  # why the gaze could not be read (the clip fails)
    gaze_missing: bool = False  # no gaze file was found (with --allow-missing-gaze: not an error)
    # A segment of a long video: the video frame each output frame comes from (already
    # extended to min_frames), and the extension's manifest note.
    source_frames: list[int] | None = None
    extend_note: dict | None = None
    segment: dict | None = None  # video, start, end, line of the segments file (for the manifest)
    problem: str | None = None  # why this segment cannot be prepared (the job fails with it)


@dataclass
class PrepareResult:
    """Outcome of a `prepare` run.

    stopped: why the run ended before every clip was tried (a file it could not write, e.g.
    the disk is full), naming the file; None when it ran to the end. stretched: clips whose
    aspect ratio the resize to `size` changed (one summary warning names the first).
    """

    out_dir: Path
    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (clip, reason)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str | None = None
    stretched: list[tuple[str, str]] = field(default_factory=list)  # (clip, "WxH" of its video)
    info: list[str] = field(default_factory=list)  # per-video lines (the fixation share of each gaze file)

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None

    def summary(self) -> str:
        lines = [
            f"prepared {len(self.prepared)} clip(s), skipped {len(self.skipped)} already done, "
            f"failed {len(self.failed)} in {self.seconds:.1f} s -> {self.out_dir}"
        ]
        lines += self.info
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"FAILED {clip}: {why}" for clip, why in self.failed]
        if self.stopped is not None:
            lines.append(f"STOPPED: {self.stopped}; a rerun skips the clips recorded so far")
        return "\n".join(lines)
