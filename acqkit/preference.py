"""Gold preferences from gold rewards (Bradley-Terry), as in SPEC.md."""
from __future__ import annotations

import numpy as np


def bradley_terry(r_a: np.ndarray, r_b: np.ndarray, tau: float) -> np.ndarray:
    """``p(a > b) = sigmoid((R_a - R_b) / tau)``; ``tau = 0`` gives the argmax; ties give 0.5."""
    d = np.asarray(r_a, float) - np.asarray(r_b, float)
    if tau == 0:
        return np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))
    return 0.5 * (1.0 + np.tanh(d / (2.0 * tau)))  # numerically safe sigmoid


def hard_labels(p: np.ndarray, rng: np.random.Generator, r_a=None, r_b=None) -> np.ndarray:
    """Draw a hard label from ``p``; exact ties in gold reward stay at 0.5."""
    p = np.asarray(p, float)
    draw = (rng.random(p.shape) < p).astype(float)
    if r_a is not None:
        draw = np.where(np.asarray(r_a) == np.asarray(r_b), 0.5, draw)
    return draw
