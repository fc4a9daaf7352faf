"""Statistics over seeds: mean and 95% t-interval, paired differences, power and verdicts.

A comparison with 3 seeds rarely reaches significance, and "not significant" alone does not say
whether the strategies are alike or the test was too weak to tell. So each paired difference also
gets its minimum detectable effect (the smallest true difference a two-sided paired t-test at
alpha 0.05 finds with 80% power, from the observed SD of the differences) and the seeds needed
to detect the observed difference; several strategies against one baseline are Holm-corrected.
Power uses scipy's noncentral t, the exact distribution of the t statistic under an effect.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy import stats as sps

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 100_000  # seeds_needed beyond this is reported as infinite: no experiment will run it

# Two-sided 95% Student-t critical values for 1..30 degrees of freedom.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042]


def t_crit(df: int) -> float:
    return _T975[df - 1] if 1 <= df <= len(_T975) else 1.96


def _known(values) -> np.ndarray:
    return np.asarray([v for v in values if not (isinstance(v, float) and math.isnan(v))], float)


def mean_ci(values) -> tuple[float, float]:
    """``(mean, half-width of the 95% CI)``; the half-width is NaN with fewer than 2 values."""
    x = _known(values)
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), float("nan")
    if (x == x[0]).all():  # identical seeds: exactly no spread (numpy's mean of six equal floats can miss by an ulp)
        return float(x[0]), 0.0
    return float(x.mean()), float(t_crit(len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def differences(values, baseline) -> list[float]:
    """``values[i] - baseline[i]`` over the pairs where both are known."""
    return [a - b for a, b in zip(values, baseline) if not (math.isnan(a) or math.isnan(b))]


def paired_diff(values, baseline) -> tuple[float, float, int]:
    """``(mean, CI half-width, n)`` of ``values[i] - baseline[i]`` over pairs where both are known.

    Pairing by seed removes the variance the two strategies share (same warm start, same prompts),
    so a real difference shows with fewer seeds than comparing two independent intervals would need.
    """
    d = differences(values, baseline)
    mean, ci = mean_ci(d)
    return mean, ci, len(d)


def sd(values) -> float:
    """Sample standard deviation (NaN with fewer than 2 values)."""
    x = _known(values)
    if len(x) < 2:
        return float("nan")
    return 0.0 if (x == x[0]).all() else float(x.std(ddof=1))


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t-test with ``n`` pairs when the true mean difference is ``effect``."""
    if n < 2 or not sd > 0:
        return float("nan")
    df, nc = n - 1, abs(effect) / sd * math.sqrt(n)
    crit = sps.t.ppf(1 - alpha / 2, df)
    upper, lower = sps.nct.sf(crit, df, nc), sps.nct.cdf(-crit, df, nc)
    # far in the tail scipy can return NaN instead of an underflow to 0 (the wrong-sign tail)
    lower = 0.0 if math.isnan(lower) else lower
    upper = (1.0 if nc > crit else 0.0) if math.isnan(upper) else upper
    return float(min(1.0, upper + lower))


def mde(sd: float, n: int, target: float = POWER, alpha: float = ALPHA) -> float:
    """Minimum detectable effect: the true difference found with power ``target`` by ``n`` pairs of this SD."""
    if n < 2 or not sd > 0 or math.isnan(sd):
        return float("nan")
    hi = sd
    while power(hi, sd, n, alpha) < target:  # power rises with the effect: bracket, then solve
        hi *= 2
    return float(optimize.brentq(lambda e: power(e, sd, n, alpha) - target, 0.0, hi, xtol=1e-10 * sd))


def seeds_needed(effect: float, sd: float, target: float = POWER, alpha: float = ALPHA) -> float:
    """Fewest pairs (seeds) for power ``target`` at true difference ``effect``; inf if beyond reach.

    NaN when the SD is unknown or zero (no variance: nothing to plan from).
    """
    if math.isnan(effect) or math.isnan(sd) or not sd > 0:
        return float("nan")
    if effect == 0:
        return float("inf")
    lo, hi = 2, 2
    while power(effect, sd, hi, alpha) < target:  # power rises with n: double, then bisect
        if hi >= MAX_SEEDS:
            return float("inf")
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if power(effect, sd, mid, alpha) < target else (lo, mid)
    return float(hi)


def p_value(mean: float, sd: float, n: int) -> float:
    """Two-sided paired t-test p-value (NaN with fewer than 2 pairs or zero SD)."""
    if n < 2 or math.isnan(mean) or not sd > 0:
        return float("nan")
    return float(2 * sps.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error); NaNs stay NaN and are not counted."""
    p = np.asarray(pvalues, float)
    out = np.full(len(p), np.nan)
    known = np.flatnonzero(~np.isnan(p))
    m, running = len(known), 0.0
    for rank, i in enumerate(known[np.argsort(p[known], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def verdict(mean: float, ci: float, n: int) -> str:
    """``"n/a"`` without 2 pairs, ``"not significant"`` when the 95% CI covers 0, else ``"significant"``."""
    if n < 2 or math.isnan(mean) or math.isnan(ci):
        return "n/a"
    return "not significant" if mean - ci <= 0 <= mean + ci else "significant"


CHANCE = 0.5  # a coin flip's agreement with gold


def versus_chance(values, chance: float = CHANCE, alpha: float = ALPHA) -> str:
    """Is a labeler's agreement with gold above a coin flip's? ``above``, ``below``, ``not distinguishable``.

    A label is money; a labeler whose agreement is indistinguishable from 0.5 sold coin flips. One-sample
    two-sided t-test over seeds against ``chance`` (the 95% interval excludes 0.5 exactly when p < 0.05);
    with zero spread every seed agrees, so the side of 0.5 decides. ``""`` with no value (round 0).
    """
    x = _known(values)
    if len(x) == 0:
        return ""
    if len(x) < 2:
        return "one seed, no test"
    mean, spread = float(x.mean()), sd(x)
    if not spread > 0:
        return "above" if mean > chance else "below" if mean < chance else "not distinguishable"
    if p_value(mean - chance, spread, len(x)) >= alpha:
        return "not distinguishable"
    return "above" if mean > chance else "below"


def verdict_words(mean: float, sd: float, n: int, p_adjusted: float, mde_: float, fmt: str = "{:.3f}",
                  alpha: float = ALPHA) -> str:
    """``better``, ``worse`` or ``no difference larger than X`` (X = the MDE); plain words when no test exists."""
    if n == 0 or math.isnan(mean):
        return "n/a: no paired seeds"
    if n < 2:
        return "n/a: one seed, no test"
    if not sd > 0:
        return "identical on every seed" if mean == 0 else "same difference on every seed (SD 0, no test)"
    if p_adjusted < alpha:
        return "better" if mean > 0 else "worse"
    return f"no difference larger than {fmt.format(mde_)}"
