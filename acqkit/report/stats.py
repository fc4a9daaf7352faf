"""Mean and 95% t confidence interval over seeds (no SciPy needed)."""
from __future__ import annotations

import math

import numpy as np

# Two-sided 95% Student-t critical values for 1..30 degrees of freedom.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042]


def t_crit(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


def mean_ci(values) -> tuple[float, float]:
    """``(mean, half-width of the 95% CI)``; the half-width is NaN with fewer than 2 values."""
    x = np.asarray([v for v in values if not (isinstance(v, float) and math.isnan(v))], float)
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), float("nan")
    return float(x.mean()), float(t_crit(len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def paired_diff(values, baseline) -> tuple[float, float, int]:
    """``(mean, CI half-width, n)`` of ``values[i] - baseline[i]`` over pairs where both are known.

    Pairing by seed removes the variance the two strategies share (same warm start, same prompts),
    so a real difference shows with fewer seeds than comparing two independent intervals would need.
    """
    d = [a - b for a, b in zip(values, baseline) if not (math.isnan(a) or math.isnan(b))]
    mean, ci = mean_ci(d)
    return mean, ci, len(d)


def verdict(mean: float, ci: float, n: int) -> str:
    """``"n/a"`` without 2 pairs, ``"not significant"`` when the 95% CI covers 0, else ``"significant"``."""
    if n < 2 or math.isnan(mean) or math.isnan(ci):
        return "n/a"
    return "not significant" if mean - ci <= 0 <= mean + ci else "significant"
