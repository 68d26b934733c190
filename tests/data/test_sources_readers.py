"""Readers of Ego4D, Aria MPS and Ego-Exo4D gaze files, header detection, bad-input messages."""

from __future__ import annotations

import numpy as np
import pytest

from gaze_attention.data.begaze import GazeFormatError
from gaze_attention.data.sources import GazeSourceError, read_gaze
from gaze_attention.data.sources.aria import combined_yaw
from gaze_attention.data.sources.detect import detect_format

EGO4D_HEADER = (
    "component_idx,component_timestamp_s,canonical_timestamp_s,world_index,confidence,norm_pos_x,"
    "norm_pos_y,base_data,gaze_point_3d_x,gaze_point_3d_y,gaze_point_3d_z,eye_center0_3d_x,"
    "eye_center0_3d_y,eye_center0_3d_z,gaze_normal0_x,gaze_normal0_y,gaze_normal0_z,eye_center1_3d_x,"
    "eye_center1_3d_y,eye_center1_3d_z,gaze_normal1_x,gaze_normal1_y,gaze_normal1_z"
)
ARIA_V1 = "tracking_timestamp_us,yaw_rads_cpf,pitch_rads_cpf,depth_m,yaw_low_rads_cpf,pitch_low_rads_cpf,yaw_high_rads_cpf,pitch_high_rads_cpf"
ARIA_V2 = ARIA_V1 + ",session_uid"
ARIA_VERGENCE = (
    "tracking_timestamp_us,left_yaw_rads_cpf,right_yaw_rads_cpf,pitch_rads_cpf,depth_m,left_yaw_low_rads_cpf,"
    "right_yaw_low_rads_cpf,pitch_low_rads_cpf,left_yaw_high_rads_cpf,right_yaw_high_rads_cpf,pitch_high_rads_cpf,"
    "tx_left_eye_cpf,ty_left_eye_cpf,tz_left_eye_cpf,tx_right_eye_cpf,ty_right_eye_cpf,tz_right_eye_cpf,session_uid"
)


def _write(path, lines, crlf=True, bom=False):
    text = ("\r\n" if crlf else "\n").join(lines) + "\r\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def test_ego4d_y_is_flipped_and_the_clock_is_chosen(tmp_path):
    rows = [
        f"0,{10 + i * 0.005:.3f},{100 + i * 0.005:.3f},{i // 6},{c},{x},{y},,,,,,,,,,,,,,,,"
        for i, (c, x, y) in enumerate([(1.0, 0.25, 0.9), (0.3, 0.5, 0.5), (0.99, 0.75, 0.1)])
    ]
    p = _write(tmp_path / "uid.csv", [EGO4D_HEADER, *rows], bom=True)
    assert detect_format(p) == "ego4d"
    s = read_gaze(p)
    np.testing.assert_allclose(s.y, [0.1, 0.5, 0.9])  # norm_pos origin bottom-left
    np.testing.assert_allclose(s.x, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(s.t, [100.0, 100.005, 100.01])
    np.testing.assert_allclose(s.confidence, [1.0, 0.3, 0.99])
    np.testing.assert_allclose(read_gaze(p, clock="component").t, [10.0, 10.005, 10.01])


def _aria_rows(n=5):
    rng = np.random.default_rng(0)
    yaw, pitch = rng.uniform(-0.3, 0.3, n), rng.uniform(-0.3, 0.3, n)
    return yaw, pitch, [1000 + 2000 * i for i in range(n)]


@pytest.mark.parametrize("header", [ARIA_V1, ARIA_V2])
def test_aria_general_layouts(tmp_path, header):
    yaw, pitch, ts = _aria_rows()
    extra = ",a1b2" if "session_uid" in header else ""
    rows = [f"{t},{a:.6f},{b:.6f},{1.5 if i % 2 else 0},{a - .1:.6f},{b - .1:.6f},{a + .1:.6f},{b + .1:.6f}{extra}"
            for i, (t, a, b) in enumerate(zip(ts, yaw, pitch, strict=True))]  # fmt: skip
    p = _write(tmp_path / "general_eye_gaze.csv", [header, *rows])
    s = read_gaze(p)
    np.testing.assert_allclose(s.t, np.array(ts) / 1e6)
    np.testing.assert_allclose(s.yaw, yaw, atol=1e-6)
    np.testing.assert_allclose(s.pitch, pitch, atol=1e-6)
    assert np.isnan(s.x).all()  # no camera given: angles only
    mps = pytest.importorskip("projectaria_tools.core.mps", reason="projectaria_tools not installed")
    ref = mps.read_eyegaze(str(p))
    np.testing.assert_allclose([g.yaw for g in ref], s.yaw, atol=1e-6)
    np.testing.assert_allclose([g.depth for g in ref], s.depth_m)


def test_aria_vergence_layout_combines_left_and_right_yaw(tmp_path):
    left, right, ts = _aria_rows()
    right = left + 0.05
    pitch = np.linspace(-0.2, 0.2, len(ts))
    rows = [f"{t},{a:.7f},{b:.7f},{c:.7f},0.9,0,0,0,0,0,0,0.0315,0,0,-0.0315,0,0,uid,extra"
            for t, a, b, c in zip(ts, left, right, pitch, strict=True)]  # fmt: skip
    p = _write(tmp_path / "personalized_eye_gaze.csv", [ARIA_VERGENCE + ",extra_column", *rows])
    s = read_gaze(p)
    np.testing.assert_allclose(s.yaw, combined_yaw(left, right), atol=1e-6)
    assert not np.allclose(s.yaw, left, atol=1e-3)
    mps = pytest.importorskip("projectaria_tools.core.mps", reason="projectaria_tools not installed")
    for a, b, c, y in zip(left, right, pitch, s.yaw, strict=True):
        _, ref_yaw, _ = mps.compute_depth_and_combined_gaze_direction(float(a), float(b), float(c))
        assert y == pytest.approx(ref_yaw, abs=1e-5)


@pytest.mark.parametrize("col", ["frame_num", "frame_number"])
def test_egoexo4d_2d_by_frame(tmp_path, col):
    p = _write(tmp_path / "general_eye_gaze_2d.csv", [f"{col},x,y,extra", "0,703.5,0,a", "1,,,b", "3,1407.5,351.5,c"])
    s = read_gaze(p)
    assert s.frame.tolist() == [0, 1, 3] and s.t is None
    np.testing.assert_allclose(s.x, [0.5, np.nan, 1.0], equal_nan=True)
    np.testing.assert_allclose(s.y, [0.5 / 1408, np.nan, 0.25], equal_nan=True)


def test_egoexo4d_2d_by_time(tmp_path):
    p = _write(tmp_path / "g.csv", ["tracking_timestamp_us,x,y", "1000000,100,200", "1100000,110,210"], crlf=False)
    s = read_gaze(p)
    np.testing.assert_allclose(s.t, [1.0, 1.1])


def test_own_csv_and_begaze_are_detected(tmp_path):
    own = _write(tmp_path / "clip.csv", ["frame,x,y,type", "0,0.5,0.5,fixation", "2,0.2,0.2,saccade"])
    s = read_gaze(own)
    assert detect_format(own) == "csv" and s.frame.tolist() == [0, 2] and s.event.tolist() == [1, 2]
    bg = _write(tmp_path / "s.txt", ["## [BeGaze]", "## Number of Samples:\t2", "Time Type Trial L R Frame Event",
                                     "1 SMP 1 640 480 3 Fixation", "2 SMP 1 0 0 4 Saccade"])  # fmt: skip
    g = read_gaze(bg)
    assert detect_format(bg) == "begaze" and g.frame.tolist() == [3, 4]
    np.testing.assert_allclose(g.x, [0.5, 0.0])


@pytest.mark.parametrize(
    "lines, needle",
    [
        (["time,gx,gy", "1,2,3"], ":1: unknown gaze header 'time,gx,gy'; known: Ego4D"),
        ([ARIA_V1, "2000,0.1,0.1,1,0,0,0,0", "1000,0.1,0.1,1,0,0,0,0"], ":3: tracking_timestamp_us goes back in time"),
        ([ARIA_V1, "1000,0.1,0.1,1,0,0,0,0", "2000,nan,0.1,1,0,0,0,0"], ":3: yaw_rads_cpf is nan (not a finite number)"),
        ([ARIA_V1, "1000,0.1,,1,0,0,0,0"], ":2: column pitch_rads_cpf is empty"),
        ([EGO4D_HEADER, "0,1,1,0,1,0.5,abc"], ":2: norm_pos_y 'abc' is not a number"),
    ],
)
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, lines, needle):
    p = _write(tmp_path / "bad.csv", lines)
    with pytest.raises(GazeSourceError) as e:
        read_gaze(p)
    msg = str(e.value)
    assert isinstance(e.value, GazeFormatError) and "\n" not in msg
    assert msg.startswith(str(p)) and needle in msg, msg


def test_egoexo4d_take_frame_times_come_from_timesync(tmp_path):
    from gaze_attention.data.sources.egoexo4d import take_frame_times

    rows = ["cam01_capture_timestamp_ns,aria01_214-1_capture_timestamp_ns"]
    rows += [f"{i},{1_000_000_000 + i * 33_333_333}" for i in range(10)]
    p = _write(tmp_path / "timesync.csv", rows)
    t = take_frame_times(p, 2, 7)
    np.testing.assert_allclose(t, 1.0 + np.arange(3, 7) * 0.033333333)
    with pytest.raises(GazeSourceError, match="no column aria02_214-1_capture_timestamp_ns"):
        take_frame_times(p, 2, 7, aria="aria02")


def test_aria_file_to_frames_end_to_end(tmp_path):
    """MPS CSV at 100 Hz -> projected, I-VT labelled -> the per-frame array of a 30 fps VRS."""
    from gaze_attention.data.sources import classify_fixations, to_frames
    from gaze_attention.data.sources.aria import AriaCamera

    cam = AriaCamera(np.array([500.0, 703.5, 703.5] + [0.0] * 12), 1408, 1408, np.eye(4), np.eye(4))
    t_us = 5_000_000 + np.arange(100) * 10_000  # 1 s of gaze
    yaw = np.where(np.arange(100) < 50, -0.2, 0.2)  # one fixation, a jump, another fixation
    rows = [f"{t},{a},0.0,0,0,0,0,0,uid" for t, a in zip(t_us, yaw, strict=True)]
    p = _write(tmp_path / "general_eye_gaze.csv", [ARIA_V2, *rows])
    samples, summary = classify_fixations(read_gaze(p, camera=cam))
    assert summary.angular and summary.fixation_samples == 99  # the sample reached by the jump is a saccade
    assert samples.event[50] == 2
    frame_times = 5.0 + np.arange(30) / 30  # device time of each RGB frame
    out = to_frames(samples, frame_times)
    assert out.shape == (30, 3)
    x_left = (703.5 + 500 * np.arctan(np.tan(0.2)) * -1 + 0.5) / 1408
    assert out[2, 0] == pytest.approx(x_left, abs=1e-6) and out[2, 1] == pytest.approx(0.5, abs=1e-6)
    assert out[25, 0] == pytest.approx(1 - x_left, abs=1e-6)
    assert (out[:, 2] == 1).sum() >= 28
    up = to_frames(classify_fixations(read_gaze(p, camera=cam, rotate="cw90"))[0], frame_times)
    np.testing.assert_allclose(up[2, :2], [1 - out[2, 1], out[2, 0]], atol=1e-6)


def test_malformed_rows_of_own_csvs_are_skipped_and_listed_as_today(tmp_path):
    p = _write(tmp_path / "clip.csv", ["frame,x,y", "0,0.5,0.5", "1,0.5", "2,0.1,0.1"])
    s = read_gaze(p)
    assert s.frame.tolist() == [0, 2]
    assert s.report == f"{p}: 1 malformed row(s) skipped: {p}:3: 2 fields, expected frame,x,y[,type]"


def test_utf16_begaze_is_detected(tmp_path):
    text = "## [BeGaze]\r\nTime Type Trial L R Frame Event\r\n1 SMP 1 640 480 3 Fixation\r\n"
    p = tmp_path / "s.txt"
    p.write_bytes(text.encode("utf-16-le"))  # no byte-order mark
    assert detect_format(p) == "begaze" and read_gaze(p).frame.tolist() == [3]


def test_aria_depth_nan_is_unknown_not_an_error(tmp_path):
    p = _write(tmp_path / "g.csv", [ARIA_V1, "1000,0.1,0.1,nan,0,0,0,0", "2000,0.1,0.1,,0,0,0,0"])
    assert np.isnan(read_gaze(p).depth_m).all()


def test_ego4d_documented_sample_rows(tmp_path):
    """The first rows of Ego4D's own sample (its gaze documentation page), empty columns and all."""
    rows = [
        "0,0.0,0.0,10583.0,1.0,0.4422956915462719,0.440328527379919,,,,,,,,,,,,,,,,",
        "0,0.004056999999988875,0.004056999999988875,10583.0,1.0,0.4444741922266343,0.4417514942310474,,,,,,,,,,,,,,,,",
        "0,0.008062999999992826,0.008062999999992826,10583.0,1.0,0.4420773281770594,0.4421598646375868,,,,,,,,,,,,,,,,",
    ]
    s = read_gaze(_write(tmp_path / "uid.csv", [EGO4D_HEADER, *rows], crlf=False))
    np.testing.assert_allclose(s.t, [0.0, 0.004057, 0.008063], atol=1e-9)
    np.testing.assert_allclose(s.y, 1 - np.array([0.440328527379919, 0.4417514942310474, 0.4421598646375868]))
