"""Ego4D gaze (`v2/gaze/<video_uid>.csv`, Pupil Invisible) -> `GazeSamples`.

Columns: component_idx, component_timestamp_s, canonical_timestamp_s, world_index, confidence,
norm_pos_x, norm_pos_y, base_data, gaze_point_3d_*, eye_center{0,1}_3d_*, gaze_normal{0,1}_*
(only the first seven are filled). norm_pos has its origin at the bottom-left of the scene
image (Pupil's convention), so y_image = 1 - norm_pos_y.
"""

from __future__ import annotations

from pathlib import Path

from gaze_attention.data.sources._table import Table, check_monotonic, read_table
from gaze_attention.data.sources.samples import GazeSamples, GazeSourceError

HEADER = (
    "component_idx", "component_timestamp_s", "canonical_timestamp_s", "world_index", "confidence",
    "norm_pos_x", "norm_pos_y",
)  # fmt: skip
CLOCKS = ("canonical", "component")
# Pupil Player's default minimum data confidence: samples below it are unreliable.
DEFAULT_MIN_CONFIDENCE = 0.6


def is_ego4d(header: list[str]) -> bool:
    return all(c in header for c in ("canonical_timestamp_s", "norm_pos_x", "norm_pos_y"))


def read_ego4d(path: str | Path, *, clock: str = "canonical", table: Table | None = None) -> GazeSamples:
    """Read an Ego4D gaze CSV.

    clock="canonical" (default) uses `canonical_timestamp_s`, the time in the canonical video
    `v2/full_scale/<video_uid>.mp4` (the one Ego4D ships and `prepare` decodes); "component"
    uses `component_timestamp_s`, the time within the recording component `component_idx`,
    for videos cut per component.
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    table = table or read_table(path)
    if not is_ego4d(table.header):
        raise GazeSourceError(f"{table.path}:{table.header_line}: not an Ego4D gaze header")
    name = f"{clock}_timestamp_s"
    t = table.floats(name)
    check_monotonic(t, table, name)
    x = table.floats("norm_pos_x")
    y = 1.0 - table.floats("norm_pos_y")
    conf = table.floats("confidence", required=False) if table.has("confidence") else None
    return GazeSamples(
        x=x, y=y, t=t, confidence=conf, source="ego4d", path=table.path,
        clock=f"Ego4D {name} (seconds in the {clock} video)",
    )  # fmt: skip
