"""The task's gold oracle as a labeler: Bradley-Terry on gold rewards.

``hard=True`` (default) draws a 0/1 label from the BT probability with the
run's seeded RNG (exact gold ties stay 0.5); ``hard=False`` keeps the soft p.
Each label costs one oracle call.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from acqkit import Labeler, Task, declared, gold_rewards, hookimpl
from acqkit.errors import PluginOutputError
from acqkit.strategies import bradley_terry, hard_labels


class GoldLabeler(Labeler):
    paid = True  # each label is an oracle call: kept in the label ledger, never asked twice
    source = "gold"  # the labels' source column
    rewards_of = "the task's gold_reward"  # who to blame for a NaN reward

    def __init__(self, hard: bool = True):
        self.hard = bool(hard)

    def label(self, pairs: pd.DataFrame, table: pd.DataFrame, context) -> pd.DataFrame:
        if pairs.empty:
            return pairs.assign(p=[], source=[], cost=[])
        by_id = table.set_index("response_id")
        prompts = {p.id: p for p in context.extras["prompts"]}
        plist = [prompts[pid] for pid in pairs["prompt_id"]]
        both = list(pairs["a"]) + list(pairs["b"])
        n_tokens = by_id.loc[both, "n_tokens"] if "n_tokens" in by_id.columns else None  # for an oracle that wants them
        r = np.asarray(self.rewards(context, plist * 2, list(by_id.loc[both, "text"]), n_tokens), float)
        if not np.isfinite(r).all():  # a guarded task names its oracle first; this stops an unguarded one
            raise PluginOutputError(f"{self.rewards_of} returned NaN or infinite reward(s) "
                                    f"{r[~np.isfinite(r)][:5].tolist()}: no gold label can be made from them")
        r_a, r_b = r[: len(pairs)], r[len(pairs):]
        p = bradley_terry(r_a, r_b, self.temperature(context))
        if self.hard:
            p = hard_labels(p, context.rng, r_a, r_b)
        return pairs.assign(p=p, source=self.source, cost=1)

    def rewards(self, context, prompts: list, responses: list, n_tokens) -> np.ndarray:
        """The rewards labels are drawn from: the task's gold oracle (a subclass may bring its own model)."""
        return gold_rewards(context.task, prompts, responses, n_tokens)

    def temperature(self, context) -> float:
        """Bradley-Terry's tau: the task's."""
        return declared(context.task, Task, "tau")


@hookimpl
def acqkit_register_labelers(register):
    register("gold", GoldLabeler)
