"""Presentation times of every frame of a video file, for mapping time-stamped gaze to frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaze_attention.data.sources.samples import GazeSourceError


def frame_times(path: str | Path, *, decode: bool = False) -> np.ndarray:
    """[F] pts * time_base in seconds of each frame, in display order (variable rates kept).

    By default the packets are only demuxed and their pts sorted (display order), which reads
    a long video in seconds; decode=True decodes every frame and takes the decoder's pts,
    for files whose packets lack them. Times are as stored: a stream whose first pts is not 0
    keeps that offset (Ego4D's and Ego-Exo4D's mp4s start at 0).
    """
    import av

    path = Path(path)
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise GazeSourceError(f"{path}: no video stream")
        stream = container.streams.video[0]
        tb = stream.time_base
        if decode:
            pts = [f.pts for f in container.decode(stream) if f.pts is not None]
        else:
            pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0)
    if not pts:
        raise GazeSourceError(f"{path}: no frame with a presentation time")
    t = np.asarray(pts, dtype=np.float64) * float(tb)
    if np.any(np.diff(t) <= 0):
        k = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise GazeSourceError(f"{path}: frame {k} has the same or an earlier pts than frame {k - 1}")
    return t
