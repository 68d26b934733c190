"""Paired intervals and spreads over seeds: the demo's statistics (numpy only)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (normal beyond 30)."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    # Cornish-Fisher expansion around the normal quantile: < 1e-3 off beyond 30.
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Interval:
    """Mean of paired differences with its 95 % t-interval; low/high are nan below 2 pairs."""

    mean: float
    low: float
    high: float
    n: int
    diffs: tuple[float, ...] = ()
    # Set where the interval is a two-stage one (`stein_interval`): the first-stage pairs whose
    # std set its width.
    stage_one_n: int | None = None
    stage_one_sd: float | None = None

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def sd(self) -> float:
        """Sample standard deviation of the differences (nan below 2 pairs)."""
        return float(np.std(self.diffs, ddof=1)) if len(self.diffs) > 1 else math.nan

    def to_dict(self) -> dict[str, float | int | list[float]]:
        d: dict[str, float | int | list[float]] = {
            "mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "diffs": list(self.diffs)
        }  # fmt: skip
        if self.stage_one_n is not None and self.stage_one_sd is not None:
            d["stage_one_n"], d["stage_one_sd"] = self.stage_one_n, self.stage_one_sd
        return d


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of values over seeds (std 0 for one value)."""

    mean: float
    std: float
    n: int

    @property
    def half_width(self) -> float:
        """Half-width of the 95 % t-interval of the mean (0 below 2 values)."""
        return t975(self.n - 1) * self.std / math.sqrt(self.n) if self.n > 1 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def paired_interval(diffs: Sequence[float]) -> Interval:
    """Mean of paired differences with its 95 % t-interval (n = number of pairs)."""
    d = np.asarray(diffs, dtype=float)
    n = int(d.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(d.mean())
    half = t975(n - 1) * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return Interval(mean, mean - half, mean + half, n, tuple(float(x) for x in d))


def stein_interval(stage_one: Sequence[float], diffs: Sequence[float]) -> Interval:
    """Stein's (1945) two-stage 95 % interval: the mean of all `diffs`, whose first pairs are
    `stage_one`, +- t(n0 - 1) * sd(stage_one) / sqrt(N).

    Where N was chosen from the first stage's std (`stein_pairs`), this interval covers the
    mean difference 95 % of the time for normal differences whatever that std turned out to
    be, unlike a t-interval over pairs added until its width met a target (which is too short
    for the samples whose std came out low). Below 2 first-stage pairs it is `paired_interval`.
    """
    d0 = np.asarray(stage_one, dtype=float)
    d = np.asarray(diffs, dtype=float)
    if d0.size < 2 or d.size < d0.size:
        return paired_interval(diffs)
    sd0 = float(d0.std(ddof=1))
    mean = float(d.mean())
    half = t975(int(d0.size) - 1) * sd0 / math.sqrt(d.size)
    return Interval(mean, mean - half, mean + half, int(d.size), tuple(float(x) for x in d), int(d0.size), sd0)


def stein_pairs(sd: float, n0: int, half_width: float) -> int:
    """Pairs in all for a two-stage interval (`stein_interval`) of at most `half_width` after a
    first stage of `n0` pairs with std `sd`: at least n0 (below 2 first-stage pairs, n0)."""
    if n0 < 2 or sd <= 0:
        return max(n0, 0)
    return max(n0, math.ceil((t975(n0 - 1) * sd / half_width) ** 2 - 1e-9))


def spread(values: Sequence[float | None]) -> Spread:
    """`Spread` of the values that are not None."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return Spread(math.nan, math.nan, 0)
    return Spread(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size))


def pairs_needed(sd: float, half_width: float) -> int:
    """Pairs for a 95 % t-interval of `half_width` when the differences have std `sd`."""
    if sd <= 0:
        return 2
    n = 2
    while t975(n - 1) * sd / math.sqrt(n) > half_width:
        n += 1
    return n


def clip_sampling_se(correct_a: Sequence[int], correct_b: Sequence[int], labels: Sequence[int]) -> float:
    """Standard error that drawing the test clips alone gives one paired difference in mean
    class accuracy, from the per-clip correctness of the two arms (1 right, 0 wrong).

    Mean class accuracy is the average over classes of each class's accuracy, so the
    difference is a stratified mean of d = a - b per clip (d in -1, 0, 1), and its sampling
    variance is sum over classes of var_c(d) / n_c / K^2. Clips both arms get right, or both
    wrong, add nothing: the variance comes from the clips where the arms disagree.
    """
    a, b, y = (np.asarray(v) for v in (correct_a, correct_b, labels))
    if not (a.shape == b.shape == y.shape) or a.ndim != 1:
        raise ValueError(f"need three equal-length lists, got {a.shape}, {b.shape}, {y.shape}")
    d = a.astype(float) - b.astype(float)
    classes = np.unique(y)
    var = 0.0
    for c in classes:
        dc = d[y == c]
        if dc.size > 1:
            var += float(dc.var(ddof=1)) / dc.size
    return math.sqrt(var) / len(classes) if classes.size else math.nan


@dataclass(frozen=True)
class NoiseSplit:
    """A paired difference's variance over seeds split into test sampling and training.

    sd: the differences' std over pairs; test_se: root-mean-square test-sampling SE of one
    pair (`clip_sampling_se`); training: what remains, sqrt(max(0, sd^2 - test_se^2)).
    """

    sd: float
    test_se: float
    n_test_per_class: float

    @property
    def training(self) -> float:
        return math.sqrt(max(0.0, self.sd**2 - self.test_se**2))

    def sd_with(self, test_per_class: float) -> float:
        """The std a pair would have with `test_per_class` test clips per class instead."""
        return math.sqrt(self.training**2 + self.test_se**2 * self.n_test_per_class / test_per_class)


def noise_split(
    diffs: Sequence[float], test_ses: Sequence[float], n_test_per_class: float
) -> NoiseSplit:
    """`NoiseSplit` of paired differences whose per-pair test-sampling SEs are `test_ses`."""
    if len(diffs) < 2 or len(test_ses) != len(diffs):
        raise ValueError(f"need at least 2 pairs with one SE each, got {len(diffs)} and {len(test_ses)}")
    sd = float(np.std(np.asarray(diffs, dtype=float), ddof=1))
    rms = math.sqrt(float(np.mean(np.square(np.asarray(test_ses, dtype=float)))))
    return NoiseSplit(sd, rms, float(n_test_per_class))
