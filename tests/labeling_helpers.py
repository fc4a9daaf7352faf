"""A round's worth of labeling inputs without a model: prompts, a response table, a context."""
from __future__ import annotations

import numpy as np
import pandas as pd

from acqkit import LabelContext, Labeler, Prompt
from acqkit.store.ledger import RoundLedger, labeler_identity
from acqkit.strategies import pairs_frame

PROMPTS = [Prompt("p0", ({"role": "user", "content": "Review Citizen Kane."},)),
           Prompt("p1", ({"role": "user", "content": "Review Vertigo."},))]
TEXTS = {"p0": ["A masterpiece.", "Dull.", "Bold, moving cinema.", "Fine.", "Dull."],
         "p1": ["Hypnotic.", "Confusing plot.", "A haunting classic.", "Too slow."]}


def table() -> pd.DataFrame:
    rows = [(pid, text) for pid, texts in TEXTS.items() for text in texts]
    return pd.DataFrame({"prompt_id": [r[0] for r in rows], "response_id": np.arange(len(rows)),
                         "text": [r[1] for r in rows]})


def pairs(*ab) -> pd.DataFrame:
    """``pairs((0, 1), (5, 6))``: the prompt of each pair is looked up from the table."""
    owner = table().set_index("response_id")["prompt_id"]
    return pairs_frame([owner[a] for a, _ in ab], [a for a, _ in ab], [b for _, b in ab], 0.0)


def context(round: int = 1) -> LabelContext:
    return LabelContext(task=None, rng=np.random.default_rng(0), round=round, extras={"prompts": PROMPTS})


def view(ledger, labeler, spec: str, round: int = 1) -> RoundLedger:
    return RoundLedger(ledger, labeler_identity(labeler, spec), table(), PROMPTS, round)


class CountingLabeler(Labeler):
    """Prefers the longer response; remembers every pair it was asked about."""

    paid = True

    def __init__(self, asked: list | None = None):
        self.asked = [] if asked is None else asked

    def label(self, pairs, table, context):
        texts = table.set_index("response_id")["text"]
        self.asked += [(int(a), int(b)) for a, b in pairs[["a", "b"]].itertuples(index=False)]
        la = texts.loc[pairs["a"]].str.len().to_numpy()
        lb = texts.loc[pairs["b"]].str.len().to_numpy()
        return pairs.assign(p=np.where(la > lb, 0.9, np.where(la < lb, 0.1, 0.5)), source="counting", cost=1)
