"""Split a total label budget across rounds.

Schedules are fractions per round; counts are rounded by largest remainder so
every schedule of one budget spends exactly the same total.
"""
from __future__ import annotations

import numpy as np

from acqkit.errors import ConfigError

NAMED = ("constant", "increase", "decrease")


def fractions(schedule, rounds: int) -> np.ndarray:
    """Per-round fractions for ``constant`` / ``increase`` / ``decrease`` or an explicit list."""
    if isinstance(schedule, str):
        if schedule == "constant":
            w = np.ones(rounds)
        elif schedule == "increase":
            w = np.arange(1, rounds + 1, dtype=float)
        elif schedule == "decrease":
            w = np.arange(rounds, 0, -1, dtype=float)
        else:
            parts = [p for p in schedule.replace("|", ",").split(",") if p.strip()]
            try:
                w = np.array([_number(p) for p in parts])
            except ValueError:
                raise ConfigError(
                    f"schedule {schedule!r}: expected one of {NAMED} or a list of fractions like 1/6,2/6,3/6"
                ) from None
    else:
        w = np.array([_number(p) if isinstance(p, str) else float(p) for p in schedule])
    if len(w) != rounds:
        raise ConfigError(f"schedule {schedule!r} has {len(w)} entries but the run has {rounds} rounds")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"schedule {schedule!r}: fractions must be finite, non-negative and not all zero")
    return w / w.sum()


def _number(text: str) -> float:
    text = text.strip()
    if "/" in text:
        num, den = text.split("/")
        if float(den) == 0:
            raise ConfigError(f"zero denominator in {text!r}")
        return float(num) / float(den)
    return float(text)


def per_round(total: int, schedule, rounds: int) -> list[int]:
    """Integer labels per round summing exactly to ``total`` (largest remainder)."""
    if total < 0 or total != int(total):
        raise ConfigError(f"budget must be a whole number >= 0, got {total}")
    total = int(total)
    f = fractions(schedule, rounds) * total
    counts = np.floor(f).astype(int)
    short = total - counts.sum()
    order = np.argsort(-(f - counts), kind="stable")  # ties go to the earlier round
    counts[order[:short]] += 1
    return counts.tolist()
