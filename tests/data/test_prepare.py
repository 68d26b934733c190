"""`prepare` end to end on a tiny synthetic raw set: completeness, resume, failures, kills."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gaze_attention.cli import main as cli_main
from gaze_attention.data.begaze import FIXATION
from gaze_attention.data.dataset import PreparedData
from gaze_attention.data.egtea import parse_clip_name, read_split
from gaze_attention.data.prepare import PrepareError, decode_video, prepare

TINY_SIZE = (64, 48)  # as in conftest.py


def _count(folder: Path) -> int:
    return len([p for p in folder.iterdir() if p.suffix == ".jpg"])


def _listed(raw: Path) -> list[str]:
    ann = raw / "action_annotation"
    return [e.name for p in ("train_split1.txt", "test_split1.txt") for e in read_split(ann / p)]


def _manifest(out: Path) -> dict[str, dict]:
    return {r["clip"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def test_every_clip_complete_and_aligned(tiny_raw, tiny_prepared):
    out = tiny_prepared
    names = _listed(tiny_raw)
    man = _manifest(out)
    assert sorted(man) == sorted(names)
    assert not (out / ".tmp").exists()
    extended = 0
    for name in names:
        rec = man[name]
        n = _count(out / "images_rgb" / name)
        assert n == _count(out / "images_flow" / name / "u") == _count(out / "images_flow" / name / "v")
        assert n == rec["num_frames"] >= 24
        src = len(decode_video(tiny_raw / "cropped_clips" / rec["session"] / f"{name}.mp4", TINY_SIZE))
        assert rec["source_frames"] == src
        if src < 24:
            extended += 1
            # session videos exist in tiny_raw: context frames come from the recording
            assert rec["extended"]["method"] in ("session", "session+repeat")
            assert rec["extended"]["before"] + rec["extended"]["after"] + src == n
        else:
            assert rec["extended"] is None
        gaze = np.load(out / "gaze" / f"{name}.npy")
        assert gaze.shape == (n, 3) and gaze.dtype == np.float32
        finite = np.isfinite(gaze[:, :2])
        assert ((gaze[:, :2][finite] >= 0) & (gaze[:, :2][finite] <= 1)).all()
        assert rec["fixation_coverage"] == pytest.approx(
            (np.isfinite(gaze[:, 0]) & (gaze[:, 2] == FIXATION)).mean(), abs=1e-4
        )
    assert extended > 0, "the tiny set must contain short clips"
    data = PreparedData(out)
    assert data.num_classes == 3 and data.has_flow
    assert len(data.split(1, "train")) == 6 and len(data.split(1, "test")) == 3


def test_gaze_rows_align_with_session_frames(tiny_raw, tiny_prepared):
    """The gaze of prepared frame i is the BeGaze row of session frame start + i."""
    from gaze_attention.data.begaze import read_begaze

    man = _manifest(tiny_prepared)
    for name, rec in man.items():
        session = read_begaze(tiny_raw / "gaze_data" / f"{rec['session']}.txt")
        gaze = np.load(tiny_prepared / "gaze" / f"{name}.npy")
        ext = rec["extended"] or {"before": 0}
        start = parse_clip_name(name).start_frame - ext["before"]
        if ext.get("method", "session") == "session":
            np.testing.assert_array_equal(gaze, session.frames(start, start + len(gaze)))


def test_second_run_is_a_no_op(tiny_raw, tiny_prepared, tmp_path):
    out = tmp_path / "p"
    shutil.copytree(tiny_prepared, out)
    stamp = {p: p.stat().st_mtime_ns for p in (out / "images_rgb").rglob("*.jpg")}
    r = prepare(tiny_raw, out, flow="dis", size=TINY_SIZE, progress=False)
    assert r.ok and not r.prepared and len(r.skipped) == 9
    assert stamp == {p: p.stat().st_mtime_ns for p in (out / "images_rgb").rglob("*.jpg")}
    with pytest.raises(PrepareError, match="other settings"):
        prepare(tiny_raw, out, flow="farneback", size=TINY_SIZE, progress=False)


def test_broken_clip_is_reported_while_others_succeed(tmp_path, capsys, make_tiny_raw):
    raw = tmp_path / "raw"
    make_tiny_raw(raw, session_videos=False)
    names = _listed(raw)
    bad = next((raw / "cropped_clips").rglob(f"{names[0]}.mp4"))
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    missing = next((raw / "cropped_clips").rglob(f"{names[1]}.mp4"))
    missing.unlink()
    out = tmp_path / "out"
    code = cli_main([
        "prepare", str(raw), str(out), "--flow", "none", "--size", "64x48",
        "--workers", "2", "--no-progress",
    ])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert f"FAILED {names[0]}: cannot decode" in err
    assert f"FAILED {names[1]}: missing video" in err
    man = _manifest(out)
    assert sorted(man) == sorted(names[2:])
    assert not (out / "images_rgb" / names[0]).exists() and not (out / "images_flow").exists()
    # Short clips without session videos are extended by repeating edge frames.
    assert {r["extended"]["method"] for r in man.values() if r["extended"]} == {"repeat"}


def test_missing_gaze_file_fails_its_clips_unless_allowed(tmp_path, make_tiny_raw):
    raw = tmp_path / "raw"
    make_tiny_raw(raw, session_videos=False)
    gaze_file = sorted((raw / "gaze_data").iterdir())[0]
    gaze_file.unlink()
    r = prepare(raw, tmp_path / "o1", flow="none", size=TINY_SIZE, progress=False)
    assert r.failed and all("no gaze file" in why for _, why in r.failed)
    assert len(r.prepared) + len(r.failed) == 9
    r = prepare(raw, tmp_path / "o2", flow="none", size=TINY_SIZE, progress=False, allow_missing_gaze=True)
    assert r.ok
    missing = [m for m in _manifest(tmp_path / "o2").values() if m["gaze"] == "missing"]
    assert missing and all(m["gaze_coverage"] == 0 for m in missing)


def test_leftover_temp_and_unrecorded_clip_are_redone(tiny_raw, tiny_prepared, tmp_path):
    """Simulate a kill: a half-written temp folder, and a renamed clip missing from the manifest."""
    out = tmp_path / "p"
    shutil.copytree(tiny_prepared, out)
    lines = (out / "manifest.jsonl").read_text().splitlines()
    dropped = json.loads(lines[-1])["clip"]
    (out / "manifest.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # cut line
    half = out / ".tmp" / "P99-R01-x-0-1-F000000-F000001" / "rgb"
    half.mkdir(parents=True)
    (half / "0001.jpg").write_bytes(b"partial")
    shutil.rmtree(out / "images_flow" / dropped / "v")
    r = prepare(tiny_raw, out, flow="dis", size=TINY_SIZE, progress=False)
    assert r.ok and r.prepared == [dropped] and len(r.skipped) == 8
    assert not (out / ".tmp").exists()
    assert _count(out / "images_flow" / dropped / "v") == _manifest(out)[dropped]["num_frames"]


def test_killed_run_restarts_and_completes(tiny_raw, tmp_path):
    """SIGKILL in the middle of moving the third clip into place, then rerun."""
    out = tmp_path / "killed"
    # Each clip is moved in with three renames (rgb, flow, gaze); die on the 8th: clip 3 then
    # has its frames in place but neither flow nor gaze, and no manifest line.
    code = f"""
import os, signal
from gaze_attention.data.prepare import prepare
real, calls = os.replace, [0]
def dying(src, dst):
    calls[0] += ".tmp" in str(src).split(os.sep)  # count the clips' renames only
    if calls[0] == 8:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = dying
prepare({str(tiny_raw)!r}, {str(out)!r}, flow="dis", size=(64, 48), progress=False)
"""
    proc = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert len(_manifest(out)) == 2
    half = [p.name for p in (out / "images_rgb").iterdir() if p.name not in _manifest(out)]
    assert len(half) == 1 and not (out / "images_flow" / half[0]).exists()
    r = prepare(tiny_raw, out, flow="dis", size=(64, 48), progress=False)
    assert r.ok and len(r.skipped) == 2 and len(r.prepared) == 7 and half[0] in r.prepared
    man = _manifest(out)
    assert sorted(man) == sorted(_listed(tiny_raw))
    assert not (out / ".tmp").exists()
    for name, rec in man.items():
        n = rec["num_frames"]
        assert _count(out / "images_rgb" / name) == n
        assert _count(out / "images_flow" / name / "u") == _count(out / "images_flow" / name / "v") == n
        assert np.load(out / "gaze" / f"{name}.npy").shape == (n, 3)
    assert sorted(p.name for p in (out / "images_rgb").iterdir()) == sorted(man)


def test_own_recordings_layout(tmp_path, tiny_raw):
    raw = tmp_path / "own"
    (raw / "videos").mkdir(parents=True)
    (raw / "gaze").mkdir()
    clips = sorted((tiny_raw / "cropped_clips").rglob("*.mp4"))[:3]
    rows = ["clip,label,split,verb,noun"]
    for k, p in enumerate(clips):
        name = f"kitchen_{k}"
        shutil.copyfile(p, raw / "videos" / f"{name}.mp4")
        rows.append(f"{name},{'open jar' if k % 2 else 'cut bread'},{'test' if k == 2 else 'train'},"
                    f"{'open' if k % 2 else 'cut'},{'jar' if k % 2 else 'bread'}")  # fmt: skip
        if k != 1:
            (raw / "gaze" / f"{name}.csv").write_text(
                "frame,x,y,type\n0,0.5,0.5,fixation\n3,0.2,0.8,saccade\n"
            )
    (raw / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    r = prepare(raw, out, flow="farneback", size=TINY_SIZE, progress=False)
    assert [c for c, _ in r.failed] == ["kitchen_1"] and "no gaze file" in r.failed[0][1]
    r = prepare(raw, out, flow="farneback", size=TINY_SIZE, progress=False, allow_missing_gaze=True)
    assert r.ok and r.prepared == ["kitchen_1"]
    data = PreparedData(out)
    assert data.classes == ["cut bread", "open jar"]
    assert data.verbs == ["cut", "open"] and data.nouns == ["bread", "jar"]
    assert [c.name for c in data.split(1, "train")] == ["kitchen_0", "kitchen_1"]
    g = np.load(out / "gaze" / "kitchen_0.npy")
    ext = _manifest(out)["kitchen_0"]["extended"]
    b = ext["before"] if ext else 0  # repeated first frames carry the first frame's gaze
    assert ext is None or ext["method"] == "repeat"
    assert g[b].tolist() == [0.5, 0.5, FIXATION] and g[0].tolist() == g[b].tolist()
    assert np.isnan(g[b + 1, 0]) and g[b + 3, 2] == 2


def test_reference_layout_without_manifest(tiny_prepared, tmp_path):
    """images_rgb/images_flow made elsewhere (no manifest, one flow frame fewer, no gaze)."""
    ref = tmp_path / "ref"
    shutil.copytree(tiny_prepared / "images_rgb", ref / "images_rgb")
    shutil.copytree(tiny_prepared / "images_flow", ref / "images_flow")
    for f in (tiny_prepared / "annotations").iterdir():
        shutil.copyfile(f, ref / f.name)
    for uv in (ref / "images_flow").glob("*/[uv]"):
        sorted(uv.iterdir())[-1].unlink()  # dense_flow writes L-1 flow frames
    data = PreparedData(ref)
    recs = data.split(1, "train")
    man = _manifest(tiny_prepared)
    assert all(r.num_frames == man[r.name]["num_frames"] == r.flow_frames + 1 for r in recs)
    from gaze_attention.data.dataset import ClipDataset

    ds = ClipDataset(data, recs, train=False, frames=24, crop=32, grid=(3, 4))
    x = ds[0]
    assert x["flow"].shape[1] == x["rgb"].shape[1] == recs[0].num_frames
    assert not np.isfinite(x["gaze_point"].numpy()).any()


def test_bad_inputs_name_the_problem(tmp_path, tiny_raw):
    with pytest.raises(PrepareError, match="neither an EGTEA"):
        prepare(tmp_path, tmp_path / "o", progress=False)
    raw = tmp_path / "raw"
    shutil.copytree(tiny_raw, raw)
    (raw / "action_annotation" / "train_split1.txt").write_text("clip-without-ids\n")
    from gaze_attention.data.egtea import AnnotationError

    with pytest.raises(AnnotationError, match=r"train_split1\.txt:1:"):
        prepare(raw, tmp_path / "o2", flow="none", progress=False)
    with pytest.raises(PrepareError, match="no split 2"):
        prepare(tiny_raw, tmp_path / "o3", splits=[2], flow="none", progress=False)
