"""Project Aria MPS eye gaze (`mps/eye_gaze/{general,personalized}_eye_gaze.csv`) -> RGB pixels.

MPS writes gaze as angles in the central pupil frame (CPF): direction
normalize(tan(yaw), tan(pitch), 1), the gaze point at `depth_m` along it (1 m when the depth
is 0 or missing). `T_camera_cpf = T_device_camera^-1 * T_device_cpf` carries it into the RGB
camera, whose FISHEYE624 model (focal length, principal point, radial k0..k5, tangential
p0 p1, thin-prism s0..s3) projects it to pixels. Three CSV layouts exist (as projectaria_tools'
`EyeGazeReader` reads them): the first with `tracking_timestamp_us, yaw_rads_cpf,
pitch_rads_cpf, depth_m` and low/high bounds, the same plus `session_uid`, and the vergence
layout with `left_yaw_rads_cpf, right_yaw_rads_cpf` (combined yaw derived from both).

Pixels refer to the RGB image as Aria stores it (sensor orientation; viewers turn it 90
degrees clockwise to look upright); `rotate="cw90"` gives the upright image's coordinates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gaze_attention.data.sources._table import Table, check_monotonic, read_table
from gaze_attention.data.sources.samples import GazeSamples, GazeSourceError

GENERAL = ("tracking_timestamp_us", "yaw_rads_cpf", "pitch_rads_cpf", "depth_m")
VERGENCE = ("tracking_timestamp_us", "left_yaw_rads_cpf", "right_yaw_rads_cpf", "pitch_rads_cpf", "depth_m")
DEFAULT_DEPTH_M = 1.0  # MPS: depth 0 means unknown; 1 m is arm's reach, projectaria_tools' default
ROTATIONS = ("none", "cw90")
RGB_LABEL = "camera-rgb"

# Device CAD poses T_cpf_sensor as (translation m, y axis, z axis) of the sensor in the CPF,
# per Aria build (DVT-S / DVT-L), from projectaria_tools' DeviceCadExtrinsics. They give
# T_device_cpf = T_cpf_origin^-1 for the calibration's origin sensor.
_CAD = {
    "DVT-S": {
        "camera-slam-left": ((0.069051, 0.002372, 0.009254), (0.793353, 0.0, -0.608761), (0.607927, -0.052336, 0.792266)),
        "camera-slam-right": ((-0.069051, 0.002372, 0.009254), (0.793353, 0.0, 0.608761), (-0.607927, -0.052336, 0.792266)),
        "camera-rgb": ((0.056, 0.007121, 0.012883), (1.0, 0.0, 0.0), (0.0, -0.130526, 0.991445)),
        "imu-left": ((0.064079, 0.001432, 0.003612), (-0.083456, -0.990691, -0.107544), (-0.607365, 0.136127, -0.782673)),
    },
    "DVT-L": {
        "camera-slam-left": ((0.071351, 0.002372, 0.008454), (0.793353, 0.0, -0.608761), (0.607927, -0.052336, 0.792266)),
        "camera-slam-right": ((-0.071351, 0.002372, 0.008454), (0.793353, 0.0, 0.608761), (-0.607927, -0.052336, 0.792266)),
        "camera-rgb": ((0.05825, 0.007186, 0.012096), (1.0, 0.0, 0.0), (0.0, -0.130526, 0.991445)),
        "imu-left": ((0.063225, 0.001595, 0.002873), (-0.083456, -0.990691, -0.107544), (-0.607365, 0.136127, -0.782673)),
    },
}  # fmt: skip
_IPD_M = 0.063  # projectaria_tools' fixed inter-pupillary distance for the vergence layout


def is_aria(header: list[str]) -> bool:
    return all(c in header for c in GENERAL[:3]) or all(c in header for c in VERGENCE[:4])


def layout(header: list[str]) -> str:
    """'general' (with or without session_uid) or 'vergence'."""
    return "general" if all(c in header for c in GENERAL[:3]) else "vergence"


def combined_yaw(left_yaw: np.ndarray, right_yaw: np.ndarray) -> np.ndarray:
    """Yaw of the point where the left and right gaze rays meet, seen from the CPF origin.

    With the eyes at x = +-IPD/2 the rays meet at x/z = (tan(left) + tan(right)) / 2, whatever
    the IPD (projectaria_tools' computeDepthAndCombinedGazeDirection gives the same angle).
    """
    return np.arctan((np.tan(left_yaw) + np.tan(right_yaw)) / 2.0)


def read_aria_eye_gaze(path: str | Path, *, table: Table | None = None) -> GazeSamples:
    """Read an MPS eye-gaze CSV (any of the three layouts) as angle samples.

    `x`, `y` stay nan until `project_samples` maps the angles into the RGB image; `t` is the
    device clock in seconds (`tracking_timestamp_us` / 1e6), the clock of the VRS frames.
    NaN angles are an error naming the line; an empty or 0 depth becomes 1 m.
    """
    table = table or read_table(path)
    if not is_aria(table.header):
        raise GazeSourceError(f"{table.path}:{table.header_line}: not an Aria MPS eye-gaze header")
    t = table.floats("tracking_timestamp_us") / 1e6
    check_monotonic(t, table, "tracking_timestamp_us")
    pitch = table.floats("pitch_rads_cpf")
    if layout(table.header) == "general":
        yaw = table.floats("yaw_rads_cpf")
    else:
        yaw = combined_yaw(table.floats("left_yaw_rads_cpf"), table.floats("right_yaw_rads_cpf"))
    # An empty, nan or 0 depth is unknown (the gaze point is then put at 1 m); angles must be numbers.
    depth = table.floats("depth_m", required=False, finite=False) if table.has("depth_m") else np.full(len(t), np.nan)
    n = len(t)
    return GazeSamples(
        x=np.full(n, np.nan), y=np.full(n, np.nan), t=t, yaw=yaw, pitch=pitch, depth_m=depth,
        source="aria-mps", path=table.path, clock="Aria device time (tracking_timestamp_us / 1e6)",
    )  # fmt: skip


# ----------------------------------------------------------------------------- geometry


def gaze_directions(yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """[N, 3] unit gaze directions in the CPF: normalize(tan(yaw), tan(pitch), 1)."""
    d = np.stack([np.tan(yaw), np.tan(pitch), np.ones_like(np.asarray(yaw, dtype=np.float64))], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def gaze_points_cpf(yaw: np.ndarray, pitch: np.ndarray, depth_m: np.ndarray | None = None) -> np.ndarray:
    """[N, 3] gaze points in the CPF at `depth_m` (1 m where it is nan, 0 or negative)."""
    d = np.asarray(depth_m if depth_m is not None else np.full(np.shape(yaw), np.nan), dtype=np.float64)
    d = np.where(np.isfinite(d) & (d > 0), d, DEFAULT_DEPTH_M)
    return gaze_directions(yaw, pitch) * d[:, None]


def _quat_to_matrix(w: float, x: float, y: float, z: float) -> np.ndarray:
    q = np.array([w, x, y, z], dtype=np.float64)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def _pose(r: np.ndarray, t) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, t
    return m


def cad_t_device_cpf(build: str, origin: str = "camera-slam-left") -> np.ndarray:
    """[4, 4] T_device_cpf of an Aria Gen1 build ('DVT-S' or 'DVT-L') for the calibration origin."""
    if build not in _CAD or origin not in _CAD[build]:
        known = ", ".join(f"{b}/{o}" for b in _CAD for o in _CAD[b])
        raise GazeSourceError(f"no CAD pose of the CPF for build {build!r}, origin {origin!r} (known: {known})")
    t, ay, az = (np.asarray(v, dtype=np.float64) for v in _CAD[build][origin])
    ay, az = ay / np.linalg.norm(ay), az / np.linalg.norm(az)
    r = np.stack([np.cross(ay, az), ay, az], axis=1)
    return np.linalg.inv(_pose(r, t))


@dataclass(frozen=True)
class AriaCamera:
    """The RGB camera: FISHEYE624 intrinsics, image size and the poses that place it.

    `params` [15]: f, cx, cy, k0..k5, p0, p1, s0..s3 (one focal length, as Aria's model), or
    [16] with fx, fy. Pixel coordinates have integer values at pixel centres.
    """

    params: np.ndarray
    width: int
    height: int
    t_device_camera: np.ndarray  # [4, 4]
    t_device_cpf: np.ndarray  # [4, 4]

    @property
    def t_camera_cpf(self) -> np.ndarray:
        return np.linalg.inv(self.t_device_camera) @ self.t_device_cpf

    def _split(self):
        p = np.asarray(self.params, dtype=np.float64)
        if len(p) == 15:
            fx = fy = p[0]
            rest = p[1:]
        elif len(p) == 16:
            fx, fy, rest = p[0], p[1], p[2:]
        else:
            raise GazeSourceError(f"FISHEYE624 has 15 or 16 parameters, got {len(p)}")
        return fx, fy, rest[0], rest[1], rest[2:8], rest[8:10], rest[10:14]

    def project(self, points_camera: np.ndarray) -> np.ndarray:
        """[N, 3] points in the camera frame -> [N, 2] pixels (nan behind the camera)."""
        fx, fy, cx, cy, k, p, s = self._split()
        pts = np.asarray(points_camera, dtype=np.float64)
        z = pts[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = pts[:, 0] / z, pts[:, 1] / z
        r = np.hypot(a, b)
        th = np.arctan(r)
        th2 = th * th
        poly = 1.0 + sum(k[i] * th2 ** (i + 1) for i in range(6))  # 1 + k0 th^2 + ... + k5 th^12
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(r > np.finfo(np.float64).eps, th / r, 1.0) * poly
        xr, yr = scale * a, scale * b
        rd2 = xr * xr + yr * yr
        # tangential: [(2 xr^2 + rd^2) p0 + 2 xr yr p1, (2 yr^2 + rd^2) p1 + 2 xr yr p0]
        ud = xr + (2 * xr * xr + rd2) * p[0] + 2 * xr * yr * p[1] + s[0] * rd2 + s[1] * rd2 * rd2
        vd = yr + (2 * yr * yr + rd2) * p[1] + 2 * xr * yr * p[0] + s[2] * rd2 + s[3] * rd2 * rd2
        uv = np.stack([fx * ud + cx, fy * vd + cy], axis=1)
        uv[~(z > 0)] = np.nan
        return uv

    def rescaled(self, width: int, height: int, scale: float, offset: tuple[float, float] = (0.0, 0.0)):
        """The camera of an image cropped by `offset` pixels then scaled by `scale` (pixel centres kept)."""
        p = np.asarray(self.params, dtype=np.float64).copy()
        nf = 1 if len(p) == 15 else 2
        p[:nf] *= scale
        p[nf] = (p[nf] - offset[0] + 0.5) * scale - 0.5
        p[nf + 1] = (p[nf + 1] - offset[1] + 0.5) * scale - 0.5
        return replace(self, params=p, width=width, height=height)

    def for_image(self, width: int, height: int) -> AriaCamera:
        """The camera of the RGB frames at `width` x `height`.

        Aria's factory calibration is for the 2880 x 2880 sensor; the 1408 x 1408 recordings
        are that image cropped by 32 px and halved (projectaria_tools' rescale). Other sizes
        scale uniformly.
        """
        if (width, height) == (self.width, self.height):
            return self
        if (self.width, self.height) == (2880, 2880) and (width, height) == (1408, 1408):
            return self.rescaled(width, height, 0.5, (32.0, 32.0))
        if width * self.height != height * self.width:
            raise GazeSourceError(
                f"the RGB frames are {width}x{height} but the calibration is for {self.width}x{self.height}"
            )
        return self.rescaled(width, height, width / self.width)


def rotate_cw90(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates in the stored (sensor) image -> in the image turned 90 degrees
    clockwise (upright for Aria RGB): x' = 1 - y, y' = x."""
    return 1.0 - y, x


def project_gaze(
    yaw: np.ndarray,
    pitch: np.ndarray,
    depth_m: np.ndarray | None,
    camera: AriaCamera,
    *,
    rotate: str = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """CPF angles -> normalised (x, y) in the RGB image; nan behind the camera.

    x = (u + 0.5) / width, y = (v + 0.5) / height of the projected pixel (u, v); rotate="cw90"
    returns the coordinates in the upright (90 degrees clockwise) image.
    """
    if rotate not in ROTATIONS:
        raise ValueError(f"rotate must be one of {ROTATIONS}, got {rotate!r}")
    pts = gaze_points_cpf(np.asarray(yaw, dtype=np.float64), np.asarray(pitch, dtype=np.float64), depth_m)
    cam_pts = pts @ camera.t_camera_cpf[:3, :3].T + camera.t_camera_cpf[:3, 3]  # [N, 3]
    uv = camera.project(cam_pts)
    x, y = (uv[:, 0] + 0.5) / camera.width, (uv[:, 1] + 0.5) / camera.height
    return rotate_cw90(x, y) if rotate == "cw90" else (x, y)


def project_samples(samples: GazeSamples, camera: AriaCamera, *, rotate: str = "none") -> GazeSamples:
    """Aria angle samples with x, y filled in by `project_gaze`."""
    if samples.yaw is None or samples.pitch is None:
        raise GazeSourceError(f"{samples.path}: these gaze samples have no angles to project")
    x, y = project_gaze(samples.yaw, samples.pitch, samples.depth_m, camera, rotate=rotate)
    return replace(samples, x=x, y=y)


# ----------------------------------------------------------------------------- calibration


def _cameras(doc: dict, where: str) -> list:
    cams = doc.get("CameraCalibrations", [])
    if isinstance(cams, str):
        # MPS online calibrations before June 2023 hold the list as a Python-style string.
        fixed = cams.replace("True", "true").replace("False", "false").replace("'", '"')
        try:
            cams = json.loads(fixed)
        except json.JSONDecodeError as e:
            raise GazeSourceError(f"{where}: CameraCalibrations is not a readable list ({e.msg})") from None
    return cams


def _camera_entry(doc: dict, label: str, where: str) -> tuple[int, dict]:
    cams = _cameras(doc, where)
    for i, cam in enumerate(cams):
        if cam.get("Label") == label:
            return i, cam
    labels = [c.get("Label") for c in cams]
    raise GazeSourceError(f"{where}: no camera {label!r} in CameraCalibrations (found {labels})")


def camera_from_json(
    doc: dict,
    *,
    where: str = "calibration",
    label: str = RGB_LABEL,
    build: str | None = None,
    origin: str | None = None,
    t_device_cpf: np.ndarray | None = None,
) -> AriaCamera:
    """The RGB camera of a device-calibration JSON object (the VRS's, or one line of MPS
    `online_calibration.jsonl`).

    T_device_cpf comes from `t_device_cpf` when given, else from the CAD pose of the build
    (`DeviceClassInfo.BuildVersion` or `build`) and origin sensor
    (`OriginSpecification.ChildLabel` or `origin`, default camera-slam-left).
    """
    index, cam = _camera_entry(doc, label, where)
    try:
        name = cam["Projection"]["Name"]
        params = np.asarray(cam["Projection"]["Params"], dtype=np.float64)
        tr = cam["T_Device_Camera"]["Translation"]
        qw, (qx, qy, qz) = cam["T_Device_Camera"]["UnitQuaternion"]
    except (KeyError, TypeError, ValueError) as e:
        raise GazeSourceError(f"{where}: camera {label!r} lacks a field or has a malformed one ({e})") from None
    if name not in ("FisheyeRadTanThinPrism", "Fisheye624"):
        raise GazeSourceError(f"{where}: camera {label!r} uses model {name!r}, expected FisheyeRadTanThinPrism")
    if t_device_cpf is None:
        build = build or doc.get("DeviceClassInfo", {}).get("BuildVersion")
        origin = origin or doc.get("OriginSpecification", {}).get("ChildLabel") or "camera-slam-left"
        if not build:
            raise GazeSourceError(
                f"{where}: no DeviceClassInfo.BuildVersion; give build='DVT-S' or 'DVT-L' (or t_device_cpf)"
            )
        t_device_cpf = cad_t_device_cpf(build, origin)
    # A device calibration is of the full 2880 x 2880 sensor (projectaria_tools assumes so);
    # MPS online calibrations since trajectory 1.1.0 give each camera's image size.
    size = (2880, 2880)
    if "ImageSizes" in doc:
        try:
            size = int(doc["ImageSizes"][index][0]), int(doc["ImageSizes"][index][1])
        except (IndexError, TypeError, ValueError):
            raise GazeSourceError(f"{where}: ImageSizes has no [width, height] for camera {index}") from None
    return AriaCamera(params, size[0], size[1], _pose(_quat_to_matrix(qw, qx, qy, qz), tr), np.asarray(t_device_cpf))


def read_calibration(path: str | Path, *, line: int | None = None, **options) -> AriaCamera:
    """The RGB camera from a calibration JSON file or an MPS `online_calibration.jsonl`.

    For a .jsonl file, `line` (1-based; default the first) picks the calibration. Options go
    to `camera_from_json`.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".jsonl":
        lines = [(i, s) for i, s in enumerate(text.splitlines(), start=1) if s.strip()]
        if not lines:
            raise GazeSourceError(f"{path}: no calibration lines")
        pick = [p for p in lines if p[0] == line] if line is not None else lines[:1]
        if not pick:
            raise GazeSourceError(f"{path}: no calibration at line {line}")
        lineno, text = pick[0]
        where = f"{path}:{lineno}"
    else:
        where = str(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise GazeSourceError(f"{where}: not JSON ({e.msg} at line {e.lineno})") from None
    return camera_from_json(doc, where=where, **options)


def angle_between_deg(yaw_a, pitch_a, yaw_b, pitch_b) -> np.ndarray:
    """[N] angle in degrees between gaze directions (for velocities)."""
    da, db = gaze_directions(yaw_a, pitch_a), gaze_directions(yaw_b, pitch_b)
    cos = np.clip(np.sum(da * db, axis=-1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


__all__ = [
    "AriaCamera", "angle_between_deg", "cad_t_device_cpf", "camera_from_json", "combined_yaw",
    "gaze_directions", "gaze_points_cpf", "project_gaze", "project_samples", "read_aria_eye_gaze",
    "read_calibration", "rotate_cw90",
]  # fmt: skip
