"""Clips to visualise: a raw video (decoded with PyAV) or a prepared clip folder.

Both are brought to what the model saw at evaluation: frames at the prepared size
(340x256 by default), upscaled if smaller than the crop, centre-cropped, scaled to [-1, 1];
8-bit flow (clipped to +-20 px) computed with DIS for raw videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from gaze_attention.data.begaze import FIXATION
from gaze_attention.data.egtea import (
    AnnotationError,
    build_vocabulary,
    find_split_files,
    read_split,
)
from gaze_attention.data.transforms import CropFlip, FlowComputer, fit_short_side, to_unit_range

__all__ = ["Clip", "load_input", "load_prepared_clip", "load_video"]

PREPARED_SIZE = (340, 256)  # (width, height) that `gaze-attention prepare` writes by default


@dataclass
class Clip:
    """A clip ready for the model.

    rgb: [3, L, H, W] in [-1, 1]; flow: [2, L, H, W] in [-1, 1] or None;
    gaze_point: [L, 2] recorded fixation (x, y normalised to the crop, nan = none) or None;
    label: 0-based class or None.
    """

    rgb: torch.Tensor
    flow: torch.Tensor | None = None
    gaze_point: np.ndarray | None = None
    label: int | None = None
    name: str = ""
    fps: float = 24.0

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
        )


def _decode(path: Path, size: tuple[int, int], start: int, max_frames: int | None
            ) -> tuple[np.ndarray, float]:
    """Decode frames [start, start + max_frames) resized to size=(W, H) -> uint8 [L, H, W, 3]."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 24.0
        for i, frame in enumerate(container.decode(stream)):
            if i < start:
                continue
            if max_frames is not None and len(frames) >= max_frames:
                break
            img = frame.to_ndarray(format="rgb24")
            frames.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    if not frames:
        raise ValueError(f"{path}: no video frames from frame {start}")
    return np.stack(frames), fps


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

    Flow (when `use_flow`) is computed between consecutive resized frames, before cropping,
    as preparation does; DIS stands in for the slower TV-L1 of prepared data.
    """
    path = Path(path)
    frames, fps = _decode(path, size, start, max_frames)  # [L, H, W, 3]
    flow = None
    if use_flow:
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        flow = fit_short_side(FlowComputer(flow_method).video(grey), crop)  # [L, H, W, 2]
    frames = fit_short_side(frames, crop)
    cf = CropFlip.center(frames.shape[1], frames.shape[2], crop)
    return Clip(
        rgb=to_unit_range(cf.frames(frames)),
        flow=None if flow is None else to_unit_range(cf.flow(flow)),
        name=path.stem,
        fps=fps,
    )


def _read(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return img


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
    folder = Path(folder)
    clip = folder.name
    root = folder.parent.parent
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".jpg")
    end = len(names) if max_frames is None else min(len(names), start + max_frames)
    if not 0 <= start < end:
        raise ValueError(f"{folder}: start frame {start} is outside its {len(names)} frames")
    idx = np.arange(start, end)
    rgb = np.stack([cv2.cvtColor(_read(folder / names[i], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                    for i in idx])  # [L, H, W, 3]
    flow = None
    if use_flow:
        fdir = root / "images_flow" / clip
        if not fdir.is_dir():
            raise FileNotFoundError(f"the model uses flow but {fdir} does not exist")
        counts = [len(list((fdir / c).glob("*.jpg"))) for c in ("u", "v")]
        last = min(counts) - 1  # dense_flow writes one flow frame fewer than RGB frames
        fidx = np.minimum(idx, last)
        flow = np.stack([
            np.stack([_read(fdir / c / names[i], cv2.IMREAD_GRAYSCALE) for c in ("u", "v")], -1)
            for i in fidx
        ])  # [L, H, W, 2]
        flow = fit_short_side(flow, crop)
    rgb = fit_short_side(rgb, crop)
    cf = CropFlip.center(rgb.shape[1], rgb.shape[2], crop)

    gaze_point = None
    gaze_file = root / "gaze" / f"{clip}.npy"
    if gaze_file.is_file():
        g = np.load(gaze_file).astype(np.float32)  # [N, 3] x, y (normalised), event
        pts = np.full((len(idx), 2), np.nan, dtype=np.float32)
        ok = idx < len(g)
        rows = g[idx[ok]]
        fix = rows[:, 2] == FIXATION
        sel = np.flatnonzero(ok)[fix]
        pts[sel] = rows[fix, :2]
        gaze_point = cf.points(pts)
    label, classes = _label_of(root, clip)
    out = Clip(
        rgb=to_unit_range(cf.frames(rgb)),
        flow=None if flow is None else to_unit_range(cf.flow(flow)),
        gaze_point=gaze_point,
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
