"""I-VT fixation detection (Salvucci & Goldberg 2000) for sources without event labels.

A sample whose gaze velocity is below the threshold is a fixation candidate; a run of
candidates lasting less than `min_fixation_s` is not kept as a fixation (it becomes NONE),
samples above the threshold are saccades. Velocity is angular (degrees per second) where the
samples have angles (Aria yaw/pitch), else in normalised image units per second. A sample
whose file gave an event type keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gaze_attention.data.begaze import FIXATION, NONE, SACCADE
from gaze_attention.data.sources.samples import GazeSamples


@dataclass(frozen=True)
class IVTConfig:
    """Thresholds of the I-VT classifier.

    30 deg/s is the usual I-VT velocity threshold (Salvucci & Goldberg 2000; Tobii's I-VT
    filter default); 100 ms the usual minimum fixation duration. 0.4 normalised units/s is
    about 30 deg/s on a scene camera with an ~80 degree field of view (Pupil Invisible's is
    82 x 82 degrees). Samples further apart than `max_gap_s` (a tracking loss) end a fixation.
    """

    velocity_deg_s: float = 30.0
    velocity_norm_s: float = 0.4
    min_fixation_s: float = 0.100
    max_gap_s: float = 0.100

    def describe(self, angular: bool) -> str:
        v = f"{self.velocity_deg_s:g} deg/s" if angular else f"{self.velocity_norm_s:g} normalised units/s"
        return f"I-VT: velocity < {v}, fixations >= {self.min_fixation_s * 1000:g} ms, gaps > {self.max_gap_s * 1000:g} ms split"


@dataclass(frozen=True)
class FixationSummary:
    samples: int
    fixation_samples: int
    labelled_samples: int  # samples whose file gave the event type
    angular: bool
    config: IVTConfig

    @property
    def share(self) -> float:
        return self.fixation_samples / self.samples if self.samples else 0.0

    def __str__(self) -> str:
        return (
            f"{self.fixation_samples} of {self.samples} samples kept as fixations ({100 * self.share:.1f} %; "
            f"{self.labelled_samples} labelled by the file) [{self.config.describe(self.angular)}]"
        )


def velocities(samples: GazeSamples) -> tuple[np.ndarray, bool]:
    """[N] speed of each sample from the previous one (the first from the next); nan where unknown.

    Degrees per second from yaw/pitch when present (angular=True), else normalised units per second.
    """
    t = np.asarray(samples.t, dtype=np.float64)
    n = len(t)
    if n < 2:
        return np.full(n, np.nan), samples.yaw is not None
    dt = np.diff(t)
    if samples.yaw is not None and samples.pitch is not None:
        from gaze_attention.data.sources.aria import angle_between_deg

        step = angle_between_deg(samples.yaw[:-1], samples.pitch[:-1], samples.yaw[1:], samples.pitch[1:])
        angular = True
    else:
        step = np.hypot(np.diff(samples.x), np.diff(samples.y))
        angular = False
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(dt > 0, step / dt, np.nan)  # [N - 1] between i and i + 1
    return np.concatenate([v[:1], v]), angular


def classify_fixations(samples: GazeSamples, config: IVTConfig | None = None) -> tuple[GazeSamples, FixationSummary]:
    """Samples with `event` filled in by I-VT where the file gave none, and the summary to print."""
    config = config or IVTConfig()
    n = len(samples)
    labelled = samples.labelled
    angular = samples.yaw is not None and samples.pitch is not None
    if labelled.all():  # BeGaze, own CSVs with a type column: nothing to detect
        fix = int((samples.event == FIXATION).sum())
        return samples, FixationSummary(n, fix, n, angular, config)
    if samples.t is None:
        raise ValueError("I-VT needs time-stamped samples")
    t = np.asarray(samples.t, dtype=np.float64)
    v, angular = velocities(samples)
    thr = config.velocity_deg_s if angular else config.velocity_norm_s
    has_point = np.isfinite(samples.yaw) & np.isfinite(samples.pitch) if angular else (
        np.isfinite(samples.x) & np.isfinite(samples.y))  # fmt: skip
    slow = has_point & np.isfinite(v) & (v < thr)
    ev = np.where(has_point & np.isfinite(v), SACCADE, NONE).astype(np.int8)
    # Runs of slow samples, split at gaps; a run's duration is first to last sample time.
    gap = np.concatenate([[True], np.diff(t) > config.max_gap_s])
    start = slow & (gap | ~np.concatenate([[False], slow[:-1]]))
    run_id = np.cumsum(start) * slow  # 0 outside runs
    if run_id.max(initial=0) > 0:
        ids = run_id[slow]
        first = np.full(ids.max() + 1, np.inf)
        last = np.full(ids.max() + 1, -np.inf)
        np.minimum.at(first, ids, t[slow])
        np.maximum.at(last, ids, t[slow])
        long_enough = (last - first) >= config.min_fixation_s - 1e-9
        ev[slow] = np.where(long_enough[ids], FIXATION, NONE)
    if samples.event is not None:
        ev = np.where(labelled, samples.event, ev).astype(np.int8)
    summary = FixationSummary(n, int((ev == FIXATION).sum()), int(labelled.sum()), angular, config)
    return replace(samples, event=ev), summary
