"""`read_gaze`: the gaze reader for a file, chosen from its first line."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaze_attention.data import begaze
from gaze_attention.data.sources import aria, ego4d, egoexo4d
from gaze_attention.data.sources._table import first_line, read_table
from gaze_attention.data.sources.samples import GazeSamples, GazeSourceError

KNOWN = (
    "Ego4D (canonical_timestamp_s, norm_pos_x, norm_pos_y, ...)",
    "Aria MPS (tracking_timestamp_us, yaw_rads_cpf, pitch_rads_cpf, depth_m, ...)",
    "Aria MPS vergence (tracking_timestamp_us, left_yaw_rads_cpf, right_yaw_rads_cpf, pitch_rads_cpf, ...)",
    "Ego-Exo4D 2-D (tracking_timestamp_us or frame_num/frame_number, x, y)",
    "BeGaze export ('##' comments, a 'Time ...' header)",
    "own CSV (frame,x,y[,type])",
)


def detect_format(path: str | Path) -> str:
    """'ego4d' | 'aria' | 'egoexo4d-2d' | 'begaze' | 'csv'; GazeSourceError for anything else."""
    path = Path(path)
    lineno, line = first_line(path)
    if line.startswith("##") or line.split()[:1] == ["Time"]:
        return "begaze"
    header = [c.strip().lower() for c in line.split(",")]
    if ego4d.is_ego4d(header):
        return "ego4d"
    if aria.is_aria(header):
        return "aria"
    if egoexo4d.is_egoexo4d_2d(header):
        return "egoexo4d-2d"
    if header[:3] == ["frame", "x", "y"] or _numeric_row(header):
        return "csv"
    raise GazeSourceError(
        f"{path}:{lineno}: unknown gaze header {line[:80]!r}; known: " + "; ".join(KNOWN)
    )


def _numeric_row(cells: list[str]) -> bool:
    try:
        int(cells[0])
        float(cells[1])
        float(cells[2])
    except (ValueError, IndexError):
        return False
    return len(cells) in (3, 4)


def _from_raw(raw: begaze.RawSamples, source: str) -> GazeSamples:
    # As `prepare` treats these files today: malformed rows are skipped and listed, not fatal.
    note = begaze.SessionGaze(
        raw.path, np.zeros((0, 2), np.float32), np.zeros(0, np.int8),
        malformed=raw.malformed, malformed_lines=raw.malformed_lines,
    ).report()  # fmt: skip
    return GazeSamples(
        x=raw.xs, y=raw.ys, frame=raw.frames, event=raw.events.astype(np.int8), source=source,
        path=raw.path, clock="frame numbers of the file", report=note,
    )  # fmt: skip


def read_gaze(
    path: str | Path,
    *,
    clock: str = "canonical",
    camera: aria.AriaCamera | None = None,
    rotate: str = "none",
    image_size: tuple[int, int] = egoexo4d.IMAGE_SIZE,
    begaze_frame_size: tuple[int, int] = begaze.FRAME_SIZE,
) -> GazeSamples:
    """Read any known gaze file as `GazeSamples` (see docs/sources.md).

    clock: Ego4D's timestamp column ("canonical" or "component"). camera: the Aria RGB camera
    (`aria.read_calibration(...).for_image(w, h)`) that projects MPS angles to the image;
    without it Aria samples keep x, y nan (angles only). rotate: "cw90" for Aria gaze in the
    upright image. image_size: pixel size of Ego-Exo4D's 2-D gaze. In the Ego4D, Aria and
    Ego-Exo4D files a malformed row is an error naming the file and line; BeGaze and own CSVs
    keep today's rule: malformed rows are skipped and listed in `GazeSamples.report`.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "begaze":
        return _from_raw(begaze.read_begaze_samples(path, begaze_frame_size), "begaze")
    if fmt == "csv":
        return _from_raw(begaze.read_gaze_csv_samples(path), "csv")
    table = read_table(path)
    if fmt == "ego4d":
        return ego4d.read_ego4d(path, clock=clock, table=table)
    if fmt == "aria":
        s = aria.read_aria_eye_gaze(path, table=table)
        return aria.project_samples(s, camera, rotate=rotate) if camera is not None else s
    return egoexo4d.read_egoexo4d_2d(path, image_size=image_size, table=table)
