"""`prepare` on long recordings: segments cut by pts, gaze on its own clock, the CLI's messages.

The synthetic recording shows a bright square that holds a position for 0.4 s and then jumps;
the gaze follows the square, so a prepared frame's gaze must sit on the square of that frame.
"""

from __future__ import annotations

import fractions
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from gaze_attention.cli import main
from gaze_attention.data.begaze import FIXATION
from gaze_attention.data.prepare import PrepareError, PrepareOptions, prepare

av = pytest.importorskip("av")

W, H = 64, 48
HOLD_S = 0.4  # the square holds each position this long
POSITIONS = [(0.25, 0.30), (0.70, 0.60), (0.50, 0.25), (0.30, 0.70), (0.75, 0.35), (0.45, 0.55)]
EGO4D_HEADER = (
    "component_idx,component_timestamp_s,canonical_timestamp_s,world_index,confidence,norm_pos_x,"
    "norm_pos_y,base_data,gaze_point_3d_x,gaze_point_3d_y,gaze_point_3d_z,eye_center0_3d_x,"
    "eye_center0_3d_y,eye_center0_3d_z,gaze_normal0_x,gaze_normal0_y,gaze_normal0_z,eye_center1_3d_x,"
    "eye_center1_3d_y,eye_center1_3d_z,gaze_normal1_x,gaze_normal1_y,gaze_normal1_z"
)
ARIA_HEADER = (
    "tracking_timestamp_us,yaw_rads_cpf,pitch_rads_cpf,depth_m,yaw_low_rads_cpf,pitch_low_rads_cpf,"
    "yaw_high_rads_cpf,pitch_high_rads_cpf,session_uid"
)


def centre(t: np.ndarray, phase: int = 0) -> np.ndarray:
    """[N, 2] normalised centre of the square shown at video times t [N]."""
    k = (np.floor(np.asarray(t) / HOLD_S).astype(int) + phase) % len(POSITIONS)
    return np.asarray(POSITIONS)[k]


def frame_image(i: int, xy: np.ndarray) -> np.ndarray:
    """RGB [H, W, 3]: a background that changes every frame, the square at xy."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (30 + (i * 7) % 90, 40 + (i * 3) % 60, 50)
    cx, cy = xy[0] * W - 0.5, xy[1] * H - 0.5
    img[int(round(cy)) - 3 : int(round(cy)) + 4, int(round(cx)) - 3 : int(round(cx)) + 4] = 255
    return img


def write_video(path: Path, first: int, stop: int, fps: int, phase: int = 0) -> Path:
    """Frames first..stop-1 of the recording at `fps`, lossless H.264 (keyframe every 8 frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "yuv444p"
        s.options = {"qp": "0", "g": "8", "bf": "0", "preset": "ultrafast"}
        for k, i in enumerate(range(first, stop)):
            f = av.VideoFrame.from_ndarray(frame_image(i, centre(np.array([i / fps]), phase)[0]), format="rgb24")
            f.pts, f.time_base = k, fractions.Fraction(1, fps)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def gaze_times(duration: float, hz: float, offset: float) -> np.ndarray:
    """Gaze clock times of samples covering the video and half a second either side."""
    return offset + np.arange(-0.5, duration + 0.5, 1.0 / hz) + 0.0013


def write_ego4d(path: Path, t_gaze: np.ndarray, xy: np.ndarray, conf: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conf = np.full(len(t_gaze), 0.95) if conf is None else conf
    rows = [
        f"0,{t:.6f},{t:.6f},{int(t * 30)},{c:.3f},{x:.6f},{1 - y:.6f},base,,,,,,,,,,,,,,,"
        for t, (x, y), c in zip(t_gaze, xy, conf, strict=True)
    ]
    path.write_bytes(("\r\n".join([EGO4D_HEADER, *rows]) + "\r\n").encode())
    return path


def write_segments(raw: Path, rows: list[str], header: str = "video,start,end,label,split") -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "segments.csv").write_text("\n".join([header, *rows]) + "\n")
    return raw / "segments.csv"


def long_raw(raw: Path, fps: int = 30, seconds: float = 3.0, hz: float = 60, offset: float = 0.0,
             video: str = "rec") -> int:  # fmt: skip
    """RAW/videos/<video>.mp4 with Ego4D gaze following the square; returns the frame count."""
    n = int(round(seconds * fps))
    write_video(raw / "videos" / f"{video}.mp4", 0, n, fps)
    t = gaze_times(seconds, hz, offset)
    tv = t - offset
    shown = np.floor(tv * fps + 1e-9) / fps  # the frame each sample falls in
    write_ego4d(raw / "gaze" / f"{video}.csv", t, centre(shown))
    return n


def manifest(out: Path) -> dict[str, dict]:
    return {r["clip"]: r for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def run(raw: Path, out: Path, **kw) -> object:
    kw = {"flow": "none", "size": (W, H), "min_frames": 24, "progress": False, **kw}
    opts = PrepareOptions(**kw)
    return prepare(raw, out, options=opts)


# ----------------------------------------------------------------------------- cutting


def test_segments_equal_the_same_frames_prepared_as_separate_clips(tmp_path):
    raw, own = tmp_path / "raw", tmp_path / "own"
    long_raw(raw, fps=30)
    # [0.5, 1.5): frames 15..44; [2.0, 2.9): 60..86; [0.0, 0.3): 0..8, extended with 9..23;
    # [1.2, 2.2) overlaps the first.
    segs = [("rec", 0.5, 1.5, 15, 45), ("rec", 2.0, 2.9, 60, 87), ("rec", 0.0, 0.3, 0, 24), ("rec", 1.2, 2.2, 36, 66)]
    write_segments(raw, [f"{v},{a},{b},cls{i % 2},train" for i, (v, a, b, _, _) in enumerate(segs)])
    labels = ["clip,label"]
    for i, (_, _, _, lo, hi) in enumerate(segs):
        write_video(own / "videos" / f"c{i}.mp4", lo, hi, 30)
        labels.append(f"c{i},cls{i % 2}")
    (own / "labels.csv").write_text("\n".join(labels) + "\n")
    r1 = run(raw, tmp_path / "out_seg", flow="dis", allow_missing_gaze=True)
    r2 = run(own, tmp_path / "out_own", flow="dis", allow_missing_gaze=True)
    assert r1.ok and r2.ok, (r1.summary(), r2.summary())
    names = ["rec__0000500_0001500", "rec__0002000_0002900", "rec__0000000_0000300", "rec__0001200_0002200"]
    assert r1.prepared == names
    assert any("overlaps rec__0000500_0001500" in w for w in r1.warnings)
    for i, name in enumerate(names):
        seg_files = sorted((tmp_path / "out_seg" / "images_rgb" / name).iterdir())
        own_files = sorted((tmp_path / "out_own" / "images_rgb" / f"c{i}").iterdir())
        assert len(seg_files) == len(own_files) == max(segs[i][4] - segs[i][3], 24)
        for a, b in zip(seg_files, own_files, strict=True):
            assert a.read_bytes() == b.read_bytes(), (name, a.name)
        for uv in ("u", "v"):
            fa = sorted((tmp_path / "out_seg" / "images_flow" / name / uv).iterdir())
            fb = sorted((tmp_path / "out_own" / "images_flow" / f"c{i}" / uv).iterdir())
            assert [p.read_bytes() for p in fa] == [p.read_bytes() for p in fb]
    rec = manifest(tmp_path / "out_seg")["rec__0000000_0000300"]
    assert rec["extended"] == {"method": "session", "before": 0, "after": 15, "source_frames": 9}
    assert rec["segment"]["line"] == 4 and rec["start_frame"] == 0


def test_segments_in_frames_and_the_split_lists(tmp_path):
    raw = tmp_path / "raw"
    long_raw(raw, fps=25, seconds=2.0)
    write_segments(raw, ["rec,10,39,pour,train,take,cup", "rec,20,49,stir,test,move,spoon"],
                   "video,start,end,label,split,verb,noun")  # fmt: skip
    r = run(raw, tmp_path / "out", segments_in_frames=True)
    assert r.ok, r.summary()
    m = manifest(tmp_path / "out")
    assert m["rec__F000010_F000039"]["start_frame"] == 10 and m["rec__F000010_F000039"]["num_frames"] == 30
    ann = tmp_path / "out" / "annotations"
    assert (ann / "train_split1.txt").read_text() == "rec__F000010_F000039 1 2 1\n"
    assert (ann / "test_split1.txt").read_text() == "rec__F000020_F000049 2 1 2\n"
    assert (ann / "verb_idx.txt").read_text() == "move 1\ntake 2\n"


# ----------------------------------------------------------------------------- gaze on frames


def square_centre(jpg: Path) -> np.ndarray:
    """Normalised centre of the bright square in a prepared frame."""
    img = cv2.imread(str(jpg), cv2.IMREAD_GRAYSCALE)
    ys, xs = np.nonzero(img > 200)
    return np.array([(xs.mean() + 0.5) / W, (ys.mean() + 0.5) / H])


@pytest.mark.parametrize("fps", [24, 25, 30])
@pytest.mark.parametrize("hz", [30, 60, 200])
def test_gaze_lands_on_the_frames_it_was_recorded_on(tmp_path, fps, hz):
    raw = tmp_path / "raw"
    offset = 1.7  # the gaze clock reads 1.7 s when the video's first frame is shown
    n = long_raw(raw, fps=fps, seconds=2.0, hz=hz, offset=offset)
    write_segments(raw, ["rec,0.3,1.9,a,train"])
    r = run(raw, tmp_path / "out", gaze_offset=offset)
    assert r.ok, r.summary()
    assert any("samples kept as fixations" in line and "rec" in line for line in r.info)
    name = "rec__0000300_0001900"
    gaze = np.load(tmp_path / "out" / "gaze" / f"{name}.npy")
    first = int(np.ceil(0.3 * fps - 1e-9))
    assert len(gaze) == int(np.ceil(1.9 * fps - 1e-9)) - first <= n
    t = (first + np.arange(len(gaze))) / fps
    np.testing.assert_allclose(gaze[:, :2], centre(t), atol=1e-6)
    # The frames show the square where their gaze is.
    jpgs = sorted((tmp_path / "out" / "images_rgb" / name).iterdir())
    for k in (0, len(jpgs) // 2, len(jpgs) - 1):
        np.testing.assert_allclose(square_centre(jpgs[k]), gaze[k, :2], atol=1.0 / H)
    # Fixations while the square holds still (I-VT): frames 0.1 s or more from a jump.
    from_jump = np.minimum(t % HOLD_S, HOLD_S - t % HOLD_S)
    steady = from_jump > 0.1
    assert (gaze[steady, 2] == FIXATION).all()


def test_gaze_offset_sign_and_min_confidence(tmp_path):
    raw = tmp_path / "raw"
    long_raw(raw, fps=30, seconds=2.0, hz=60, offset=1.0)
    write_segments(raw, ["rec,0.0,1.0,a,train"])
    good = run(raw, tmp_path / "good", gaze_offset=1.0)
    wrong = run(raw, tmp_path / "wrong", gaze_offset=-1.0)
    g = np.load(tmp_path / "good" / "gaze" / "rec__0000000_0001000.npy")
    w = np.load(tmp_path / "wrong" / "gaze" / "rec__0000000_0001000.npy")
    assert good.ok and np.isfinite(g[:, 0]).all()
    np.testing.assert_allclose(g[:, :2], centre(np.arange(30) / 30), atol=1e-6)
    assert not np.isfinite(w[:, 0]).any() and any("coverage 0" in x for x in wrong.warnings)
    # Ego4D: samples below 0.6 are dropped by default, all are kept with --min-confidence 0.
    t = gaze_times(2.0, 30, 0.0)
    write_ego4d(raw / "gaze" / "rec.csv", t, centre(np.floor(t * 30 + 1e-9) / 30), conf=np.full(len(t), 0.5))
    low = run(raw, tmp_path / "low")
    kept = run(raw, tmp_path / "kept", min_confidence=0.0)
    assert not np.isfinite(np.load(tmp_path / "low" / "gaze" / "rec__0000000_0001000.npy")[:, 0]).any()
    assert np.isfinite(np.load(tmp_path / "kept" / "gaze" / "rec__0000000_0001000.npy")[:, 0]).all()
    assert low.ok and kept.ok


def test_a_type_column_wins_over_ivt(tmp_path):
    raw = tmp_path / "raw"
    long_raw(raw, fps=30, seconds=2.0)
    rows = ["frame,x,y,type"] + [f"{i},{x},{y},saccade" for i, (x, y) in enumerate(centre(np.arange(60) / 30))]
    (raw / "gaze" / "rec.csv").write_text("\n".join(rows) + "\n")
    write_segments(raw, ["rec,0.0,1.0,a,train"])
    r = run(raw, tmp_path / "out")
    g = np.load(tmp_path / "out" / "gaze" / "rec__0000000_0001000.npy")
    assert r.ok and (g[:, 2] == 2).all()  # every frame a saccade, as the file says
    assert any("0 of 60 samples kept as fixations" in line for line in r.info)


# ----------------------------------------------------------------------------- run machinery


def test_resume_skips_done_segments_and_settings_guard_the_gaze(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    long_raw(raw, fps=30, seconds=2.0)
    write_segments(raw, ["rec,0.0,0.9,a,train", "rec,1.0,1.9,b,test"])
    assert run(raw, out).ok
    # A killed run: one clip's files gone, a half-written clip under .tmp/.
    import shutil

    shutil.rmtree(out / "images_rgb" / "rec__0001000_0001900")
    (out / ".tmp" / "rec__0001000_0001900").mkdir(parents=True)
    r = run(raw, out)
    assert r.ok and r.skipped == ["rec__0000000_0000900"] and r.prepared == ["rec__0001000_0001900"]
    assert not (out / ".tmp").exists()
    with pytest.raises(PrepareError, match="other settings.*gaze_offset"):
        run(raw, out, gaze_offset=0.5)


def test_a_segment_past_the_end_fails_alone(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    long_raw(raw, fps=30, seconds=2.0)
    write_segments(raw, ["rec,0.0,0.9,a,train", "rec,5.0,6.0,a,train", "rec,1.5,2.5,b,test", "nope,0,1,a,train"])
    rc = main(["prepare", str(raw), str(out), "--flow", "none", "--size", f"{W}x{H}", "--workers", "0",
               "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1
    seg = raw / "segments.csv"
    assert f"FAILED rec__0005000_0006000: {seg}:3: segment rec__0005000_0006000 starts at 5 s, past the end" in err
    assert f"FAILED nope__0000000_0001000: {seg}:5: no video 'nope'" in err
    assert f"warning: {seg}:4: segment rec__0001500_0002500 ends at 2.5 s, past the end" in err
    m = manifest(out)
    assert sorted(m) == ["rec__0000000_0000900", "rec__0001500_0002500"]
    assert m["rec__0001500_0002500"]["source_frames"] == 15  # cut at the last frame, then extended


# ----------------------------------------------------------------------------- bad input


def _cli_error(raw: Path, out: Path, capsys, *extra: str) -> str:
    rc = main(["prepare", str(raw), str(out), "--flow", "none", "--size", f"{W}x{H}", "--workers", "0",
               "--no-progress", *extra])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), (rc, err)
    return err[0]


def test_bad_gaze_files_stop_with_file_and_line_and_lose_nothing(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    long_raw(raw, fps=30, seconds=2.0)
    write_segments(raw, ["rec,0.0,0.9,a,train", "rec,1.0,1.9,b,test"])
    assert run(raw, out).ok
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    gaze = raw / "gaze" / "rec.csv"
    good = gaze.read_bytes()

    gaze.write_text("time,gx,gy\n0.1,0.5,0.5\n")
    assert f"{gaze}:1: unknown gaze header" in _cli_error(raw, out, capsys)

    lines = good.decode().split("\r\n")
    lines[5], lines[6] = lines[6], lines[5]
    gaze.write_bytes("\r\n".join(lines).encode())
    assert f"{gaze}:7: canonical_timestamp_s goes back in time" in _cli_error(raw, out, capsys)

    gaze.write_text(ARIA_HEADER + "\n1000,0.1,0.1,1,0,0,0,0,s\n2000,nan,0.1,1,0,0,0,0,s\n")
    (raw / "calibration.json").write_text(json.dumps(aria_calibration()))
    assert f"{gaze}:3: yaw_rads_cpf is nan" in _cli_error(raw, out, capsys)

    # Nothing of the earlier run was touched.
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_aria_gaze_without_a_calibration_and_bad_segments(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    long_raw(raw, fps=30, seconds=2.0)
    (raw / "gaze" / "rec.csv").write_text(ARIA_HEADER + "\n1000,0.1,0.1,1,0,0,0,0,s\n")
    write_segments(raw, ["rec,0.0,0.9,a,train"])
    assert "needs the RGB camera's calibration" in _cli_error(raw, out, capsys)
    write_segments(raw, ["rec,0.0,0.9,a,train", "rec,0.9,0.2,a,train"])
    assert f"{raw / 'segments.csv'}:3: end 0.2 is not after start 0.9" in _cli_error(raw, out, capsys)
    other = tmp_path / "own"
    (other / "videos").mkdir(parents=True)
    (other / "labels.csv").write_text("clip,label\nc0,a\n")
    assert "--videos, --gaze and --calibration are for long recordings" in _cli_error(other, out, capsys, "--gaze", "x")


def test_vrs_without_projectaria_tools_is_one_line(tmp_path, capsys, monkeypatch):
    # A real .vrs cannot be made here; the message when projectaria_tools is missing can.
    import sys

    raw = tmp_path / "raw"
    (raw / "videos").mkdir(parents=True)
    (raw / "videos" / "rec.vrs").write_bytes(b"not a vrs")
    write_segments(raw, ["rec,0.0,0.9,a,train"])
    monkeypatch.setitem(sys.modules, "projectaria_tools", None)
    monkeypatch.setitem(sys.modules, "projectaria_tools.core", None)
    line = _cli_error(raw, tmp_path / "out", capsys)
    assert f"{raw / 'videos' / 'rec.vrs'}: reading a .vrs recording needs projectaria_tools" in line
    assert "pip install" in line


# ----------------------------------------------------------------------------- Aria MPS


def aria_calibration() -> dict:
    """An MPS online calibration of a 64 x 48 RGB camera: no distortion, turned off the device axes."""
    q = np.array([0.97, 0.12, -0.08, 0.05])
    q = [float(v) for v in q / np.linalg.norm(q)]
    cam = lambda label, p, qq, t: {  # noqa: E731
        "Label": label, "SerialNumber": "0", "Projection": {"Name": "FisheyeRadTanThinPrism", "Params": p},
        "T_Device_Camera": {"Translation": t, "UnitQuaternion": [qq[0], qq[1:]]},
    }  # fmt: skip
    return {
        "CameraCalibrations": [cam("camera-rgb", [40.0, 31.5, 23.5] + [0.0] * 12, q, [0.05, 0.01, 0.01]),
                               cam("camera-slam-left", [100.0, 320, 240] + [0.0] * 12, [1, 0, 0, 0], [0, 0, 0])],
        "ImageSizes": [[W, H], [640, 480]],
        "DeviceClassInfo": {"BuildVersion": "DVT-S"},
        "OriginSpecification": {"ChildLabel": "camera-slam-left"},
    }  # fmt: skip


def angles_for(xy: np.ndarray, calib_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CPF yaw, pitch, depth whose projection through the calibration is the normalised xy [N, 2]."""
    from gaze_attention.data.sources.aria import read_calibration

    cam = read_calibration(calib_path).for_image(W, H)
    f, cx, cy = cam.params[:3]
    du, dv = xy[:, 0] * W - 0.5 - cx, xy[:, 1] * H - 0.5 - cy
    r = np.hypot(du, dv)
    th = r / f  # the equidistant model: radius = f * theta
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(r > 0, np.sin(th) / r, 1.0 / f)
    d_cam = np.stack([du * s, dv * s, np.cos(th)], axis=1) * 1.5  # a point 1.5 m along the ray
    t_cpf_cam = np.linalg.inv(cam.t_camera_cpf)
    p = d_cam @ t_cpf_cam[:3, :3].T + t_cpf_cam[:3, 3]
    return np.arctan(p[:, 0] / p[:, 2]), np.arctan(p[:, 1] / p[:, 2]), np.linalg.norm(p, axis=1)


def aria_raw(raw: Path, n_videos: int = 1, seconds: float = 3.0, t0: float = 1234.5) -> None:
    """Long mp4s with MPS general eye gaze on the device clock (first frame at t0) and a calibration."""
    (raw / "calibration").mkdir(parents=True, exist_ok=True)
    for v in range(n_videos):
        name = f"aria{v}"
        write_video(raw / "videos" / f"{name}.mp4", 0, int(seconds * 30), 30, phase=v)
        cal = raw / "calibration" / f"{name}.jsonl"
        cal.write_text(json.dumps(aria_calibration()) + "\n")
        t = gaze_times(seconds, 100, 0.0)
        yaw, pitch, depth = angles_for(centre(np.floor(t * 30 + 1e-9) / 30, phase=v), cal)
        rows = [f"{round((tt + t0) * 1e6)},{a:.9f},{b:.9f},{d:.6f},0,0,0,0,uid"
                for tt, a, b, d in zip(t, yaw, pitch, depth, strict=True)]  # fmt: skip
        (raw / "gaze").mkdir(exist_ok=True)
        (raw / "gaze" / f"{name}.csv").write_bytes(("\r\n".join([ARIA_HEADER, *rows]) + "\r\n").encode())


def test_aria_mps_gaze_is_projected_onto_its_frames(tmp_path):
    raw = tmp_path / "raw"
    aria_raw(raw, seconds=2.0)
    write_segments(raw, ["aria0,0.2,1.8,a,train"])
    r = run(raw, tmp_path / "out", gaze_offset=1234.5)
    assert r.ok, r.summary()
    assert any("deg/s" in line for line in r.info)  # angular I-VT
    g = np.load(tmp_path / "out" / "gaze" / "aria0__0000200_0001800.npy")
    t = (6 + np.arange(len(g))) / 30
    np.testing.assert_allclose(g[:, :2], centre(t), atol=1e-5)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("source", ["ego4d", "aria"])
def test_long_recordings_prepare_train_evaluate(tmp_path, source):
    import torch

    from gaze_attention.data import PreparedData
    from gaze_attention.engine.config import load_config
    from gaze_attention.engine.evaluate import evaluate
    from gaze_attention.engine.train import train

    raw, out = tmp_path / "raw", tmp_path / "prepared"
    if source == "ego4d":
        for v in range(2):
            long_raw(raw, fps=30, seconds=3.0, hz=200, offset=0.0, video=f"uid{v}")
        videos, offset = ["uid0", "uid1"], 0.0
    else:
        aria_raw(raw, n_videos=2, seconds=3.0)
        videos, offset = ["aria0", "aria1"], 1234.5
    rows = []
    for v in videos:
        for k in range(5):
            rows.append(f"{v},{0.5 * k:.1f},{0.5 * k + 0.5:.1f},c{k % 2},{'test' if k == 4 else 'train'}")
    write_segments(raw, rows)
    result = prepare(raw, out, options=PrepareOptions(flow="dis", size=(96, 72), min_frames=8, progress=False,
                                                      gaze_offset=offset))  # fmt: skip
    assert result.ok and len(result.prepared) == 10, result.summary()
    for name in result.prepared:
        assert np.load(out / "gaze" / f"{name}.npy")[:, 2].tolist().count(FIXATION) > 0
    torch.set_num_threads(1)
    cfg = load_config("tiny", {
        "data.root": str(out), "run.out": str(tmp_path / "run"), "data.workers": 0, "optim.batch_size": 4,
        "optim.iters": 4, "optim.milestones": [1000], "optim.optimizer": "sgd", "optim.lr": 0.01,
        "optim.warmup": 0, "estimator.eps_end": None, "run.precision": "fp32", "run.channels_last": False,
        "run.tensorboard": False, "run.log_every": 1, "run.checkpoint_every": 1000,
        "model.width": 0.125, "model.frames": 8, "model.crop": 64, "model.dropout": 0.0,
    })  # fmt: skip
    trained = train(cfg, progress=False)
    assert trained.iteration == 4 and all(np.isfinite(h["loss"]) for h in trained.history)
    m = evaluate(trained.model, PreparedData(out), 1, gaze_mode="argmax", batch_size=2)
    assert m["num_clips"] == 2 and {c["name"] for c in m["clips"]} == {f"{v}__0002000_0002500" for v in videos}


def test_a_vrs_projectaria_tools_cannot_open_fails_its_segments(tmp_path, capsys):
    pytest.importorskip("projectaria_tools.core.data_provider", reason="projectaria_tools is not installed")
    raw, out = tmp_path / "raw", tmp_path / "out"
    long_raw(raw, fps=30, seconds=2.0)
    (raw / "videos" / "bad.vrs").write_bytes(b"not a vrs")
    write_segments(raw, ["rec,0.0,0.9,a,train", "bad,0.0,0.9,a,train"])
    rc = main(["prepare", str(raw), str(out), "--flow", "none", "--size", f"{W}x{H}", "--workers", "0",
               "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and f"FAILED bad__0000000_0000900: {raw / 'videos' / 'bad.vrs'}: projectaria_tools cannot open" in err
    assert list(manifest(out)) == ["rec__0000000_0000900"]


def test_vrs_frames_and_times_come_from_the_recording(tmp_path, monkeypatch):
    """The .vrs path with projectaria_tools' readers stood in for (no real .vrs can be made here):
    frame times are the recording's capture times (uneven here), not a nominal rate, and the
    recording's own calibration projects the MPS gaze."""
    from gaze_attention.data.sources import aria, vrs

    raw = tmp_path / "raw"
    fps, n = 30, 60
    device = 500.0 + np.arange(n) / fps + np.where(np.arange(n) >= 30, 0.010, 0.0)  # a 10 ms hiccup
    shown_t = np.arange(n) / fps  # the square of frame i is the one of video time i / fps
    frames = [frame_image(i, centre(shown_t[i : i + 1])[0]) for i in range(n)]
    (raw / "videos").mkdir(parents=True)
    (raw / "videos" / "rec.vrs").write_bytes(b"stand-in")
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps(aria_calibration()))
    camera = aria.read_calibration(cal).for_image(W, H)
    monkeypatch.setattr(vrs, "available", lambda: True)
    monkeypatch.setattr(vrs, "rgb_frame_times", lambda p: device.copy())
    monkeypatch.setattr(vrs, "rgb_camera", lambda p: camera)
    monkeypatch.setattr(vrs, "rgb_image_size", lambda p: (W, H))
    monkeypatch.setattr(vrs, "read_rgb_frames", lambda p, a=0, b=None: ((device[i], frames[i]) for i in range(a, b)))
    # Gaze on the device clock: 3 samples in each frame's display interval, at the frame's square.
    idx = np.repeat(np.arange(n - 1), 3)
    t = device[idx] + np.tile([0.002, 0.012, 0.022], n - 1)
    yaw, pitch, depth = angles_for(centre(shown_t[idx]), cal)
    rows = [f"{round(tt * 1e6)},{a:.9f},{b:.9f},{d:.6f},0,0,0,0,u" for tt, a, b, d in zip(t, yaw, pitch, depth, strict=True)]
    (raw / "gaze").mkdir()
    (raw / "gaze" / "rec.csv").write_text("\n".join([ARIA_HEADER, *rows]) + "\n")
    write_segments(raw, ["rec,0.5,1.505,a,train"])  # seconds from the recording's first frame
    r = run(raw, tmp_path / "out")
    assert r.ok, r.summary()
    rec = manifest(tmp_path / "out")["rec__0000500_0001505"]
    # Frame 45 starts at 1.510 s (not 1.500, as a nominal 30 fps would say): [0.5, 1.505) is 15..44.
    assert rec["start_frame"] == 15 and rec["num_frames"] == 30
    g = np.load(tmp_path / "out" / "gaze" / "rec__0000500_0001505.npy")
    np.testing.assert_allclose(g[:, :2], centre(shown_t[15:45]), atol=1e-5)
    jpgs = sorted((tmp_path / "out" / "images_rgb" / "rec__0000500_0001505").iterdir())
    np.testing.assert_allclose(square_centre(jpgs[20]), g[20, :2], atol=1.0 / H)


def test_one_gaze_offset_per_video_from_a_file(tmp_path, capsys):
    raw = tmp_path / "raw"
    long_raw(raw, fps=30, seconds=2.0, offset=3.0, video="a")
    long_raw(raw, fps=25, seconds=2.0, offset=-0.25, video="b")
    write_segments(raw, ["a,0.0,1.0,x,train", "b,0.0,1.0,x,train"])
    offsets = tmp_path / "offsets.csv"
    offsets.write_text("video,offset\na,3.0\nb,-0.25\n")
    rc = main(["prepare", str(raw), str(tmp_path / "out"), "--flow", "none", "--size", f"{W}x{H}",
               "--workers", "0", "--no-progress", "--gaze-offset", str(offsets)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    for name, fps in (("a__0000000_0001000", 30), ("b__0000000_0001000", 25)):
        g = np.load(tmp_path / "out" / "gaze" / f"{name}.npy")
        np.testing.assert_allclose(g[:, :2], centre(np.arange(fps) / fps), atol=1e-6)
    offsets.write_text("video,offset\na,3.0\n")
    assert f"{offsets}: no gaze offset for video 'b'" in _cli_error(raw, tmp_path / "out2", capsys, "--gaze-offset", str(offsets))
    offsets.write_text("a,3.0\nb,soon\n")
    assert f"{offsets}:2: expected video,offset" in _cli_error(raw, tmp_path / "out3", capsys, "--gaze-offset", str(offsets))
    assert "--gaze-offset 1.5s: neither seconds nor a readable file" in _cli_error(
        raw, tmp_path / "out4", capsys, "--gaze-offset", "1.5s"
    )


def test_ivt_thresholds_are_flags_and_printed(tmp_path, capsys):
    raw = tmp_path / "raw"
    long_raw(raw, fps=30, seconds=2.0, hz=60)
    write_segments(raw, ["rec,0.0,1.9,a,train"])
    argv = ["prepare", str(raw), "", "--flow", "none", "--size", f"{W}x{H}", "--workers", "0", "--no-progress"]
    shares = {}
    for name, extra in (("default", []), ("loose", ["--ivt-velocity-norm", "100", "--ivt-min-fixation", "0.05"])):
        argv[2] = str(tmp_path / name)
        assert main(argv + extra) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("gaze rec"))
        shares[name] = line
    assert "velocity < 0.4 normalised units/s, fixations >= 100 ms" in shares["default"]
    assert "velocity < 100 normalised units/s, fixations >= 50 ms" in shares["loose"]
    assert "(100.0 %" in shares["loose"] and "(100.0 %" not in shares["default"]
