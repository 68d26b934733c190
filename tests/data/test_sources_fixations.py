"""I-VT on synthetic traces with known fixations and saccades."""

from __future__ import annotations

import numpy as np
import pytest

from gaze_attention.data.begaze import FIXATION, NONE, SACCADE
from gaze_attention.data.sources import GazeSamples, IVTConfig, classify_fixations
from gaze_attention.data.sources.samples import UNLABELLED


def _trace(hz, angular, seed=0, seconds=20.0):
    """Fixations of 150-600 ms (small drift and noise) joined by 20-60 ms saccades of 5-20 degrees."""
    rng = np.random.default_rng(seed)
    dt = 1.0 / hz
    t, yaw, pitch, truth = [], [], [], []
    pos = np.zeros(2)
    now = 0.0
    while now < seconds:
        for _ in range(int(rng.uniform(0.15, 0.6) * hz)):
            pos = pos + rng.normal(0, np.radians(0.03), 2)
            t.append(now), yaw.append(pos[0]), pitch.append(pos[1]), truth.append(FIXATION)
            now += dt
        amp, ang = np.radians(rng.uniform(5, 20)), rng.uniform(0, 2 * np.pi)
        steps = max(2, int(rng.uniform(0.02, 0.06) * hz))
        step = amp * np.array([np.cos(ang), np.sin(ang)]) / steps
        for _ in range(steps):
            pos = np.clip(pos + step, -0.6, 0.6)
            t.append(now), yaw.append(pos[0]), pitch.append(pos[1]), truth.append(SACCADE)
            now += dt
    t, yaw, pitch = np.array(t), np.array(yaw), np.array(pitch)
    if angular:
        return GazeSamples(x=np.full(len(t), np.nan), y=np.full(len(t), np.nan), t=t, yaw=yaw, pitch=pitch), np.array(truth)
    # an ~80 degree scene camera: 1 normalised unit ~ 80 degrees
    deg = np.degrees
    return GazeSamples(x=0.5 + deg(yaw) / 80, y=0.5 + deg(pitch) / 80, t=t), np.array(truth)


def _pr(pred, truth):
    tp = np.sum((pred == FIXATION) & (truth == FIXATION))
    return tp / max(np.sum(pred == FIXATION), 1), tp / max(np.sum(truth == FIXATION), 1)


@pytest.mark.parametrize("hz, angular", [(30, False), (200, False), (60, True), (200, True)])
def test_ivt_finds_the_fixations(hz, angular):
    s, truth = _trace(hz, angular, seed=hz)
    out, summary = classify_fixations(s)
    precision, recall = _pr(out.event, truth)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    assert summary.angular is angular and summary.share == pytest.approx(np.mean(out.event == FIXATION))
    assert "kept as fixations" in str(summary) and ("deg/s" in str(summary)) is angular


def test_short_fixations_are_not_kept_and_labels_win():
    t = np.arange(40) / 100.0  # 100 Hz
    x = np.where(t < 0.05, 0.2, np.where(t < 0.10, 0.2 + (t - 0.05) * 10, 0.7))  # 50 ms still, move, still
    ev = np.full(40, UNLABELLED, dtype=np.int8)
    ev[-3:] = SACCADE  # the file says so: kept
    out, summary = classify_fixations(GazeSamples(x=x, y=np.full(40, 0.5), t=t, event=ev), IVTConfig(min_fixation_s=0.1))
    assert (out.event[:5] == NONE).all()  # 50 ms: too short for a fixation
    assert (out.event[6:10] == SACCADE).all()
    assert (out.event[11:-3] == FIXATION).all() and (out.event[-3:] == SACCADE).all()
    assert summary.labelled_samples == 3
    relaxed, _ = classify_fixations(GazeSamples(x=x, y=np.full(40, 0.5), t=t), IVTConfig(min_fixation_s=0.03))
    assert (relaxed.event[1:5] == FIXATION).all()
