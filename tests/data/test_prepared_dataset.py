"""PreparedData on prepared synthetic data, and DataLoader workers seeded distinctly."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from gaze_attention.data import ClipDataset, PreparedData, seed_worker


def test_prepared_data_and_samples(tiny_prepared):
    data = PreparedData(tiny_prepared)
    assert data.splits == [1] and data.num_classes == 3
    assert data.verb_of == [0, 1, 0] and data.noun_of == [0, 0, 1]
    train = data.split(1, "train")
    ds = ClipDataset(data, train, train=True, frames=24, crop=32, grid=(3, 4), seed=0)
    x = ds[0]
    assert x["rgb"].shape == (3, 24, 32, 32) and x["flow"].shape == (2, 24, 32, 32)
    assert x["rgb"].dtype == torch.float32 and -1 <= x["rgb"].min() <= x["rgb"].max() <= 1
    assert x["gaze"].shape == (3, 4, 4) and x["gaze_valid"].dtype == torch.bool
    assert torch.equal(x["gaze"].sum((1, 2)), x["gaze_valid"].float())
    assert x["label"].dtype == torch.int64 and x["label"].ndim == 0
    rgb_only = ClipDataset(data, train, frames=24, crop=32, grid=(3, 4), use_flow=False)
    assert "flow" not in rgb_only[0]
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["rgb"].shape == (3, 3, 24, 32, 32) and batch["gaze_valid"].shape == (3, 3)
    # Synthetic gaze is informative: most training windows have valid gaze slices.
    valid = torch.stack([ds[i]["gaze_valid"] for i in range(len(ds))]).float().mean()
    assert valid > 0.4


def _starts(loader) -> list[int]:
    # background brightness is 4 x the frame index (see `_ramp_clip`)
    return [round(((b["rgb"][0, 0, 0] + 1) * 255 / 2).median().item() / 4) for b in loader]


def _ramp_clip(length=40, h=40, w=40):
    rgb = (4 * np.arange(length, dtype=np.uint8))[:, None, None, None].repeat(h, 1).repeat(w, 2)
    return rgb.repeat(3, 3), None, None


def test_workers_are_seeded_distinctly_and_reproducibly(tmp_path, write_prepared):
    data = PreparedData(write_prepared(tmp_path, {"c": _ramp_clip()}))
    records = data.split(1, "train") * 16
    ds = ClipDataset(data, records, frames=8, crop=32, grid=(2, 4), use_flow=False, seed=0)

    def loader(init):
        g = torch.Generator().manual_seed(123)
        return DataLoader(ds, batch_size=1, num_workers=2, worker_init_fn=init, generator=g)

    a = _starts(loader(seed_worker))
    # batches alternate between the two workers
    assert a[0::2] != a[1::2], "both workers drew the same windows"
    assert a == _starts(loader(seed_worker)), "same generator seed must give the same windows"
    plain = _starts(loader(None))
    assert plain[0::2] == plain[1::2]  # what seed_worker prevents: copies of one RNG


def test_forked_workers_do_not_hang_after_opencv_threads(tiny_prepared):
    """OpenCV's thread pool, used in the parent, must not deadlock forked loader workers
    (calling cv2.setNumThreads in a worker did)."""
    import cv2

    big = np.zeros((1024, 1360, 3), np.uint8)
    for _ in range(10):
        cv2.cvtColor(cv2.resize(big, (680, 512)), cv2.COLOR_BGR2GRAY)
    data = PreparedData(tiny_prepared)
    ds = ClipDataset(data, data.split(1, "train"), frames=24, crop=32, grid=(3, 4))
    dl = DataLoader(ds, batch_size=2, num_workers=2, worker_init_fn=seed_worker, timeout=30)
    assert sum(len(b["label"]) for b in dl) == len(ds)
