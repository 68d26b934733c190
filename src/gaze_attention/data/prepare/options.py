"""What a `prepare` run is asked to do (`PrepareOptions`), one clip's job, and the run's outcome."""

from __future__ import annotations

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

    @property
    def split_list(self) -> list[int] | None:
        return None if self.splits is None else list(self.splits)

    @property
    def settings(self) -> dict:
        """What every clip of one output folder must share (the settings file)."""
        return {"flow": self.flow, "size": list(self.size), "min_frames": self.min_frames}


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

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None

    def summary(self) -> str:
        lines = [
            f"prepared {len(self.prepared)} clip(s), skipped {len(self.skipped)} already done, "
            f"failed {len(self.failed)} in {self.seconds:.1f} s -> {self.out_dir}"
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"FAILED {clip}: {why}" for clip, why in self.failed]
        if self.stopped is not None:
            lines.append(f"STOPPED: {self.stopped}; a rerun skips the clips recorded so far")
        return "\n".join(lines)
