"""``length-contrast``: label each prompt's longest response against its shortest.

Why: when the gold preference (or an annotator) leans on length, these are the
pairs that show it first; next to ``random`` in ``acqkit compare`` it measures
how much a length-driven choice of pairs buys per label.
"""
import numpy as np
import pandas as pd

from acqkit import TRAINING, Strategy, check_choice, grouped, pairs_frame, top


class LengthContrast(Strategy):
    def __init__(self, training: str = "continue"):
        check_choice("training", training, TRAINING)  # the ValueError a user sees for a bad option
        self.training = training

    def select(self, table: pd.DataFrame, budget: int, rng: np.random.Generator, beta: float) -> pd.DataFrame:
        prompts, rid, length = grouped(table, table["n_tokens"].to_numpy())  # [P, N] per prompt
        if rid.shape[1] < 2:
            return pairs_frame([], [], [], [])
        by_length = np.argsort(length, axis=1, kind="stable")  # equal lengths keep table order
        p = np.arange(len(prompts))
        short, long = by_length[:, 0], by_length[:, -1]
        gap = length[p, long] - length[p, short]
        # Largest length gap first; equal gaps keep table order (a stable sort), so the run is reproducible.
        best = top(gap, budget, "largest", rng)
        return pairs_frame(prompts[best], rid[p, long][best], rid[p, short][best], gap[best])
