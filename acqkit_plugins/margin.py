"""Reward-margin selection (arXiv 2406.17312) at the instance and corpus level.

The instance rule picks one of each prompt's N(N-1)/2 pairs by implicit-reward
margin; the optional corpus rule then ranks those pairs across prompts and keeps
a fraction. The paper ran one level at a time; here every combination composes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from acqkit import (
    INSTANCE, ORDER, TRAINING, SamplePlan, Strategy, check_choice, hookimpl, implicit_reward, layout,
    one_pair_per_prompt, top,
)
from acqkit.strategies import ceil_div


@dataclass
class MarginSelection(Strategy):
    """``instance`` in smallest/largest/random/first; ``corpus`` in none/smallest/largest/random."""

    instance: str = "smallest"
    corpus: str | None = None
    keep: float = 0.5
    normalize: bool = False
    training: str = "continue"

    def __post_init__(self):
        if self.corpus == "none":
            self.corpus = None
        check_choice("instance", self.instance, INSTANCE)
        check_choice("corpus", self.corpus, (None,) + ORDER)
        check_choice("training", self.training, TRAINING)
        if isinstance(self.keep, bool) or not isinstance(self.keep, (int, float)) or not 0 < self.keep <= 1:
            raise ValueError(f"keep must be a fraction in (0, 1]; got {self.keep!r}")

    def plan(self, budget: int, n_responses: int, temperature: float) -> SamplePlan:
        # A corpus filter keeps `keep` of the prompts, so sample budget / keep of them.
        n_prompts = budget if self.corpus is None else ceil_div(budget, self.keep)
        return SamplePlan(n_prompts, n_responses, temperature)

    def select(self, table: pd.DataFrame, budget: int, rng: np.random.Generator, beta: float) -> pd.DataFrame:
        rewards = implicit_reward(table, beta, self.normalize)
        cand = one_pair_per_prompt(layout(table), rewards, self.instance, rng)
        if self.corpus is None:
            idx = np.arange(min(budget, len(cand.margin)))
        else:
            # Keeping ceil(keep * P) ranked pairs and then the first `budget` of them is the
            # top `budget`: with the planned pool they coincide, with a short pool the budget wins.
            idx = top(cand.margin, budget, self.corpus, rng)
        return cand.frame(idx, cand.margin[idx])


ALIASES = {
    "random": dict(instance="random"),
    "smallest-margin": dict(instance="smallest"),
    "largest-margin": dict(instance="largest"),
    "always-smallest": dict(instance="smallest", corpus="smallest", keep=0.5),
    "always-random": dict(instance="random", corpus="random", keep=0.5),
    "always-largest": dict(instance="largest", corpus="largest", keep=0.5),
}


@hookimpl
def acqkit_register_strategies(register):
    register("margin", MarginSelection)
    for name, preset in ALIASES.items():
        register(name, partial(MarginSelection, **preset))  # explicit options override the preset
