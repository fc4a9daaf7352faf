"""Helpers over the ResponseTable: implicit rewards and all-pairs margins.

Margins for every pair come from the N per-response rewards by broadcasting;
no forward pass and no Python loop per pair.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def implicit_reward(table: pd.DataFrame, beta: float, normalize: bool = False) -> np.ndarray:
    """``beta * (logp_policy - logp_ref)``, optionally divided by the response length."""
    r = beta * (table["logp_policy"].to_numpy(float) - table["logp_ref"].to_numpy(float))
    if normalize:
        r = r / np.maximum(table["n_tokens"].to_numpy(float), 1.0)
    return r


def grouped(table: pd.DataFrame, values: np.ndarray):
    """Reshape per-response values to ``[P, N]`` (P prompts, N responses each).

    Returns ``(prompt_ids [P], response_ids [P, N], values [P, N])``; rows keep
    the table's order within each prompt, prompts keep first-appearance order.
    """
    codes, order = pd.factorize(table["prompt_id"], sort=False)  # first-appearance order
    counts = np.bincount(codes, minlength=len(order))
    n = int(counts[0]) if len(counts) else 0
    if len(counts) and not (counts == n).all():
        raise ValueError("every prompt must have the same number of responses in a ResponseTable")
    idx = np.argsort(codes, kind="stable")  # by prompt, then table order
    rid = table["response_id"].to_numpy()[idx].reshape(len(order), n)
    val = np.asarray(values)[idx].reshape(len(order), n)
    return np.asarray(order), rid, val


def all_pairs(table: pd.DataFrame, rewards: np.ndarray):
    """Every within-prompt pair with its margin ``|r_a - r_b|``.

    Returns ``(prompt_ids [P], a [P, M], b [P, M], margin [P, M])`` with
    ``M = N(N-1)/2``, pairs in ``np.triu_indices`` order (i < j).
    """
    prompts, rid, r = grouped(table, rewards)
    i, j = np.triu_indices(rid.shape[1], k=1)
    return prompts, rid[:, i], rid[:, j], np.abs(r[:, i] - r[:, j])


def pairs_frame(prompt_ids, a, b, score) -> pd.DataFrame:
    return pd.DataFrame(
        {"prompt_id": np.asarray(prompt_ids), "a": np.asarray(a, dtype=np.int64),
         "b": np.asarray(b, dtype=np.int64), "score": np.asarray(score, dtype=float)}
    )
