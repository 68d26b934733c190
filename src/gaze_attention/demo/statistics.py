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

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, float | int | list[float]]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n, "diffs": list(self.diffs)}


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
