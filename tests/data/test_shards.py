"""`prepare --shard I/N`: disjoint shards whose union is the whole run; merged manifests;
settings checked under a lock; the estimate printed before a run; dense_flow rawframes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gaze_attention.cli import main as cli_main
from gaze_attention.data.dataset import ClipDataset, PreparedData
from gaze_attention.data.egtea import read_manifests
from gaze_attention.data.prepare import PrepareError, prepare
from gaze_attention.data.shards import Shard, count_frames

TINY_SIZE = (64, 48)  # as in conftest.py


def _clip_lines(path: Path) -> set[str]:
    # `seconds` is the time the clip took; everything else must be identical byte for byte.
    out = set()
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rec.pop("seconds")
        out.add(json.dumps(rec))
    return out


def test_two_shards_equal_one_run(tiny_raw, tiny_prepared, tmp_path):
    out = tmp_path / "sharded"
    shards = [Shard(0, 2), Shard(1, 2)]
    names = []
    for s in shards:
        result = prepare(tiny_raw, out, flow="dis", size=TINY_SIZE, workers=1, progress=False, shard=s)
        assert result.ok, result.summary()
        names.append(set(result.prepared))
    assert names[0] and names[1] and not names[0] & names[1]  # disjoint, both non-empty
    assert not (out / "manifest.jsonl").exists()
    parts = [out / s.manifest_name for s in shards]
    merged = _clip_lines(parts[0]) | _clip_lines(parts[1])
    assert merged == _clip_lines(tiny_prepared / "manifest.jsonl")
    assert len(_clip_lines(parts[0])) + len(_clip_lines(parts[1])) == len(merged)
    # The same images, byte for byte (the flow too: DIS is deterministic).
    for name in names[0] | names[1]:
        for sub in ("images_rgb", "images_flow/" + name + "/u"):
            a = sorted((out / sub / ("" if "/" in sub else name)).glob("*.jpg"))
            b = sorted((tiny_prepared / sub / ("" if "/" in sub else name)).glob("*.jpg"))
            assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    # Readers merge the parts without loss.
    assert set(read_manifests(out)) == set(read_manifests(tiny_prepared))
    data = PreparedData(out)
    assert [r.name for r in data.split(1, "train")] == [r.name for r in PreparedData(tiny_prepared).split(1, "train")]
    # A rerun of one shard skips its clips; an unsharded run afterwards skips them all.
    again = prepare(tiny_raw, out, flow="dis", size=TINY_SIZE, workers=1, progress=False, shard="1/2")
    assert not again.prepared and set(again.skipped) == names[1]
    whole = prepare(tiny_raw, out, flow="dis", size=TINY_SIZE, workers=1, progress=False)
    assert not whole.prepared and set(whole.skipped) == names[0] | names[1]


def test_shards_running_together(tiny_raw, tmp_path):
    """Two shard processes started at once on one folder: both succeed, nothing lost."""
    out = tmp_path / "together"
    cmd = [sys.executable, "-m", "gaze_attention", "prepare", str(tiny_raw), str(out), "--flow", "dis",
           "--size", "64x48", "--workers", "1", "--no-progress"]  # fmt: skip
    procs = [subprocess.Popen([*cmd, "--shard", f"{i}/2"], stderr=subprocess.PIPE, text=True) for i in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert all("estimate:" in e for e in errs)
    assert len(read_manifests(out)) == 9
    assert not list((out / ".tmp").iterdir()) if (out / ".tmp").exists() else True


def test_shard_with_other_settings_refused(tiny_raw, tmp_path):
    out = tmp_path / "mixed"
    # The first shard has written prepare.json but no clip yet (e.g. it is still starting).
    (out).mkdir()
    (out / "prepare.json").write_text(json.dumps({"flow": "dis", "size": [64, 48], "min_frames": 24}))
    with pytest.raises(PrepareError, match="other settings"):
        prepare(tiny_raw, out, flow="farneback", size=TINY_SIZE, workers=1, progress=False, shard="0/2")


def test_shard_assignment():
    names = [f"P{i:02d}-R01-Pizza-{i}-{i + 1}-F{i:06d}-F{i + 30:06d}" for i in range(200)]
    owned = [[n for n in names if Shard(i, 3).owns(n)] for i in range(3)]
    assert sorted(sum(owned, [])) == sorted(names)
    assert all(40 < len(o) < 95 for o in owned)  # roughly balanced
    for bad in ("2/2", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    assert cli_main(["prepare", "/nonexistent", "/tmp/x", "--shard", "3/2"]) == 2


def test_estimate_counts_frames_from_names():
    class Job:
        def __init__(self, name: str) -> None:
            self.name, self.video = name, "/nonexistent.mp4"

    jobs = [Job("P01-R01-Pizza-0-1000-F000010-F000033"), Job("P01-R01-Pizza-0-1000-F000100-F000199")]
    assert count_frames(jobs) == 24 + 100


def test_read_manifests_merges_splits(tmp_path):
    (tmp_path / "manifest.shard-0-of-2.jsonl").write_text(json.dumps({"clip": "a", "splits": ["train1"]}) + "\n")
    (tmp_path / "manifest.shard-1-of-2.jsonl").write_text(
        json.dumps({"clip": "b", "splits": ["test1"]}) + "\n" + '{"clip": "c", "spl'  # a cut line
    )
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"clip": "a", "splits": ["train2"]}) + "\n")
    m = read_manifests(tmp_path)
    assert sorted(m) == ["a", "b"]
    assert m["a"]["splits"] == ["train1", "train2"]


def _write_rawframes(root: Path, clips: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """dense_flow layout: <clip>/img_00001.jpg, flow_x/flow_y one frame fewer than RGB."""
    for name, (rgb, flow) in clips.items():
        d = root / name
        d.mkdir(parents=True)
        for i, f in enumerate(rgb):
            cv2.imwrite(str(d / f"img_{i + 1:05d}.jpg"), f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
        for i, f in enumerate(flow):
            cv2.imwrite(str(d / f"flow_x_{i + 1:05d}.jpg"), f[..., 0], [cv2.IMWRITE_JPEG_QUALITY, 100])
            cv2.imwrite(str(d / f"flow_y_{i + 1:05d}.jpg"), f[..., 1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    lines = "".join(f"{n} {k + 1} 1 1\n" for k, n in enumerate(clips))
    (root / "train_split1.txt").write_text(lines)
    (root / "test_split1.txt").write_text(lines)


def test_rawframes_folder(tmp_path):
    # Frame i is a flat grey level 10 * i (JPEG keeps flat images exact), flow level 100 + i.
    rgb = np.repeat(np.arange(10, dtype=np.uint8)[:, None, None, None] * 10, 3, -1) * np.ones((1, 48, 64, 1), np.uint8)
    flow = (100 + np.arange(9, dtype=np.uint8))[:, None, None, None] * np.ones((1, 48, 64, 2), np.uint8)
    flow[..., 1] = 50
    _write_rawframes(tmp_path, {"clip_a": (rgb, flow), "clip_b": (rgb[:6], flow[:5])})
    data = PreparedData(tmp_path)
    assert data.layout == "rawframes" and data.has_flow
    recs = data.split(1, "test")
    assert [(r.name, r.num_frames, r.flow_frames) for r in recs] == [("clip_a", 10, 9), ("clip_b", 6, 5)]
    ds = ClipDataset(data, recs, train=False, frames=8, crop=32, grid=(1, 1))
    s = ds[0]
    # [3, T, crop, crop] in [-1, 1]: frame i has grey 10 i.
    levels = ((s["rgb"][0, :, 0, 0] + 1) * 127.5).round().int().tolist()
    assert levels == [10 * i for i in range(10)]
    u = ((s["flow"][0, :, 0, 0] + 1) * 127.5).round().int().tolist()
    assert u == [100 + i for i in range(9)] + [108]  # the last flow frame repeats
    assert (((s["flow"][1] + 1) * 127.5).round() == 50).all()
    shutil.rmtree(tmp_path / "clip_b")
    with pytest.warns(UserWarning, match="not prepared"):
        assert [r.name for r in PreparedData(tmp_path).split(1, "train")] == ["clip_a"]


def test_not_a_data_folder(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="img_00001"):
        PreparedData(tmp_path)


def test_atomic_writes_replace_a_planted_link_and_leave_its_target(tmp_path):
    from gaze_attention.data.shards import atomic_copy, atomic_write_text

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("settings.json", "action_idx.txt"):  # the final names and the temp names once used
        (out / name).symlink_to(victim)
        (out / f".{name}.{os.getpid()}.tmp").symlink_to(victim)
    atomic_write_text(out / "settings.json", "{}\n")
    src = tmp_path / "src.txt"
    src.write_text("a 1\n")
    atomic_copy(src, out / "action_idx.txt")
    assert victim.read_text() == "precious"
    assert (out / "settings.json").read_text() == "{}\n" and (out / "action_idx.txt").read_text() == "a 1\n"
    assert not (out / "settings.json").is_symlink() and not (out / "action_idx.txt").is_symlink()
    assert len(list(out.iterdir())) == 4  # no temp file of ours left
