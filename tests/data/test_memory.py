"""In-memory prepared data: the same training samples as reading from disk, and training on
it without loader workers."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import default_collate

from gaze_attention.data import ClipDataset, PreparedData
from gaze_attention.data.dataset import collate_channels_last
from gaze_attention.data.memory import MemoryClipDataset, MemoryData
from gaze_attention.data.transforms import view_short_side


def test_memory_samples_equal_disk_samples(tiny_prepared) -> None:
    disk, mem = PreparedData(tiny_prepared), MemoryData(tiny_prepared)
    records = disk.split(1, "train")
    # crop 40 of 64x48 frames: fit_short_side scales them (short side 48 > 46), so this also
    # checks that scaling whole clips once gives the windows ClipDataset scales itself.
    opts = dict(train=True, frames=8, crop=40, grid=(1, 2), seed=3)
    a = ClipDataset(disk, records, **opts)
    b = mem.dataset_class(mem, mem.split(1, "train"), **opts)
    assert isinstance(b, MemoryClipDataset)
    for i in range(len(records)):
        for seed in (0, 1):
            a.reseed(seed)
            b.reseed(seed)
            x, y = a[i], b[i]
            assert x.keys() == y.keys()
            for k in x:
                if isinstance(x[k], torch.Tensor):
                    assert torch.equal(x[k], y[k]), (i, seed, k)
    rec = records[0]
    clip = mem.clip(rec, 40)
    assert clip.rgb.shape[0] == rec.num_frames and clip.rgb.dtype == np.uint8
    assert min(clip.rgb.shape[1:3]) == view_short_side(40)  # scaled once, not per window
    assert mem.clip(rec, 40) is clip  # decoded once
    g = mem.gaze(rec.name, rec.num_frames)
    assert not g.flags.writeable and np.array_equal(g, disk.gaze(rec.name, rec.num_frames), equal_nan=True)


def test_training_on_memory_data_uses_no_loader_workers(tiny_prepared, tmp_path, monkeypatch) -> None:
    from gaze_attention.engine.config import load_config
    from gaze_attention.engine.train import train

    seen: list[int] = []
    real = torch.utils.data.DataLoader

    collates: list[object] = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("num_workers", 0))
        collates.append(kwargs.get("collate_fn"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.utils.data, "DataLoader", spy)
    cfg = load_config(
        "tiny",
        {
            "data.root": str(tiny_prepared), "data.workers": 2, "model.frames": 8, "model.crop": 32,
            "optim.iters": 2, "optim.batch_size": 2, "optim.warmup": 1, "optim.milestones": [1],
            "run.out": str(tmp_path / "run"), "run.tensorboard": False, "run.precision": "fp32",
            "run.checkpoint_every": 2,
        },
    )  # fmt: skip
    res = train(cfg, progress=False, data=MemoryData(tiny_prepared))
    assert res.iteration == 2 and seen == [0]
    # batched in this process straight into the CPU model's channels-last layout
    assert collates == [collate_channels_last]


def test_channels_last_batches_equal_default_ones(tiny_prepared) -> None:
    """`channels_last=True` samples and `collate_channels_last` give the batches
    `default_collate` gives, to the bit, in the layout the CPU model runs in."""
    cl = torch.channels_last_3d
    for data in (PreparedData(tiny_prepared), MemoryData(tiny_prepared)):
        opts = dict(train=True, frames=8, crop=40, grid=(1, 2))
        records = data.split(1, "train")
        plain = getattr(data, "dataset_class", ClipDataset)(data, records, **opts)  # as engine.train picks it
        fast = type(plain)(data, records, channels_last=True, **opts)
        for seed in (0, 1):  # seed 0 and 1 between them flip some clips and not others
            plain.reseed(seed)
            fast.reseed(seed)
            a = [plain[i] for i in range(len(records))]
            b = [fast[i] for i in range(len(records))]
            for x, y in zip(a, b):
                for key in ("rgb", "flow"):
                    assert torch.equal(x[key], y[key]) and x[key].is_contiguous()
                    assert not y[key].is_contiguous() and y[key].unsqueeze(0).is_contiguous(memory_format=cl)
            want = default_collate(a)
            for got in (collate_channels_last(b), collate_channels_last(a)):
                assert list(got) == list(want)
                for key, value in want.items():
                    assert torch.equal(got[key], value), key
                    assert got[key].dtype == value.dtype, key
                for key in ("rgb", "flow"):
                    assert got[key].is_contiguous(memory_format=cl) and not got[key].is_contiguous()


def test_evaluation_windows_from_memory_equal_the_disk_ones(tiny_prepared) -> None:
    """Evaluation over MemoryData reads windows out of the decoded clips: the same windows,
    frames and gaze points as from the JPEGs, at a crop that rescales and one that does not."""
    from gaze_attention.engine.inference import PreparedClip

    disk, mem = PreparedData(tiny_prepared), MemoryData(tiny_prepared)
    for crop in (40, 48):
        for rec in disk.split(1, "test"):
            a = PreparedClip(disk, rec.name, crop, True, rec.num_frames, rec.flow_frames)
            b = PreparedClip(mem, rec.name, crop, True, rec.num_frames, rec.flow_frames)
            assert b._memory is mem and a._memory is None
            starts = [0, max(0, rec.num_frames - 4)]
            for x, y in zip(a.windows(starts, 8), b.windows(starts, 8)):
                assert torch.equal(x.rgb, y.rgb) and torch.equal(x.flow, y.flow), (crop, rec.name)
                np.testing.assert_array_equal(x.points, y.points)
                assert (x.start, x.frames) == (y.start, y.frames)
    assert any(key[1] == 40 for key in mem._clips)  # served from whole clips, not frame by frame
