"""``flip``: label-noise injection, another labeler's answers with a known share reversed.

``flip(labeler=gold, rate=0.2, seed=0)`` asks the inner labeler, then reverses ``p -> 1 - p`` on
exactly ``round(rate * n)`` of the ``n`` decided answers it got back (``p != 0.5``: a tie has no
direction to reverse), drawn by a generator seeded from ``seed`` and the label stage's own seeded
generator, so a run flips the same pairs every time. A reversed answer's ``source`` ends with
``+flipped``; the ledger keeps it and labels.jsonl records it as ``flipped``, which is how
``acqkit report`` scores a refiner's noise detection (precision and recall of the pairs it smoothed).

It is paid exactly when the inner labeler is, and files its answers in the ledger under its own
spec (``flip`` with its options), never under the inner labeler's: a noisy answer must not be
served later as a clean one.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from acqkit import Labeler, build, declared, hookimpl
from acqkit.round.label import FLIPPED


class Flip(Labeler):
    """Reverse a known share (``rate``) of another labeler's answers and mark which."""

    def __init__(self, labeler: str = "gold", rate: float = 0.2, seed: int = 0):
        if not 0 <= float(rate) <= 1:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        if str(labeler).split("(")[0].strip() == "flip":
            raise ValueError("flip cannot wrap itself; give the labeler whose answers to reverse")
        self.rate, self.seed, self.spec = float(rate), int(seed), str(labeler)
        self.inner = build("labeler", self.spec)
        if declared(self.inner, Labeler, "checkpointed"):
            raise ValueError(f"labeler {self.spec!r} keeps checkpointed state; flip cannot wrap it")
        self.paid = bool(declared(self.inner, Labeler, "paid"))
        self.needs_previous_policy = bool(declared(self.inner, Labeler, "needs_previous_policy"))

    def label(self, pairs: pd.DataFrame, table: pd.DataFrame, context) -> pd.DataFrame:
        labels = self.inner.label(pairs, table, context).reset_index(drop=True)
        p = pd.to_numeric(labels["p"], errors="coerce").to_numpy(float)
        decided = np.flatnonzero(np.isfinite(p) & (p != 0.5))  # skipped (NaN) and tied answers stay as they are
        rng = np.random.default_rng([self.seed, int(context.rng.integers(2**63))])
        chosen = rng.choice(decided, size=int(round(self.rate * len(decided))), replace=False)
        flipped = np.zeros(len(labels), bool)
        flipped[chosen] = True
        source = labels["source"].astype(str)
        return labels.assign(p=np.where(flipped, 1 - p, p), source=source.where(~flipped, source + FLIPPED))


@hookimpl
def acqkit_register_labelers(register):
    register("flip", Flip)
