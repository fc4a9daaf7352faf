"""``length-contrast``: label each prompt's longest response against its shortest.

Why: when the gold preference (or an annotator) leans on length, these are the
pairs that show it first; next to ``random`` in ``acqkit compare`` it measures
how much a length-driven choice of pairs buys per label.
"""
import numpy as np
import pandas as pd

from acqkit import PAIR_COLUMNS, Strategy


class LengthContrast(Strategy):
    def __init__(self, training: str = "continue"):
        if training not in ("continue", "reinit"):
            raise ValueError(f"training must be continue or reinit; got {training!r}")
        self.training = training

    def select(self, table: pd.DataFrame, budget: int, rng: np.random.Generator, beta: float) -> pd.DataFrame:
        rows = []
        for prompt_id, group in table.groupby("prompt_id", sort=False):
            if len(group) < 2:
                continue
            by_length = group.sort_values("n_tokens", kind="stable")
            short, long = by_length.iloc[0], by_length.iloc[-1]
            rows.append((prompt_id, int(long.response_id), int(short.response_id),
                         float(long.n_tokens - short.n_tokens)))
        pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
        # Largest length gap first; equal gaps keep table order (a stable sort), so the run is reproducible.
        return pairs.sort_values("score", ascending=False, kind="stable").head(budget).reset_index(drop=True)
