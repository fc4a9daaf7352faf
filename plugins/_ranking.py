"""Ranking pieces shared by the built-in strategies.

Every built-in strategy labels at most one pair per prompt, so each one is a
composition of three steps: pick a pair within each prompt, score, take the
top k. Ties are resolved the same way everywhere (see ``docs/strategies.md``):
the first pair in ``np.triu_indices`` order within a prompt, the earlier prompt
in table order across prompts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from acqkit.table import grouped, pairs_frame

INSTANCE = ("smallest", "largest", "random", "first")
ORDER = ("smallest", "largest", "random")
TRAINING = ("continue", "reinit")


def check_choice(option: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{option} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def check_count(option: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{option} must be an integer >= {minimum}; got {value!r}")


def ceil_div(budget: int, fraction: float) -> int:
    """``ceil(budget / fraction)`` without float noise (3 / 0.3 must give 10, not 11)."""
    return math.ceil(round(budget / fraction, 9))


@dataclass(frozen=True)
class Candidates:
    """One candidate pair per prompt, prompts in first-appearance order."""

    prompts: np.ndarray  # [P]
    a: np.ndarray  # [P] response ids
    b: np.ndarray  # [P]
    margin: np.ndarray  # [P] |r_a - r_b|

    def frame(self, idx: np.ndarray, score: np.ndarray) -> pd.DataFrame:
        return pairs_frame(self.prompts[idx], self.a[idx], self.b[idx], score)


def layout(table: pd.DataFrame):
    """``(prompt_ids [P], response_ids [P, N], rows [P, N])``: where each prompt's responses sit.

    One grouping pass serves every per-response column a strategy needs.
    """
    return grouped(table, np.arange(len(table)))


def one_pair_per_prompt(lay, rewards: np.ndarray, rule: str, rng: np.random.Generator) -> Candidates:
    """The instance-level rule: one of each prompt's N(N-1)/2 pairs.

    ``rewards`` are per table row. Margins are broadcast from the N rewards of a
    prompt over ``[P, M]``; ``argmin``/``argmax`` return the first pair in
    ``np.triu_indices`` order on ties. ``first`` pairs the first two responses.
    """
    prompts, rid, rows = lay
    r = np.asarray(rewards, dtype=float)[rows]
    n_prompts, n = rid.shape
    if n < 2:
        empty = np.zeros(0, dtype=np.int64)
        return Candidates(prompts[:0], empty, empty, np.zeros(0))
    i, j = np.triu_indices(n, k=1)
    if rule == "first":
        col = np.zeros(n_prompts, dtype=np.int64)
    elif rule == "random":
        col = rng.integers(0, len(i), size=n_prompts)
    else:
        margins = np.abs(r[:, i] - r[:, j])
        col = margins.argmin(axis=1) if rule == "smallest" else margins.argmax(axis=1)
    p = np.arange(n_prompts)
    ii, jj = i[col], j[col]
    return Candidates(prompts, rid[p, ii], rid[p, jj], np.abs(r[p, ii] - r[p, jj]))


def top(score: np.ndarray, k: int, order: str, rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``k`` best by ``order``, best first; a stable sort keeps ties in index order."""
    k = max(0, min(int(k), len(score)))
    if order == "random":
        return rng.permutation(len(score))[:k]
    key = score if order == "smallest" else -score
    return np.argsort(key, kind="stable")[:k]


def predictive_entropy(table: pd.DataFrame, lay, per_token: bool = False) -> np.ndarray:
    """Monte-Carlo predictive entropy per prompt, ``H(x) = -(1/n) sum_j logp(y_j|x)``.

    The average runs over each prompt's own n responses (row ``s`` of the
    ``[P, n]`` layout, i.e. samples ``[s*n:(s+1)*n]``), not over the shifted
    slice ``[s:s+n]`` of the APL authors' released code.
    """
    logp = table["logp_policy"].to_numpy(float)
    if per_token:
        logp = logp / np.maximum(table["n_tokens"].to_numpy(float), 1.0)
    rows = lay[2]
    return -logp[rows].mean(axis=1) if rows.shape[1] else np.zeros(len(rows))
