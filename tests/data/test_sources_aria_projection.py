"""Aria gaze -> RGB pixels: our FISHEYE624 and CPF transform against projectaria_tools and analytic cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gaze_attention.data.sources.aria import (
    AriaCamera,
    camera_from_json,
    gaze_points_cpf,
    project_gaze,
    read_calibration,
)
from gaze_attention.data.sources.samples import GazeSourceError

# Distortion of the size of a real Aria RGB calibration, tangential and thin-prism terms made
# larger so that each moves the pixels by more than the tolerance.
PARAMS = [1220.0, 1430.0, 1410.0, 0.40, -0.48, 0.09, 1.1, -1.6, 0.55, 4e-3, -5e-3, 6e-3, -4e-3, 5e-3, 3e-3]


def _calibration(build="DVT-S", params=PARAMS, quat=(0.94, 0.33, 0.01, 0.02), trans=(-0.004, -0.012, -0.005)):
    q = [float(v) for v in np.array(quat) / np.linalg.norm(quat)]
    cam = lambda label, p, qq, t: {  # noqa: E731
        "Label": label, "SerialNumber": "0", "Projection": {"Name": "FisheyeRadTanThinPrism", "Params": list(p)},
        "T_Device_Camera": {"Translation": list(t), "UnitQuaternion": [qq[0], list(qq[1:])]},
    }  # fmt: skip
    return {
        "CameraCalibrations": [cam("camera-rgb", params, q, trans), cam("camera-slam-left", params, (1, 0, 0, 0), (0, 0, 0))],
        "ImuCalibrations": [],
        "DeviceClassInfo": {"BuildVersion": build, "DeviceClass": "Aria"},
        "OriginSpecification": {"ChildLabel": "camera-slam-left", "Type": "Custom"},
    }


def test_zero_distortion_is_the_equidistant_model():
    f, c = 600.0, 703.5
    cam = AriaCamera(np.array([f, c, c] + [0.0] * 12), 1408, 1408, np.eye(4), np.eye(4))
    theta = np.radians([0.0, 10.0, 30.0, 60.0])
    phi = np.radians([0.0, 45.0, 120.0, -70.0])
    pts = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1) * 2.0
    uv = cam.project(pts)
    np.testing.assert_allclose(uv[:, 0], c + f * theta * np.cos(phi), atol=1e-9)  # r_image = f * theta
    np.testing.assert_allclose(uv[:, 1], c + f * theta * np.sin(phi), atol=1e-9)
    assert np.isnan(cam.project(np.array([[0.0, 0.0, -1.0]]))).all()  # behind the camera
    # Straight ahead (yaw = pitch = 0) with the camera at the CPF lands on the principal point.
    x, y = project_gaze(np.array([0.0]), np.array([0.0]), None, cam)
    assert (x[0], y[0]) == pytest.approx(((c + 0.5) / 1408, (c + 0.5) / 1408))
    # Upright view: turned 90 degrees clockwise, a point left of centre moves above it.
    xs, ys = project_gaze(np.array([-0.2]), np.array([0.0]), None, cam)
    xr, yr = project_gaze(np.array([-0.2]), np.array([0.0]), None, cam, rotate="cw90")
    assert xr[0] == pytest.approx(1 - ys[0]) and yr[0] == pytest.approx(xs[0]) and yr[0] < 0.5


def test_gaze_point_is_the_normalised_tan_direction_at_depth():
    p = gaze_points_cpf(np.array([0.1, 0.0]), np.array([0.2, 0.0]), np.array([2.0, 0.0]))
    d = np.array([np.tan(0.1), np.tan(0.2), 1.0])
    np.testing.assert_allclose(p[0], 2.0 * d / np.linalg.norm(d))
    np.testing.assert_allclose(p[1], [0, 0, 1.0])  # depth 0 = unknown -> 1 m


def _reference():
    """projectaria_tools' calibration and mps modules; the test skips where it is not installed."""
    why = "projectaria_tools not installed (pip install projectaria-tools): reference comparison skipped"
    return pytest.importorskip("projectaria_tools.core.calibration", reason=why), pytest.importorskip(
        "projectaria_tools.core.mps", reason=why
    )


@pytest.mark.parametrize("build", ["DVT-S", "DVT-L"])
@pytest.mark.parametrize("size", [(2880, 2880), (1408, 1408)])
def test_projection_matches_projectaria_tools(tmp_path, build, size):
    pat, mps = _reference()
    doc = _calibration(build)
    path = tmp_path / "calib.json"
    path.write_text(json.dumps(doc))
    ours = read_calibration(path).for_image(*size)
    ref_dev = pat.device_calibration_from_json_string(json.dumps(doc))
    ref = ref_dev.get_camera_calib("camera-rgb")
    if size != (2880, 2880):
        ref = ref.rescale(np.array(size), 0.5, np.array([32.0, 32.0]))
    np.testing.assert_allclose(ours.t_device_cpf, ref_dev.get_transform_device_cpf().to_matrix(), atol=1e-6)
    t_cam_cpf = ref.get_transform_device_camera().inverse() @ ref_dev.get_transform_device_cpf()
    rng = np.random.default_rng(1)
    yaw, pitch = rng.uniform(-0.45, 0.45, 200), rng.uniform(-0.45, 0.45, 200)
    depth = rng.choice([0.0, 0.4, 1.0, 3.0], 200)
    x, y = project_gaze(yaw, pitch, depth, ours)
    worst = 0.0
    for i in range(200):
        p = mps.get_eyegaze_point_at_depth(float(yaw[i]), float(pitch[i]), float(depth[i] or 1.0))
        uv = ref.project_no_checks(t_cam_cpf @ p.ravel())
        worst = max(worst, abs(x[i] * size[0] - 0.5 - uv[0]), abs(y[i] * size[1] - 0.5 - uv[1]))
    assert worst < 0.01, worst  # the issue asks for 0.5 px; double precision gives far less


def test_rotation_matches_projectaria_tools_rotated_calibration():
    pat, mps = _reference()
    doc = _calibration()
    dev = pat.device_calibration_from_json_string(json.dumps(doc))
    cam = dev.get_camera_calib("camera-rgb").rescale(np.array([1408, 1408]), 0.5, np.array([32.0, 32.0]))
    rot = pat.rotate_camera_calib_cw90deg(cam)
    ours = camera_from_json(doc).for_image(1408, 1408)
    yaw, pitch = np.array([0.2, -0.3, 0.05]), np.array([-0.1, 0.25, 0.3])
    x, y = project_gaze(yaw, pitch, None, ours, rotate="cw90")
    for i in range(3):
        p = mps.get_eyegaze_point_at_depth(float(yaw[i]), float(pitch[i]), 1.0).ravel()
        uv = rot.project_no_checks(rot.get_transform_device_camera().inverse() @ dev.get_transform_device_cpf() @ p)
        assert abs(x[i] * 1408 - 0.5 - uv[0]) < 0.5 and abs(y[i] * 1408 - 0.5 - uv[1]) < 0.5


@pytest.mark.parametrize("old_format", [False, True])
def test_online_calibration_jsonl_line(tmp_path, old_format):
    doc = _calibration()
    cams = doc["CameraCalibrations"]
    line = {"tracking_timestamp_us": 5, "utc_timestamp_ns": 7, "CameraCalibrations": cams, "ImuCalibrations": []}
    if old_format:  # before June 2023 the lists were Python-style strings
        line = {"tracking_timestamp_us": "5", "utc_timestamp_ns": "7",
                "CameraCalibrations": str(cams), "ImuCalibrations": "[]"}  # fmt: skip
    else:
        line["ImageSizes"] = [[2880, 2880], [640, 480]]
    second = dict(line, CameraCalibrations=str(cams) if old_format else [dict(cams[0], Projection={
        "Name": "FisheyeRadTanThinPrism", "Params": [1000.0] + PARAMS[1:]})] + cams[1:])  # fmt: skip
    p = tmp_path / "online_calibration.jsonl"
    p.write_text(json.dumps(line) + "\n\n" + json.dumps(second) + "\n")
    with pytest.raises(GazeSourceError, match=r"online_calibration.jsonl:1: no DeviceClassInfo.BuildVersion"):
        read_calibration(p)
    cam = read_calibration(p, build="DVT-S")
    ref = camera_from_json(doc)
    np.testing.assert_allclose(cam.params, ref.params)
    np.testing.assert_allclose(cam.t_camera_cpf, ref.t_camera_cpf)
    assert (cam.width, cam.height) == (2880, 2880)
    if not old_format:
        assert read_calibration(p, line=3, build="DVT-S").params[0] == 1000.0
    with pytest.raises(GazeSourceError, match="no calibration at line 2"):
        read_calibration(p, line=2, build="DVT-S")
