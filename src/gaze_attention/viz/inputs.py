"""Clips to visualise: a raw video (decoded with PyAV) or a prepared clip folder.

Both are brought to what the model saw at evaluation: frames at the prepared size
(340x256 by default), upscaled if smaller than the crop, centre-cropped, scaled to [-1, 1];
8-bit flow (clipped to +-20 px) computed with DIS for raw videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaze_attention.constants import PREPARED_SIZE
from gaze_attention.data.egtea import (
    AnnotationError,
    build_vocabulary,
    find_split_files,
    read_split,
)
from gaze_attention.data.transforms import to_unit_range

__all__ = ["Clip", "load_input", "load_prepared_clip", "load_video"]


@dataclass
class Clip:
    """A clip ready for the model.

    rgb: [3, L, H, W] in [-1, 1]; flow: [2, L, H, W] in [-1, 1] or None;
    gaze_point: [L, 2] recorded fixation (x, y normalised to the crop, nan = none) or None;
    label: 0-based class or None; times: [L] seconds of each frame in its video, from the
    frames' own timestamps (variable frame rate included), or None: frame i at i / fps.
    """

    rgb: torch.Tensor
    flow: torch.Tensor | None = None
    gaze_point: np.ndarray | None = None
    label: int | None = None
    name: str = ""
    fps: float = 24.0
    times: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.rgb.shape[1])

    @classmethod
    def from_sample(cls, sample: dict[str, Any], name: str = "", fps: float = 24.0) -> Clip:
        """A test sample of `ClipDataset` (rgb, flow, gaze_point, label) as a Clip."""
        gp = sample.get("gaze_point")
        label = sample.get("label")
        return cls(
            rgb=sample["rgb"],
            flow=sample.get("flow"),
            gaze_point=None if gp is None else np.asarray(gp, dtype=np.float32),
            label=None if label is None or int(label) < 0 else int(label),
            name=name,
            fps=fps,
        )

    def window(self, start: int, length: int | None) -> Clip:
        """Frames [start, start + length) (all from `start` when length is None)."""
        end = self.num_frames if length is None else min(self.num_frames, start + length)
        if not 0 <= start < end:
            raise ValueError(f"start frame {start} is outside the clip's {self.num_frames} frames")
        return Clip(
            rgb=self.rgb[:, start:end],
            flow=None if self.flow is None else self.flow[:, start:end],
            gaze_point=None if self.gaze_point is None else self.gaze_point[start:end],
            label=self.label,
            name=self.name,
            fps=self.fps,
            times=None if self.times is None else self.times[start:end],
        )


def load_video(
    path: str | Path,
    crop: int,
    use_flow: bool,
    size: tuple[int, int] = PREPARED_SIZE,
    start: int = 0,
    max_frames: int | None = None,
    flow_method: str = "dis",
) -> Clip:
    """Decode a video file into a Clip: resize to `size` (W, H), centre crop `crop`.

    The same reader as `predict` (`engine.inference.VideoReader`, over `gaze_attention.video`):
    PyAV's area resize as `prepare` does, upright, seeking exactly to frame `start`; flow (when
    `use_flow`) between consecutive resized frames, DIS standing in for the slower TV-L1 of
    prepared data. The clip's `times` are the frames' own timestamps.
    """
    from gaze_attention.engine.inference import VideoReader

    reader = VideoReader(path, size, start=start, max_frames=max_frames)
    frames = list(reader.model_frames(crop, flow_method if use_flow else None))
    if not frames:
        raise ValueError(f"{path}: no video frames from frame {start}")
    rgb = np.stack([f[1] for f in frames])  # [L, crop, crop, 3]
    flow = np.stack([f[2] for f in frames]) if use_flow else None  # [L, crop, crop, 2]
    return Clip(
        rgb=to_unit_range(rgb),
        flow=None if flow is None else to_unit_range(flow),
        name=reader.name,
        fps=reader.fps,
        times=np.asarray(reader.timestamps[: len(frames)], np.float64),
    )


def _label_of(root: Path, clip: str) -> tuple[int | None, list[str] | None]:
    """The clip's 0-based label and the class names, when the folder has split lists."""
    ann = root / "annotations" if (root / "annotations").is_dir() else root
    try:
        entries = [e for files in find_split_files(ann).values()
                   for p in files.values() for e in read_split(p)]
        if not entries:
            return None, None
        classes = build_vocabulary(ann, entries).actions
    except (AnnotationError, OSError):
        return None, None
    label = next((e.action for e in entries if e.name == clip), None)
    return label, classes


def load_prepared_clip(
    folder: str | Path,
    crop: int,
    use_flow: bool,
    start: int = 0,
    max_frames: int | None = None,
    fps: float = 24.0,
) -> tuple[Clip, list[str] | None]:
    """Read `PREPARED/images_rgb/<clip>` (+ flow, + `PREPARED/gaze/<clip>.npy`) into a Clip.

    Returns the clip and the data set's class names (None without split lists). The label
    comes from the split lists when the clip is in one. Only fixations are gaze points,
    as in training.
    """
    from gaze_attention.engine.inference import PreparedClip

    folder = Path(folder)
    clip = folder.name
    root = folder.parent.parent
    source = PreparedClip(root, clip, crop, use_flow)
    end = source.num_frames if max_frames is None else min(source.num_frames, start + max_frames)
    if not 0 <= start < end:
        raise ValueError(f"{folder}: start frame {start} is outside its {source.num_frames} frames")
    rgb, flow, points = source.read(np.arange(start, end))  # the same reading as `evaluate`
    gaze_file = root / "gaze" / f"{clip}.npy"
    label, classes = _label_of(root, clip)
    out = Clip(
        rgb=to_unit_range(rgb),
        flow=None if flow is None else to_unit_range(flow),
        gaze_point=points if gaze_file.is_file() else None,
        label=label,
        name=clip,
        fps=fps,
    )
    return out, classes


def load_input(
    path: str | Path,
    crop: int,
    use_flow: bool,
    start: int = 0,
    max_frames: int | None = None,
    size: tuple[int, int] = PREPARED_SIZE,
) -> tuple[Clip, list[str] | None]:
    """A video file or a prepared clip folder (`PREPARED/images_rgb/<clip>`) as a Clip."""
    path = Path(path)
    if path.is_dir():
        return load_prepared_clip(path, crop, use_flow, start=start, max_frames=max_frames)
    if path.is_file():
        return load_video(path, crop, use_flow, size=size, start=start,
                          max_frames=max_frames), None
    raise FileNotFoundError(f"{path}: no such video file or clip folder")
