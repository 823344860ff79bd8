"""Small statistics for paired benchmark results."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _stats


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of ``values``."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def paired_ci(a, b, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the paired differences ``a − b`` and its Student-t confidence interval.

    Returns ``(mean, low, high)``; with one pair the interval is ``(nan, nan)``.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size == 0:
        return math.nan, math.nan, math.nan
    m = float(d.mean())
    if d.size < 2:
        return m, math.nan, math.nan
    half = float(_stats.t.ppf(0.5 + level / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return m, m - half, m + half


def time_to_target(curve, target: float) -> float | None:
    """First cumulative wall time at which a ``[(wall_s, acc), …]`` curve reaches ``target``."""
    for wall, acc in curve:
        if acc is not None and acc >= target:
            return float(wall)
    return None
