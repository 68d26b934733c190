"""Where the frames, flow and gaze of prepared clips are: the one reader of prepared folders.

Two layouts are read: ours and the authors' (`images_rgb/<clip>/0001.jpg`,
`images_flow/<clip>/{u,v}/0001.jpg`, `gaze/<clip>.npy`) and the dense_flow / mmaction2
rawframes layout (`<clip>/img_00001.jpg`, `<clip>/flow_x_00001.jpg`, `<clip>/flow_y_00001.jpg`).
Training (`ClipDataset`), evaluation and prediction on prepared clips (`PreparedClip`) and
visualisation all read through a `FrameStore`, so a layout is known in one place. Torch-free.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gaze_attention.data.begaze import FIXATION
from gaze_attention.data.egtea import read_manifests

# dense_flow / mmaction2 rawframes: one folder per clip, 1-based 5-digit frame numbers.
RAWFRAMES_RGB = "img_{:05d}.jpg"
RAWFRAMES_FLOW = {"u": "flow_x_{:05d}.jpg", "v": "flow_y_{:05d}.jpg"}
SETTINGS_FILE = "prepare.json"  # written by `prepare` beside its output


def _count_jpgs(folder: Path, prefix: str = "") -> int:
    try:
        with os.scandir(folder) as it:
            return sum(1 for e in it if e.name.endswith(".jpg") and e.name.startswith(prefix))
    except (FileNotFoundError, NotADirectoryError):
        return 0


def _find_rawframes_clip(root: Path, look: int = 200) -> Path | None:
    """A clip folder of a rawframes layout among the first `look` entries of root, or None."""
    try:
        with os.scandir(root) as it:
            for k, e in enumerate(it):
                if k >= look:
                    break
                if e.is_dir() and (Path(e.path) / RAWFRAMES_RGB.format(1)).is_file():
                    return Path(e.path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None


def read_rgb(path: Path) -> np.ndarray:
    """[H, W, 3] RGB view of the BGR image (no cv2.cvtColor, which may use OpenCV's thread pool)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return img[..., ::-1]


def read_grey(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return img


@dataclass(frozen=True)
class FrameGeometry:
    """What a model's input frames were before the crop: stored in every checkpoint so predict
    and visualize resize a new video as training saw its data, on any machine.

    frame_size: (width, height) of the prepared frames; flow: the method that made the flow
    frames ("unknown" for folders `prepare` did not write, "none" without flow); flow_bound:
    the +-px range mapped to 0..255 (the dense_flow convention).
    """

    frame_size: tuple[int, int]
    flow: str = "unknown"
    flow_bound: float = 20.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["frame_size"] = list(self.frame_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrameGeometry:
        w, h = d["frame_size"]
        return cls(frame_size=(int(w), int(h)), flow=str(d.get("flow", "unknown")),
                   flow_bound=float(d.get("flow_bound", 20.0)))  # fmt: skip


class FrameStore:
    """The clips of one prepared folder: frame counts, frame paths, decoded frames and gaze.

    cache=True keeps every decoded JPEG in memory (uint8): for many short runs over one small
    set, as the demo does; about 110 kB per 170x128 frame with its flow.
    """

    def __init__(self, root: str | os.PathLike, cache: bool = False) -> None:
        self.root = Path(root)
        self.cache = cache
        self._images: dict[tuple[Path, bool], np.ndarray] = {}
        self._counts: dict[str, tuple[int, int | None]] = {}
        self.layout = "prepared"  # images_rgb/, images_flow/ (ours and the reference's)
        rawframes_clip = None
        if not (self.root / "images_rgb").is_dir():
            rawframes_clip = _find_rawframes_clip(self.root)
            if rawframes_clip is None:
                raise FileNotFoundError(
                    f"{self.root}: no images_rgb/ folder (run `prepare` first) and no dense_flow / "
                    "mmaction2 clip folders (<clip>/img_00001.jpg)"
                )
            self.layout = "rawframes"
        self.manifest = read_manifests(self.root)
        if rawframes_clip is not None:
            self.has_flow = (rawframes_clip / RAWFRAMES_FLOW["u"].format(1)).is_file()
        else:
            self.has_flow = (self.root / "images_flow").is_dir()

    @classmethod
    def for_clip_folder(cls, folder: str | os.PathLike) -> tuple[FrameStore, str]:
        """The store and clip name of one clip folder: PREPARED/images_rgb/<clip> or RAWFRAMES/<clip>."""
        real = Path(folder).resolve()
        if real.parent.name == "images_rgb":
            return cls(real.parent.parent), real.name
        if (real / RAWFRAMES_RGB.format(1)).is_file():
            return cls(real.parent), real.name
        raise FileNotFoundError(
            f"{folder} is a folder, not a video file nor a prepared clip folder (expected "
            "PREPARED/images_rgb/<clip>/0001.jpg, ... or a rawframes folder <clip>/img_00001.jpg, ...)"
        )

    def describe_clip(self, clip: str) -> str:
        """Where a clip's RGB frames are expected (for messages)."""
        if self.layout == "rawframes":
            return f"{self.root / clip} (img_00001.jpg, ...)"
        return f"{self.root / 'images_rgb' / clip} (0001.jpg, ...)"

    def counts(self, clip: str) -> tuple[int, int | None]:
        """(RGB frames, flow frames or None without flow) of a clip; (0, ...) when it is absent."""
        if clip not in self._counts:
            rec = self.manifest.get(clip)
            if rec is not None:
                n = int(rec["num_frames"])
                self._counts[clip] = (n, n if self.has_flow else None)
            elif self.layout == "rawframes":
                d = self.root / clip
                n = _count_jpgs(d, "img_")
                nf = min(_count_jpgs(d, "flow_x_"), _count_jpgs(d, "flow_y_")) if self.has_flow else None
                self._counts[clip] = (n, nf)
            else:
                n = _count_jpgs(self.root / "images_rgb" / clip)
                nf = None
                if self.has_flow:
                    flow = self.root / "images_flow" / clip
                    nf = min(_count_jpgs(flow / "u"), _count_jpgs(flow / "v"))
                self._counts[clip] = (n, nf)
        return self._counts[clip]

    def rgb_path(self, clip: str, i: int) -> Path:
        """The JPEG of frame i (0-based) of a clip."""
        if self.layout == "rawframes":
            return self.root / clip / RAWFRAMES_RGB.format(i + 1)
        return self.root / "images_rgb" / clip / f"{i + 1:04d}.jpg"

    def flow_path(self, clip: str, channel: str, i: int) -> Path:
        """The 8-bit flow JPEG of channel 'u' (x) or 'v' (y), frame i (0-based), of a clip."""
        if self.layout == "rawframes":
            return self.root / clip / RAWFRAMES_FLOW[channel].format(i + 1)
        return self.root / "images_flow" / clip / channel / f"{i + 1:04d}.jpg"

    def image(self, path: Path, grey: bool = False) -> np.ndarray:
        """A prepared frame: [H, W, 3] RGB, or [H, W] for a flow component (`grey`)."""
        key = (path, grey)
        img = self._images.get(key)
        if img is None:
            img = read_grey(path) if grey else read_rgb(path)
            if self.cache:
                self._images[key] = img
        return img

    def frames(
        self, clip: str, idx: np.ndarray, *, use_flow: bool, flow_frames: int | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Frames `idx` (0-based) of a clip: uint8 rgb [L, H, W, 3] and flow [L, H, W, 2] (u, v).

        dense_flow writes one flow frame fewer than RGB frames: indices past the last flow
        frame repeat it (`flow_frames`, default: the clip's count).
        """
        rgb = np.stack([self.image(self.rgb_path(clip, i)) for i in idx])  # [L, H, W, 3]
        if not use_flow:
            return rgb, None
        if flow_frames is None:
            flow_frames = self.counts(clip)[1] or len(idx)
        fidx = np.minimum(idx, flow_frames - 1)
        flow = np.stack(
            [np.stack([self.image(self.flow_path(clip, c, i), grey=True) for c in ("u", "v")], -1) for i in fidx]
        )  # [L, H, W, 2]
        return rgb, flow

    def gaze(self, clip: str, num_frames: int) -> np.ndarray:
        """[num_frames, 3] x, y, event; nan/0 rows where the clip has no gaze file or rows."""
        out = np.full((num_frames, 3), np.nan, dtype=np.float32)
        out[:, 2] = 0
        p = self.root / "gaze" / f"{clip}.npy"
        if p.is_file():
            g = np.load(p)
            n = min(len(g), num_frames)
            out[:n] = g[:n]
        return out

    def fixations(self, clip: str, num_frames: int) -> np.ndarray:
        """[num_frames, 2] recorded fixations (x, y normalised to the frame; nan where none):
        only fixations are gaze targets, in training and in evaluation."""
        g = self.gaze(clip, num_frames)
        pts = g[:, :2].copy()
        pts[g[:, 2] != FIXATION] = np.nan
        return pts

    def settings(self) -> dict[str, Any]:
        """`prepare.json` of the folder ({} when `prepare` did not write it)."""
        p = self.root / SETTINGS_FILE
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def geometry(self, clip: str | None = None) -> FrameGeometry:
        """The frame size and flow encoding of the folder: from `prepare`'s settings or
        manifest, else read off one frame (of `clip`, or of the first clip in the manifest)."""
        s = self.settings()
        flow = str(s.get("flow", "unknown")) if s else ("unknown" if self.has_flow else "none")
        if not self.has_flow:
            flow = "none"
        size = s.get("size")
        if not size:
            for rec in self.manifest.values():
                if rec.get("size"):
                    size = rec["size"]
                    break
        if size and len(size) == 2:
            return FrameGeometry((int(size[0]), int(size[1])), flow)
        if clip is None:
            raise FileNotFoundError(f"{self.root}: no prepare.json or manifest gives the frame size")
        h, w = self.image(self.rgb_path(clip, 0)).shape[:2]
        return FrameGeometry((int(w), int(h)), flow)
