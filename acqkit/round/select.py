"""The select stage: a strategy's pairs, checked at the boundary before anything is paid for."""
from __future__ import annotations

import numpy as np
import pandas as pd

from acqkit.components import PAIR_COLUMNS
from acqkit.errors import PluginOutputError


def check_pairs(pairs: pd.DataFrame, table: pd.DataFrame, budget: int | None, name: str) -> pd.DataFrame:
    """``budget=None`` when the labeler is free (self-labels): no cap on the number of pairs."""
    who = f"strategy {name!r}"
    if not isinstance(pairs, pd.DataFrame):
        raise PluginOutputError(f"{who} returned {type(pairs).__name__}, expected a DataFrame")
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise PluginOutputError(f"{who} returned pairs without column(s) {missing}")
    if budget is not None and len(pairs) > budget:
        raise PluginOutputError(f"{who} returned {len(pairs)} pairs, over the round's budget of {budget}")
    owner = table.set_index("response_id")["prompt_id"]
    for col in ("a", "b"):
        unknown = ~pairs[col].isin(owner.index)
        if unknown.any():
            raise PluginOutputError(f"{who}: unknown response id(s) in column {col!r}: "
                                    f"{pairs.loc[unknown, col].tolist()[:5]}")
    if (pairs["a"] == pairs["b"]).any():
        raise PluginOutputError(f"{who} returned a pair of a response with itself")
    pa, pb = owner.loc[pairs["a"]].to_numpy(), owner.loc[pairs["b"]].to_numpy()
    if (pa != pb).any() or (pa != pairs["prompt_id"].to_numpy()).any():
        raise PluginOutputError(f"{who} returned a pair whose responses belong to different prompts")
    key = np.sort(pairs[["a", "b"]].to_numpy(), axis=1)
    if len({tuple(k) for k in key.tolist()}) != len(key):
        raise PluginOutputError(f"{who} selected the same pair twice")
    return pairs.reset_index(drop=True)
