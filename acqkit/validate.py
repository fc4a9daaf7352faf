"""Check plugin outputs at the boundary, with errors that name the plugin."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .components import LABEL_COLUMNS, PAIR_COLUMNS


class PluginOutputError(ValueError):
    """A plugin returned something acqkit cannot use."""


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


def check_labels(labels: pd.DataFrame, pairs: pd.DataFrame, name: str) -> pd.DataFrame:
    who = f"labeler {name!r}"
    if not isinstance(labels, pd.DataFrame):
        raise PluginOutputError(f"{who} returned {type(labels).__name__}, expected a DataFrame")
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise PluginOutputError(f"{who} returned labels without column(s) {missing}")
    if len(labels) != len(pairs):
        raise PluginOutputError(f"{who} returned {len(labels)} labels for {len(pairs)} pairs")
    same = (labels["a"].to_numpy() == pairs["a"].to_numpy()) & (labels["b"].to_numpy() == pairs["b"].to_numpy())
    if not same.all():
        i = int(np.argmin(same))
        raise PluginOutputError(f"{who} answered pair ({labels['a'].iloc[i]}, {labels['b'].iloc[i]}) at row {i} "
                                f"where it was asked ({pairs['a'].iloc[i]}, {pairs['b'].iloc[i]}); return the "
                                "pairs in the order given")
    p = pd.to_numeric(labels["p"], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        raise PluginOutputError(f"{who} returned preference(s) outside [0, 1] or not finite: {p[bad][:5].tolist()}")
    cost = pd.to_numeric(labels["cost"], errors="coerce").to_numpy(float)
    if not (np.isfinite(cost) & (cost >= 0) & (cost == np.round(cost))).all():
        raise PluginOutputError(f"{who} returned a cost that is not a whole number >= 0: "
                                f"{labels['cost'].tolist()[:5]}")
    return labels.reset_index(drop=True)


def check_skips(skipped: pd.DataFrame, name: str) -> None:
    """A skip is ``p`` missing with ``cost`` 0; a missing ``p`` that was charged for is a failed oracle."""
    if "cost" not in skipped.columns or skipped.empty:
        return
    charged = pd.to_numeric(skipped["cost"], errors="coerce").fillna(1).to_numpy() != 0
    if charged.any():
        raise PluginOutputError(f"labeler {name!r} returned p = NaN (no preference) for {int(charged.sum())} "
                                "pair(s) it charged for; a skipped pair has p missing and cost 0")
