"""Ego-Exo4D precomputed 2-D gaze (`takes/<take>/eye_gaze/{general,personalized}_eye_gaze_2d.csv`).

The files hold the MPS gaze projected into the Aria RGB image at about 10 Hz, in pixels of the
take's frame-aligned video `frame_aligned_videos/aria0N_214-1.mp4` (1408 x 1408, upright: Ego-
Exo4D's gaze tutorial draws these x, y on the mp4 frames as they are, while it turns its own
MPS projections 90 degrees clockwise first). The documentation names the files but gives no
column table; public readers use `x`, `y` with `tracking_timestamp_us` (device time, as the
MPS 3-D file) or a frame column spelled `frame_num` or `frame_number`. Accepted: `x`, `y`
plus one of `tracking_timestamp_us`, `timestamp_us`, `timestamp_ns` (time-stamped), else
`frame_num` / `frame_number` (frame of the take's aligned video).

The mp4's frames carry no device time of their own: `take_frame_times` reads it from the
capture's `timesync.csv`, as the tutorial does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaze_attention.data.sources._table import Table, check_monotonic, read_table
from gaze_attention.data.sources.samples import GazeSamples, GazeSourceError

IMAGE_SIZE = (1408, 1408)
TIME_COLUMNS = {"tracking_timestamp_us": 1e-6, "timestamp_us": 1e-6, "timestamp_ns": 1e-9}
FRAME_COLUMNS = ("frame_num", "frame_number")


def is_egoexo4d_2d(header: list[str]) -> bool:
    return "x" in header and "y" in header and any(c in header for c in (*TIME_COLUMNS, *FRAME_COLUMNS))


def read_egoexo4d_2d(
    path: str | Path, *, image_size: tuple[int, int] = IMAGE_SIZE, table: Table | None = None
) -> GazeSamples:
    """Read a 2-D gaze CSV: pixel (u, v) -> x = (u + 0.5) / width, y = (v + 0.5) / height.

    An empty x or y is a sample without a point; a time column wins over a frame column.
    """
    table = table or read_table(path)
    if not is_egoexo4d_2d(table.header):
        raise GazeSourceError(f"{table.path}:{table.header_line}: not an Ego-Exo4D 2-D gaze header")
    w, h = image_size
    x = (table.floats("x", required=False) + 0.5) / w
    y = (table.floats("y", required=False) + 0.5) / h
    tcol = next((c for c in TIME_COLUMNS if c in table.header), None)
    if tcol is not None:
        t = table.floats(tcol) * TIME_COLUMNS[tcol]
        check_monotonic(t, table, tcol)
        return GazeSamples(
            x=x, y=y, t=t, source="egoexo4d-2d", path=table.path, clock=f"Aria device time ({tcol})"
        )
    fcol = next(c for c in FRAME_COLUMNS if c in table.header)
    f = table.floats(fcol)
    bad = np.flatnonzero((f < 0) | (f != np.round(f)))
    if len(bad):
        line = table.rows[int(bad[0])][0]
        raise GazeSourceError(f"{table.path}:{line}: {fcol} {f[bad[0]]!r} is not a frame number")
    check_monotonic(f, table, fcol)
    return GazeSamples(x=x, y=y, frame=f.astype(np.int64), source="egoexo4d-2d", path=table.path,
                       clock=f"frames of the take's aligned video ({fcol})")  # fmt: skip


def take_frame_times(timesync_csv: str | Path, start_idx: int, end_idx: int, aria: str = "aria01") -> np.ndarray:
    """[F] device time in seconds of each frame of a take's `<aria>_214-1.mp4`.

    `captures/<capture>/timesync.csv` has a column `<aria>_214-1_capture_timestamp_ns`; the
    take's frames are its rows start_idx + 1 .. end_idx - 1, with `start_idx`, `end_idx` the
    take's `timesync_start_idx` and `timesync_end_idx` in takes.json (Ego-Exo4D's gaze tutorial).
    """
    table = read_table(timesync_csv)
    col = f"{aria}_214-1_capture_timestamp_ns"
    if col not in table.header:
        raise GazeSourceError(f"{table.path}:{table.header_line}: no column {col}")
    t = table.floats(col, required=False)[start_idx + 1 : end_idx] / 1e9
    if len(t) == 0 or not np.isfinite(t).all():
        raise GazeSourceError(f"{table.path}: rows {start_idx + 1}..{end_idx - 1} of {col} are missing or empty")
    return t
