"""Video as it comes: one decoder for prepare, predict and visualize (start_time, truncation,
rotation, variable frame rate, files without a video stream)."""

from __future__ import annotations

import csv
import warnings
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from gaze_attention.data.prepare import decode_video, prepare
from gaze_attention.video import Video, VideoError, VideoWarning

W, H = 64, 48


def _frames(n: int, seed: int = 0) -> np.ndarray:
    """uint8 [n, H, W, 3]: a white strip on the left, a green band on top, a per-frame red level
    (so each frame is recognisable after decoding) and noise (so the bytes spread over the file)."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 40, (n, H, W, 3), dtype=np.uint8)
    out[:, :, : W // 4] = 255
    out[:, :6, :, 1] = 200
    for i in range(n):
        out[i, 20:30, 30:60, 0] = (i * 37) % 200 + 40
    return out


def write_video(path: Path, frames: np.ndarray, times_s=None, offset_s: float = 0.0, rotation: int | None = None,
                faststart: bool = False) -> Path:  # fmt: skip
    """An H.264 mp4 with frame i at offset_s + times_s[i] (default 25 fps), optionally rotated."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream("libx264", rate=50)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        s.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts = round(1000 * (offset_s + (times_s[i] if times_s is not None else i * 0.04)))
            f.time_base = Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        for k in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def own_raw(root: Path, videos: dict[str, Path]) -> Path:
    """An own-recordings folder with these videos (no gaze files: prepare with allow_missing_gaze)."""
    (root / "videos").mkdir(parents=True)
    with open(root / "labels.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["clip", "label", "split"])
        for k, (name, src) in enumerate(videos.items()):
            (root / "videos" / f"{name}{src.suffix}").write_bytes(src.read_bytes())
            out.writerow([name, f"class{k % 2}", "train"])
    return root


def _decodable(path: Path) -> int:
    n = 0
    with av.open(str(path)) as c:
        try:
            for _ in c.decode(c.streams.video[0]):
                n += 1
        except av.error.FFmpegError:
            pass
    return n


def _red(img_rgb: np.ndarray) -> int:
    return int(img_rgb[20:30, 30:60, 0].astype(np.int64).mean())


# --------------------------------------------------------------------------- start_time


def test_a_stream_that_starts_late_gives_the_same_frames_in_prepare_and_predict(tmp_path):
    from gaze_attention.engine.inference import VideoReader

    path = write_video(tmp_path / "late.mp4", _frames(30), offset_s=1.0)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.start_time and float(s.start_time * s.time_base) == pytest.approx(1.0)
    video = Video(path)
    assert video.num_frames == 30 and video.timestamps[0] == 0.0 and video.start_time == pytest.approx(1.0)
    np.testing.assert_allclose(video.timestamps, np.arange(30) * 0.04, atol=1e-6)
    whole = decode_video(path, (W, H))  # BGR
    part = decode_video(path, (W, H), 11, 20)  # prepare's seek (session frames around a clip)
    reader = VideoReader(path, (W, H), start=11, max_frames=9)  # predict's and visualize's
    streamed = [rgb for _, rgb in reader.frames()]
    assert len(part) == len(streamed) == 9
    for a, b, c in zip(whole[11:20], part, streamed, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a[..., ::-1], c)


# --------------------------------------------------------------------------- truncated


@pytest.fixture(scope="module")
def truncated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trunc")
    full = write_video(root / "full.mp4", _frames(100), faststart=True)
    cut = root / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_a_truncated_file_counts_what_decodes_and_says_so(truncated, tmp_path):
    from gaze_attention.engine.inference import VideoReader

    n = _decodable(truncated)
    assert 10 < n < 100
    video = Video(truncated)
    assert video.claimed_frames == 100 and video.num_frames == n
    assert any("claims 100 frames but only" in note for note in video.notes)
    assert len(video.read((W, H))) == n
    with pytest.warns(VideoWarning, match=f"claims 100 frames but only {n} decode"):
        reader = VideoReader(truncated, (W, H))
    assert reader.num_frames == n

    raw = own_raw(tmp_path / "raw", {"cut": truncated})
    result = prepare(raw, tmp_path / "out", flow="none", size=(W, H), progress=False, allow_missing_gaze=True)
    assert result.ok, result.summary()
    assert len(list((tmp_path / "out" / "images_rgb" / "cut").glob("*.jpg"))) == n
    assert any("cut: " in w and "truncated" in w for w in result.warnings), result.warnings


def test_predict_drops_the_incomplete_tail_window_of_a_truncated_file(truncated):
    from gaze_attention.engine.inference import WindowPolicy
    from gaze_attention.engine.predict import predict_video

    n = _decodable(truncated)
    model = _model(frames=8)
    with pytest.warns(VideoWarning):
        result = predict_video(model, truncated, ["a", "b"], size=(W, H), flow="dis")
    starts = WindowPolicy().starts(n, 8)
    assert n % 8 and starts[-1] + 8 <= n  # a tail exists and is not a window
    assert result["frames"] == n
    assert [w["start_frame"] for w in result["windows"]] == starts
    assert all(w["end_frame"] - w["start_frame"] == 7 for w in result["windows"])


def _model(frames: int):
    import gaze_attention as ga

    return ga.build_model("tiny", num_classes=2, width=0.125, frames=frames, crop=32).eval()


# --------------------------------------------------------------------------- rotation


def test_rotation_metadata_is_applied_and_said(tmp_path):
    from gaze_attention.engine.inference import VideoReader

    frames = _frames(12)
    path = write_video(tmp_path / "rot.mp4", frames, rotation=-90)  # a phone held upright
    video = Video(path)
    assert (video.width, video.height) == (H, W) and video.rotation == 270
    assert any("rotation metadata" in n and "upright" in n for n in video.notes)
    upright = np.rot90(frames, -1, axes=(1, 2))  # [12, W, H, 3]: 90 degrees clockwise
    got = np.stack(video.read())  # native size
    assert got.shape == upright.shape
    # The white strip (left in the stored frames) is on top once upright; the green band on the right.
    assert got[:, : W // 4 - 2].mean() > 220 and got[:, :, -4:, 1].mean() > 150
    assert np.abs(got.astype(int) - upright.astype(int)).mean() < 12
    with pytest.warns(VideoWarning, match="rotation metadata"):
        reader = VideoReader(path, size=(H, W))
    first = next(reader.frames())[1]
    assert first.shape == (W, H, 3) and first[: W // 4 - 2].mean() > 220

    raw = own_raw(tmp_path / "raw", {"rot": path})
    result = prepare(raw, tmp_path / "out", flow="none", size=(H, W), progress=False, allow_missing_gaze=True)
    assert result.ok, result.summary()
    jpg = cv2.imread(str(tmp_path / "out" / "images_rgb" / "rot" / "0001.jpg"))
    assert jpg.shape == (W, H, 3) and jpg[: W // 4 - 2].mean() > 220
    assert any("rot: " in w and "rotation metadata" in w for w in result.warnings)
    assert not any("aspect" in w for w in result.warnings)  # upright 48x64 stored at 48x64


# --------------------------------------------------------------------------- variable frame rate


VFR_TIMES = [i * 0.02 for i in range(60)] + [1.2 + i * 0.2 for i in range(60)]


@pytest.fixture(scope="module")
def vfr(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("vfr") / "vfr.mp4", _frames(120), times_s=VFR_TIMES)


def test_variable_frame_rate_gives_true_times_and_exact_seeks(vfr):
    from gaze_attention.engine.inference import VideoReader

    video = Video(vfr)
    assert video.num_frames == 120
    np.testing.assert_allclose(video.timestamps, VFR_TIMES, atol=1e-3)
    assert video.index_at(3.6) == 72 and video.index_at(3.59) == 71 and video.index_at(0.5) == 25
    # time-stamped samples (gaze at 30 Hz, say) to frames
    np.testing.assert_array_equal(video.indices_at(np.array([-1.0, 0.0, 0.03, 1.19, 1.3, 99.0])),
                                  [0, 0, 1, 59, 60, 119])  # fmt: skip
    assert video.end_time(119) == pytest.approx(VFR_TIMES[-1] + 1 / video.fps)
    whole = video.read()
    # visualize --start 96 --max-frames 48: frames 96.. from the right place, all 24 of them
    reader = VideoReader(vfr, (W, H), start=96, max_frames=48)
    got = list(reader.frames())
    assert reader.num_frames == 24 and len(got) == 24
    np.testing.assert_allclose(reader.timestamps, VFR_TIMES[96:], atol=1e-3)
    for (i, img), ref in zip(got, whole[96:], strict=True):
        assert abs(_red(cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)) - _red(ref)) <= 6, i
    # visualize's clip carries the same times
    from gaze_attention.viz.inputs import load_video

    clip = load_video(vfr, crop=32, use_flow=False, size=(W, H), start=96, max_frames=48)
    assert clip.num_frames == 24
    np.testing.assert_allclose(clip.times, VFR_TIMES[96:], atol=1e-3)
    np.testing.assert_allclose(clip.window(4, 2).times, VFR_TIMES[100:102], atol=1e-3)


def test_predict_window_times_follow_the_frames_timestamps(vfr):
    from gaze_attention.engine.predict import predict_video

    result = predict_video(_model(frames=24), vfr, ["a", "b"], size=(W, H), flow="dis")
    starts = [w["start_s"] for w in result["windows"]]
    np.testing.assert_allclose(starts, [0, 0.48, 0.96, 3.6, 8.4], atol=1e-3)
    assert result["windows"][2]["end_s"] == pytest.approx(1.2 + 12 * 0.2, abs=1e-3)  # frame 72 starts then


# --------------------------------------------------------------------------- no video stream


def test_a_file_without_video_is_refused_in_one_line_everywhere(tmp_path):
    from gaze_attention.engine.predict import predict_video
    from gaze_attention.viz.inputs import load_input

    audio = write_audio_only(tmp_path / "voice.mp4")
    with pytest.raises(VideoError, match=r"voice.mp4: no video stream \(streams: audio\)") as e:
        Video(audio)
    assert "\n" not in str(e.value)
    with pytest.raises(VideoError, match="no video stream"):
        predict_video(_model(frames=8), audio, ["a", "b"], size=(W, H))
    with pytest.raises(VideoError, match="no video stream"):
        load_input(audio, crop=32, use_flow=False, size=(W, H))

    raw = own_raw(tmp_path / "raw", {"voice": audio, "ok": write_video(tmp_path / "ok.mp4", _frames(10))})
    result = prepare(raw, tmp_path / "out", flow="none", size=(W, H), progress=False, allow_missing_gaze=True)
    assert result.prepared == ["ok"]
    ((clip, why),) = result.failed
    assert clip == "voice" and "no video stream" in why and "\n" not in why and "voice.mp4" in why


# --------------------------------------------------------------------------- aspect


def test_a_changed_aspect_ratio_is_said_once_per_run(tmp_path):
    videos = {f"c{i}": write_video(tmp_path / f"c{i}.mp4", _frames(8, seed=i)) for i in range(3)}
    raw = own_raw(tmp_path / "raw", videos)
    kept = prepare(raw, tmp_path / "same", flow="none", size=(32, 24), progress=False, allow_missing_gaze=True)
    assert kept.ok and not any("aspect" in w for w in kept.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        squashed = prepare(raw, tmp_path / "wide", flow="none", size=(64, 24), progress=False,
                           allow_missing_gaze=True)  # fmt: skip
    notes = [w for w in squashed.warnings if "aspect" in w]
    assert len(notes) == 1, squashed.warnings
    assert "3 clip(s)" in notes[0] and "64x48 video" in notes[0] and "--size 32x24" in notes[0]
    assert "aspect" in squashed.summary()
