"""Prepared data on disk -> training and test samples (dicts of tensors).

`PreparedData` reads a folder written by `gaze-attention prepare` (with `manifest.jsonl`), a
reference-layout folder (`images_rgb/<clip>/0001.jpg`, `images_flow/<clip>/{u,v}/0001.jpg`,
plus split lists) or a dense_flow / mmaction2 rawframes folder (`<clip>/img_00001.jpg`,
`<clip>/flow_x_00001.jpg`, `<clip>/flow_y_00001.jpg`, plus split lists); frames of folders
without a manifest are counted on disk.
`ClipDataset` samples windows, crops and flips RGB, flow and gaze together. Frames, flow
and gaze are read through the folder's `FrameStore` (data/store.py), which knows the layouts.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from gaze_attention.data.egtea import (
    SplitEntry,
    build_vocabulary,
    find_split_files,
    read_split,
)
from gaze_attention.data.store import FrameStore
from gaze_attention.data.transforms import (
    CropFlip,
    fit_short_side,
    gaze_targets,
    stack_channels_last,
    to_unit_range,
)


class ClipRecord(NamedTuple):
    """One clip of a split: 0-based action label, verb, noun; frames on disk."""

    name: str
    label: int
    verb: int
    noun: int
    num_frames: int
    flow_frames: int | None = None  # None: same as num_frames (always so for our own output)


class PreparedData:
    """A prepared data set: vocabulary, split lists and per-clip frame counts.

    root: a `prepare` output folder, or a reference-layout folder. Split lists are looked up in
    `annotations` (default `root/annotations`, else `root` itself).
    """

    def __init__(
        self, root: str | Path, annotations: str | Path | None = None, cache: bool = False
    ) -> None:
        self.store = FrameStore(root, cache=cache)
        self.root = self.store.root
        self.layout = self.store.layout
        self.has_flow = self.store.has_flow
        self.manifest = self.store.manifest
        if annotations is None:
            annotations = self.root / "annotations"
            if not annotations.is_dir():
                annotations = self.root
        self.annotations = Path(annotations)
        self._split_files = find_split_files(self.annotations)
        if not self._split_files:
            raise FileNotFoundError(f"{self.annotations}: no {{train,test}}_split<N>.txt files")
        self._entries: dict[tuple[int, str], list[SplitEntry]] = {}
        all_entries: list[SplitEntry] = []
        for n, files in self._split_files.items():
            for part, p in files.items():
                self._entries[(n, part)] = read_split(p)
                all_entries += self._entries[(n, part)]
        vocab = build_vocabulary(self.annotations, all_entries)
        self.classes: list[str] = vocab.actions
        self.verbs: list[str] = vocab.verbs
        self.nouns: list[str] = vocab.nouns
        self.verb_of: list[int] = vocab.verb_of
        self.noun_of: list[int] = vocab.noun_of
        self.missing: dict[tuple[int, str], list[str]] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def splits(self) -> list[int]:
        return sorted(self._split_files)

    @property
    def cache(self) -> bool:
        return self.store.cache

    def rgb_path(self, clip: str, i: int) -> Path:
        """The JPEG of frame i (0-based) of a clip."""
        return self.store.rgb_path(clip, i)

    def flow_path(self, clip: str, channel: str, i: int) -> Path:
        """The 8-bit flow JPEG of channel 'u' (x) or 'v' (y), frame i (0-based), of a clip."""
        return self.store.flow_path(clip, channel, i)

    def split(self, number: int, part: str) -> list[ClipRecord]:
        """Records of `{part}_split{number}.txt` that exist on disk (others go to `missing`)."""
        if part not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        if (number, part) not in self._entries:
            have = ", ".join(f"{q}_split{n}.txt" for n, q in sorted(self._entries)) or "none"
            raise FileNotFoundError(f"no {part}_split{number}.txt in {self.annotations} (have {have})")
        records, missing = [], []
        for e in self._entries[(number, part)]:
            n, nf = self.store.counts(e.name)
            if n == 0 or nf == 0:
                missing.append(e.name)
                continue
            records.append(ClipRecord(e.name, e.action, e.verb, e.noun, n, nf))
        self.missing[(number, part)] = missing
        if missing:
            warnings.warn(
                f"{len(missing)} clip(s) of {part}_split{number} are not prepared under "
                f"{self.root} (first: {missing[0]})",
                stacklevel=2,
            )
        return records

    def image(self, path: Path, grey: bool = False) -> np.ndarray:
        """A prepared frame: [H, W, 3] RGB, or [H, W] for a flow component (`grey`)."""
        return self.store.image(path, grey)

    def gaze(self, clip: str, num_frames: int) -> np.ndarray:
        """[num_frames, 3] x, y, event; nan/0 rows where the clip has no gaze file or rows."""
        return self.store.gaze(clip, num_frames)


class ClipDataset(Dataset):
    """Samples of prepared clips as dicts (see docs/CONTRACTS.md, "Prepared data").

    train=True: a T-frame window with a uniformly random start, a random `crop` square and a
    horizontal flip (p=1/2), applied jointly to RGB, flow (mirrored u -> 255 - u) and gaze; the
    gaze target of slice t comes from the fixation of the slice's first frame (`gaze_frame`),
    rendered on the grid after augmentation.
    train=False: the whole clip (edge-padded to at least T frames), centre crop, with per-frame
    fixation points for sliding-window evaluation.
    channels_last: "rgb" and "flow" are [C, T, H, W] views of [T, H, W, C] arrays (same values),
    for `collate_channels_last`.
    """

    def __init__(
        self,
        data: PreparedData,
        records: list[ClipRecord],
        train: bool = True,
        frames: int = 24,
        crop: int = 224,
        grid: tuple[int, int] = (3, 7),
        use_flow: bool = True,
        seed: int = 0,
        flip: bool = True,
        gaze_frame: str = "first",
        channels_last: bool = False,
    ) -> None:
        if use_flow and not data.has_flow:
            what = "flow_x_*.jpg files" if data.layout == "rawframes" else "images_flow/"
            raise ValueError(f"{data.root} has no {what} (prepared with --flow none?)")
        self.data = data
        self.records = list(records)
        self.train = train
        self.frames = frames
        self.crop = crop
        self.grid = grid
        self.use_flow = use_flow
        self.flip = flip
        self.gaze_frame = gaze_frame
        self.channels_last = channels_last
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        """Replace the augmentation RNG (called per DataLoader worker by `seed_worker`)."""
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, rec: ClipRecord, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return self.data.store.frames(rec.name, idx, use_flow=self.use_flow,
                                      flow_frames=rec.flow_frames or rec.num_frames)  # fmt: skip

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        n = rec.num_frames
        t = self.frames
        if self.train:
            start = int(self.rng.integers(0, max(n - t, 0) + 1))
            idx = np.minimum(np.arange(start, start + t), n - 1)  # [T]; short clips edge-padded
        else:
            idx = np.minimum(np.arange(max(n, t)), n - 1)  # [L]
        rgb, flow = self._load(rec, idx)
        rgb = fit_short_side(rgb, self.crop)
        if flow is not None:
            flow = fit_short_side(flow, self.crop)
        h, w = rgb.shape[1:3]
        if self.train:
            cf = CropFlip.random(self.rng, h, w, self.crop, flip=self.flip)
        else:
            cf = CropFlip.center(h, w, self.crop)

        pts = cf.points(self.data.store.fixations(rec.name, n)[idx])  # [T, 2]

        sample = {
            "rgb": to_unit_range(cf.frames(rgb), self.channels_last),  # [3, T, crop, crop]
            "label": torch.tensor(rec.label, dtype=torch.int64),
            "index": index,
        }
        if flow is not None:
            sample["flow"] = to_unit_range(cf.flow(flow), self.channels_last)  # [2, T, crop, crop]
        if self.train:
            target, valid = gaze_targets(pts, self.grid, frame=self.gaze_frame)
            sample["gaze"] = target  # [T', S, S]
            sample["gaze_valid"] = valid  # [T']
        else:
            sample["gaze_point"] = torch.from_numpy(pts)  # [L, 2]
        return sample


_CLIP_KEYS = ("rgb", "flow")


def collate_channels_last(samples: list[dict]) -> dict:
    """`default_collate` of training samples, with the clips ("rgb", "flow") batched by
    `stack_channels_last` for a model that runs channels-last on a CPU: the same values as
    `default_collate(samples)` in that layout (`torch.equal` to it), without the second,
    transposing copy the step would make of a contiguous batch."""
    rest = torch.utils.data.default_collate([{k: v for k, v in s.items() if k not in _CLIP_KEYS} for s in samples])
    return {
        key: stack_channels_last([s[key] for s in samples]) if key in _CLIP_KEYS else rest[key]
        for key in samples[0]
    }


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed numpy, random and the dataset's RNG per worker.

    torch gives each worker (and each epoch) a distinct `initial_seed`, derived from the
    DataLoader's generator, so augmentations differ across workers yet stay reproducible.
    """
    # No cv2.setNumThreads here: in a forked worker whose parent has used OpenCV's thread
    # pool it deadlocks. The loader only calls cv2.imread, which is single-threaded anyway.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - libraries that use the global RNG need it too
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(seed)
