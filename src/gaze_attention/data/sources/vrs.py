"""The RGB stream of an Aria `.vrs` recording, through projectaria_tools (an optional extra)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gaze_attention.data.sources.aria import AriaCamera
from gaze_attention.data.sources.samples import GazeSourceError

RGB_STREAM = "214-1"  # camera-rgb
INSTALL_HINT = "install it with pip install 'projectaria-tools>=1.5' (or the package's [aria] extra)"


def available() -> bool:
    """Whether projectaria_tools can be imported (it reads .vrs recordings)."""
    try:
        from projectaria_tools.core import data_provider  # noqa: F401
    except ImportError:
        return False
    return True


def missing_message(path: str | Path) -> str:
    return f"{path}: reading a .vrs recording needs projectaria_tools; {INSTALL_HINT}"


def _provider(path: Path):
    try:
        from projectaria_tools.core import data_provider
    except ImportError:
        raise GazeSourceError(missing_message(path)) from None
    if not path.is_file():
        raise GazeSourceError(f"{path}: no such .vrs file")
    provider = data_provider.create_vrs_data_provider(str(path))
    if provider is None:
        raise GazeSourceError(f"{path}: projectaria_tools cannot open this .vrs file")
    return provider


def rgb_frame_times(path: str | Path) -> np.ndarray:
    """[F] device-clock capture time in seconds of every RGB frame (the clock of MPS gaze)."""
    path = Path(path)
    provider = _provider(path)  # first: it names a missing projectaria_tools
    from projectaria_tools.core.stream_id import StreamId

    sid = StreamId(RGB_STREAM)
    n = provider.get_num_data(sid)
    t = [provider.get_image_data_by_index(sid, i)[1].capture_timestamp_ns for i in range(n)]
    return np.asarray(t, dtype=np.float64) / 1e9


def read_rgb_frames(
    path: str | Path, start: int = 0, stop: int | None = None
) -> Iterator[tuple[float, np.ndarray]]:
    """(device time in seconds, RGB uint8 [H, W, 3] in sensor orientation) of RGB frames [start, stop)."""
    path = Path(path)
    provider = _provider(path)  # first: it names a missing projectaria_tools
    from projectaria_tools.core.stream_id import StreamId

    sid = StreamId(RGB_STREAM)
    n = provider.get_num_data(sid)
    for i in range(max(start, 0), n if stop is None else min(stop, n)):
        image, record = provider.get_image_data_by_index(sid, i)
        yield record.capture_timestamp_ns / 1e9, image.to_numpy_array()


def rgb_image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the recording's RGB frames as stored."""
    path = Path(path)
    provider = _provider(path)  # first: it names a missing projectaria_tools
    from projectaria_tools.core.stream_id import StreamId

    config = provider.get_image_configuration(StreamId(RGB_STREAM))
    return int(config.image_width), int(config.image_height)


def rgb_camera(path: str | Path) -> AriaCamera:
    """The RGB camera (at the stream's image size) and T_device_cpf from the .vrs calibration."""
    path = Path(path)
    provider = _provider(path)  # first: it names a missing projectaria_tools
    from projectaria_tools.core.stream_id import StreamId

    calib = provider.get_device_calibration()
    cam = calib.get_camera_calib("camera-rgb")
    if cam is None:
        raise GazeSourceError(f"{path}: the recording has no camera-rgb calibration")
    w, h = (int(v) for v in cam.get_image_size())
    params = cam.get_projection_params() if hasattr(cam, "get_projection_params") else cam.projection_params()
    base = AriaCamera(
        np.asarray(params, dtype=np.float64).ravel(), w, h,
        cam.get_transform_device_camera().to_matrix(), calib.get_transform_device_cpf().to_matrix(),
    )  # fmt: skip
    config = provider.get_image_configuration(StreamId(RGB_STREAM))
    return base.for_image(int(config.image_width), int(config.image_height))
