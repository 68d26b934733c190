"""Prepared clips decoded once and held in memory, for many short runs over one small set.

`MemoryData` is a `PreparedData` (so evaluation and every reader accept it) that decodes each
clip's JPEGs once into one uint8 array per stream, already scaled for the model's crop, and
keeps the gaze rows; `MemoryClipDataset` then samples windows from those arrays with the same
random draws as `ClipDataset`, so a run gives the same batches either way. Training on it needs
no DataLoader worker processes (`in_memory`): on a 2-core machine they only compete with the
step for the cores. About 80 kB per 146x110 frame with its flow.

Interface used of `PreparedData`: `rgb_path`, `flow_path`, `image`, `gaze`, `split`,
`has_flow` and the constructor.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from gaze_attention.data.dataset import ClipDataset, ClipRecord, PreparedData
from gaze_attention.data.transforms import fit_short_side


class MemoryClip(NamedTuple):
    rgb: np.ndarray  # [N, H, W, 3] uint8, scaled for the crop
    flow: np.ndarray | None  # [N_flow, H, W, 2] uint8 (u, v)
    gaze: np.ndarray  # [N, 3] float32 x, y, event


class MemoryData(PreparedData):
    """A prepared data set whose clips are decoded on first use and then kept in memory."""

    in_memory = True  # train() reads it in the main process (no DataLoader workers)
    dataset_class: type[ClipDataset]  # train() builds its training set with it (set below)

    def __init__(self, root: str | Path, annotations: str | Path | None = None) -> None:
        # cache=True: evaluation reads single frames through `image`; they stay decoded too.
        super().__init__(root, annotations, cache=True)
        self._clips: dict[tuple[str, int, bool], MemoryClip] = {}
        self._gaze: dict[tuple[str, int], np.ndarray] = {}

    def clip(self, rec: ClipRecord, crop: int, use_flow: bool = True) -> MemoryClip:
        """Every frame of a clip, scaled as `ClipDataset` scales a window for `crop`."""
        return self._clip(rec.name, rec.num_frames, rec.flow_frames, crop, use_flow)

    def fitted_frames(
        self, name: str, idx: np.ndarray, *, crop: int, use_flow: bool, num_frames: int, flow_frames: int | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Frames `idx` of a clip as `FrameStore.frames` gives them, already scaled for `crop`
        (`fit_short_side`, which leaves them as they are when applied again), out of memory:
        what training windows and evaluation read, without a JPEG or a frame lookup per frame."""
        clip = self._clip(name, num_frames, flow_frames, crop, use_flow)
        rgb = clip.rgb[idx]  # [L, H, W, 3]
        if not use_flow:
            return rgb, None
        assert clip.flow is not None
        return rgb, clip.flow[np.minimum(idx, len(clip.flow) - 1)]  # [L, H, W, 2]; dense_flow has one fewer

    def _clip(self, name: str, num_frames: int, flow_frames: int | None, crop: int, use_flow: bool) -> MemoryClip:
        key = (name, crop, use_flow)
        got = self._clips.get(key)
        if got is None:
            rgb = np.stack([self.image(self.rgb_path(name, i)) for i in range(num_frames)])
            # fit_short_side scales each frame alone, so scaling the clip once and indexing a
            # window later gives the window ClipDataset would scale itself.
            rgb = np.ascontiguousarray(fit_short_side(rgb, crop))
            flow = None
            if use_flow:
                n = flow_frames or num_frames
                flow = np.stack(
                    [
                        np.stack([self._grey(self.flow_path(name, c, i)) for c in ("u", "v")], -1)
                        for i in range(n)
                    ]
                )  # [N, H, W, 2]
                flow = np.ascontiguousarray(fit_short_side(flow, crop))
            got = MemoryClip(rgb, flow, self.gaze(name, num_frames))
            self._clips[key] = got
        return got

    def gaze(self, clip: str, num_frames: int) -> np.ndarray:
        """`PreparedData.gaze`, read from disk once per clip (callers index it, which copies)."""
        key = (clip, num_frames)
        got = self._gaze.get(key)
        if got is None:
            got = self._gaze[key] = super().gaze(clip, num_frames)
            got.setflags(write=False)
        return got

    def _grey(self, path: Path) -> np.ndarray:
        return self.image(path, grey=True)

    def preload(self, records: list[ClipRecord], crop: int, use_flow: bool = True) -> None:
        """Decode these clips now (so that the first run's timing does not include it)."""
        for rec in records:
            self.clip(rec, crop, use_flow)

    def drop_frames(self) -> None:
        """Forget the single decoded frames (the clips stay): halves the memory after preload."""
        self._images.clear()


class MemoryClipDataset(ClipDataset):
    """`ClipDataset` over `MemoryData`: the same samples, windows indexed out of memory."""

    data: MemoryData

    def __init__(self, data: MemoryData, records: list[ClipRecord], **options) -> None:
        if not isinstance(data, MemoryData):
            raise TypeError(f"MemoryClipDataset needs a MemoryData, got {type(data).__name__}")
        super().__init__(data, records, **options)

    def _load(self, rec: ClipRecord, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.data.fitted_frames(
            rec.name, idx, crop=self.crop, use_flow=self.use_flow,
            num_frames=rec.num_frames, flow_frames=rec.flow_frames,
        )  # fmt: skip


MemoryData.dataset_class = MemoryClipDataset
