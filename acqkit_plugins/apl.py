"""Active preference learning (arXiv 2402.08114): entropy, certainty and hybrid.

Entropy ranks prompts by the policy's Monte-Carlo predictive entropy, from
samples of the untruncated policy at temperature 1 (the estimator's premise);
certainty ranks candidate pairs by |r_a - r_b|, most certain first (the
opposite of smallest-margin, so ``acqkit compare`` can test which holds);
hybrid filters by entropy and then by certainty. APL retrains from the initial
policy on all labels each round, hence ``training="reinit"`` by default, which
``Strategy.training_set`` turns into "every label so far, from the warm start".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from acqkit import (
    INSTANCE, TRAINING, SamplePlan, Strategy, check_choice, check_count, hookimpl, implicit_reward, layout,
    one_pair_per_prompt, predictive_entropy, top,
)


def _check(strategy) -> None:
    check_choice("instance", strategy.instance, INSTANCE)
    check_choice("training", strategy.training, TRAINING)
    check_count("og", strategy.og)
    if getattr(strategy, "n_responses", None) is not None:
        check_count("n_responses", strategy.n_responses, 2)


def _scored(strategy, table, rng, beta):
    """Candidate pairs and the entropy of their prompts, aligned."""
    lay = layout(table)
    cand = one_pair_per_prompt(lay, implicit_reward(table, beta, strategy.normalize), strategy.instance, rng)
    entropy = predictive_entropy(table, lay, strategy.per_token)
    return cand, entropy[: len(cand.margin)]  # no candidates when prompts have < 2 responses


@dataclass
class Entropy(Strategy):
    """Top-``budget`` prompts by predictive entropy, then one pair each by ``instance``."""

    og: int = 32
    per_token: bool = False
    instance: str = "random"
    n_responses: int | None = None
    normalize: bool = False
    training: str = "reinit"

    def __post_init__(self):
        _check(self)

    def plan(self, budget: int, n_responses: int, temperature: float) -> SamplePlan:
        # Temperature 1.0 and no top-k: the Monte-Carlo estimate is of the policy's own entropy.
        return SamplePlan(budget * self.og, max(2, self.n_responses or n_responses), 1.0, top_k=0)

    def select(self, table: pd.DataFrame, budget: int, rng: np.random.Generator, beta: float) -> pd.DataFrame:
        cand, entropy = _scored(self, table, rng, beta)
        idx = top(entropy, budget, "largest", rng)
        return cand.frame(idx, entropy[idx])


@dataclass
class Certainty(Strategy):
    """The ``budget`` candidate pairs with the largest |r_a - r_b|, from ``og * budget`` prompts."""

    og: int = 32
    temperature: float = 0.7
    n_responses: int = 2
    instance: str = "first"
    normalize: bool = False
    training: str = "reinit"

    def __post_init__(self):
        _check(self)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature!r}")

    def plan(self, budget: int, n_responses: int, temperature: float) -> SamplePlan:
        return SamplePlan(budget * self.og, self.n_responses, self.temperature)

    def select(self, table: pd.DataFrame, budget: int, rng: np.random.Generator, beta: float) -> pd.DataFrame:
        rewards = implicit_reward(table, beta, self.normalize)
        cand = one_pair_per_prompt(layout(table), rewards, self.instance, rng)
        idx = top(cand.margin, budget, "largest", rng)
        return cand.frame(idx, cand.margin[idx])


@dataclass
class Hybrid(Strategy):
    """Keep the top 1/``os`` of the pool by entropy, then the ``budget`` most certain pairs.

    The entropy stage keeps ``ceil(P / os)`` prompts clipped to
    ``[budget, budget * og]``: exactly ``budget * og`` with the planned pool, and
    never fewer than the budget when the pool came up short.
    """

    og: int = 32
    os: int = 8
    per_token: bool = False
    instance: str = "first"
    n_responses: int | None = None
    normalize: bool = False
    training: str = "reinit"

    def __post_init__(self):
        _check(self)
        check_count("os", self.os)

    def plan(self, budget: int, n_responses: int, temperature: float) -> SamplePlan:
        return SamplePlan(budget * self.og * self.os, max(2, self.n_responses or n_responses), 1.0, top_k=0)

    def select(self, table: pd.DataFrame, budget: int, rng: np.random.Generator, beta: float) -> pd.DataFrame:
        cand, entropy = _scored(self, table, rng, beta)
        n_keep = min(max(math.ceil(len(entropy) / self.os), budget), budget * self.og)
        kept = np.sort(top(entropy, n_keep, "largest", rng))  # back to table order for tie-breaks
        idx = kept[top(cand.margin[kept], budget, "largest", rng)]
        return cand.frame(idx, cand.margin[idx])


@hookimpl
def acqkit_register_strategies(register):
    for name, factory in (("entropy", Entropy), ("certainty", Certainty), ("hybrid", Hybrid)):
        register(name, factory)
        register(f"apl-{name}", factory)
