"""Frame presentation times of constant- and variable-rate videos: `gaze_attention.video.Video.timestamps`,
the one source of frame times (data/sources once had its own copy, `frame_times`)."""

from __future__ import annotations

import fractions

import numpy as np
import pytest

from gaze_attention.video import Video

av = pytest.importorskip("av")


def _write(path, times_ms):
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.time_base = s.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, ms in enumerate(times_ms):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 37) % 255, np.uint8), format="rgb24")
            f.pts, f.time_base = ms, fractions.Fraction(1, 1000)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.mark.parametrize("times_ms", [[0, 30, 100, 110, 300, 333, 350], [round(i * 40) for i in range(25)]])
def test_frame_times_are_the_pts_in_display_order(tmp_path, times_ms):
    p = _write(tmp_path / "v.mp4", times_ms)
    want = np.array(times_ms) / 1000
    np.testing.assert_allclose(Video(p).timestamps, want, atol=1e-6)
    # What the decoder yields carries the same times, frame for frame.
    np.testing.assert_allclose([f.time for f in Video(p).frames()], want, atol=1e-6)
