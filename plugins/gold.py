"""The task's gold oracle as a labeler: Bradley-Terry on gold rewards.

``hard=True`` (default) draws a 0/1 label from the BT probability with the
run's seeded RNG (exact gold ties stay 0.5); ``hard=False`` keeps the soft p.
Each label costs one oracle call.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from acqkit import Labeler, hookimpl
from acqkit.preference import bradley_terry, hard_labels


class GoldLabeler(Labeler):
    paid = True  # each label is an oracle call: kept in the label ledger, never asked twice

    def __init__(self, hard: bool = True):
        self.hard = bool(hard)

    def label(self, pairs: pd.DataFrame, table: pd.DataFrame, context) -> pd.DataFrame:
        if pairs.empty:
            return pairs.assign(p=[], source=[], cost=[])
        by_id = table.set_index("response_id")
        prompts = {p.id: p for p in context.extras["prompts"]}
        plist = [prompts[pid] for pid in pairs["prompt_id"]]
        r = context.task.gold_reward(plist * 2, list(by_id.loc[pairs["a"], "text"]) + list(by_id.loc[pairs["b"], "text"]))
        r = np.asarray(r, float)
        r_a, r_b = r[: len(pairs)], r[len(pairs):]
        p = bradley_terry(r_a, r_b, context.task.tau)
        if self.hard:
            p = hard_labels(p, context.rng, r_a, r_b)
        return pairs.assign(p=p, source="gold", cost=1)


@hookimpl
def acqkit_register_labelers(register):
    register("gold", GoldLabeler)
