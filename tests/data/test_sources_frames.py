"""Time-stamped gaze -> per-frame gaze: display intervals, offsets, VFR, merging, confidence."""

from __future__ import annotations

import numpy as np
import pytest

from gaze_attention.data.begaze import BLINK, FIXATION, NONE, SACCADE, aggregate_samples
from gaze_attention.data.sources import GazeSamples, to_frames
from gaze_attention.data.sources.samples import UNLABELLED, frame_index


def _expected(t_video, x, frame_times, last_dur):
    """Brute force: mean x of the samples shown during each frame's interval."""
    ends = np.append(frame_times[1:], frame_times[-1] + last_dur)
    out = np.full(len(frame_times), np.nan)
    for i, (a, b) in enumerate(zip(frame_times, ends, strict=True)):
        sel = (t_video >= a) & (t_video < b)
        if sel.any():
            out[i] = x[sel].mean()
    return out


@pytest.mark.parametrize("gaze_hz", [30, 60, 200])
@pytest.mark.parametrize("fps", [24, 25, 30])
def test_samples_land_on_the_frame_displayed_at_their_time(gaze_hz, fps):
    rng = np.random.default_rng(gaze_hz * 100 + fps)
    gaze_start, offset = 12.345, -12.0  # the gaze clock runs 12 s ahead of the video's pts
    n = int(4.0 * gaze_hz)
    t = gaze_start + np.arange(n) / gaze_hz + rng.uniform(0, 0.2 / gaze_hz, n)
    x = rng.uniform(0.1, 0.9, n)
    frame_times = 0.040 + np.arange(int(4.5 * fps)) / fps  # video pts start at 40 ms
    out = to_frames(GazeSamples(x=x, y=1 - x, t=t), frame_times, offset_s=offset)
    want = _expected(t + offset, x, frame_times, 1 / fps)
    assert out.shape == (len(frame_times), 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], want, atol=1e-6, equal_nan=True)
    assert np.isnan(out[0, 0])  # the gaze starts 0.345 s into the video: early frames have none
    assert (out[np.isnan(want), 2] == NONE).all() and (out[~np.isnan(want), 2] == FIXATION).all()
    covered = np.isfinite(want).mean()
    assert covered > 0.8 if gaze_hz >= fps else covered > 0.5


def test_variable_frame_rate_uses_each_frames_pts():
    frame_times = np.array([0.0, 0.030, 0.100, 0.110, 0.300])
    t = np.array([0.0, 0.029, 0.030, 0.099, 0.105, 0.2999, 0.31, 0.40])
    idx = frame_index(t, frame_times, last_frame_duration_s=0.05)
    assert idx.tolist() == [0, 0, 1, 1, 2, 3, 4, -1]
    out = to_frames(GazeSamples(x=np.linspace(0, 0.7, 8), y=np.zeros(8), t=t), frame_times, last_frame_duration_s=0.05)
    np.testing.assert_allclose(out[:, 0], [0.05, 0.25, 0.4, 0.5, 0.6], atol=1e-6)


def test_merge_is_begazes_and_low_confidence_and_gaps_are_dropped():
    t = np.array([0.00, 0.01, 0.02, 0.05, 0.06, 0.07, 0.15])
    x = np.array([0.2, 0.4, 0.9, 0.5, 0.5, 0.5, 1.4])
    y = np.full(7, 0.5)
    ev = np.array([FIXATION, FIXATION, SACCADE, BLINK, FIXATION, UNLABELLED, FIXATION], dtype=np.int8)
    conf = np.array([1.0, 0.9, 1.0, 1.0, 0.1, 1.0, 1.0])
    frame_times = np.arange(5) * 0.04  # 25 fps
    out = to_frames(GazeSamples(x=x, y=y, t=t, event=ev, confidence=conf), frame_times, min_confidence=0.5)
    # frame 0: two fixations + a saccade -> fixation, mean of the fixations (BeGaze's rule)
    pts, evs = aggregate_samples(np.array([0, 0, 0]), x[:3], y[:3], np.array([1, 1, 2]), 1)
    np.testing.assert_allclose(out[0, :2], pts[0])
    assert out[0, 2] == evs[0] == FIXATION and out[0, 0] == pytest.approx(0.3)
    # frame 1: a blink and an unlabelled sample (counted as fixation); the 0.1-confidence one dropped
    assert out[1, 2] == FIXATION and out[1, 0] == pytest.approx(0.5)  # tie with the blink: fixation wins
    assert np.isnan(out[2, 0]) and out[2, 2] == NONE  # a gap: no gaze, not interpolated
    assert out[3, 2] == 4 and out[3, 0] == 1.0  # off the frame: TRUNCATED, clipped (as BeGaze)
    drop_all = to_frames(GazeSamples(x=x, y=y, t=t, confidence=np.zeros(7)), frame_times, min_confidence=0.5)
    assert np.isnan(drop_all[:, 0]).all()


def test_frame_indexed_samples_keep_their_frame():
    s = GazeSamples(x=np.array([0.1, 0.3, 0.5]), y=np.array([0.1, 0.3, 0.5]), frame=np.array([0, 0, 2]))
    out = to_frames(s, num_frames=4)
    np.testing.assert_allclose(out[:, 0], [0.2, np.nan, 0.5, np.nan], equal_nan=True)
