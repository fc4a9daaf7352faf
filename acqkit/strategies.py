"""Building blocks for acquisition strategies: public API since ``acqkit.API_VERSION`` 1.2.

The built-in strategies are compositions of these, and outside plugins use the
same pieces instead of re-implementing them (every name in ``__all__`` is also
importable from ``acqkit``; the rest of this module may change without notice):

- ``implicit_reward``: ``beta * (logp_policy - logp_ref)`` per response (DPO's implicit reward).
- ``grouped`` / ``layout`` / ``all_pairs``: the ResponseTable as ``[prompts, responses]`` arrays.
- ``one_pair_per_prompt``: the instance-level rule (smallest, largest, random or first pair of a prompt).
- ``top``: the ``k`` best candidates by a score (smallest, largest or random), ties in table order.
- ``predictive_entropy``: APL's Monte-Carlo predictive entropy per prompt.
- ``bradley_terry`` / ``hard_labels``: gold preferences from gold rewards.
- ``pairs_frame``: the pairs table ``Strategy.select`` returns.
- ``check_choice`` / ``check_count``: option checks that raise the ``ValueError`` users see;
  ``INSTANCE``, ``ORDER``, ``TRAINING``: the choices of ``one_pair_per_prompt``, ``top`` and ``Strategy.training``.

Ties are resolved the same way everywhere (see ``docs/strategies.md``): the
first pair in ``np.triu_indices`` order within a prompt, the earlier prompt in
table order across prompts. Margins for every pair come from the N
per-response rewards by broadcasting; no forward pass and no Python loop per pair.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "INSTANCE", "ORDER", "TRAINING", "Candidates", "all_pairs", "bradley_terry", "check_choice", "check_count", "grouped", "hard_labels",
    "implicit_reward", "layout", "one_pair_per_prompt", "pairs_frame", "predictive_entropy", "top",
]


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
    """The pairs table (``PAIR_COLUMNS``, ids as int64) from four aligned sequences."""
    return pd.DataFrame(
        {"prompt_id": np.asarray(prompt_ids), "a": np.asarray(a, dtype=np.int64),
         "b": np.asarray(b, dtype=np.int64), "score": np.asarray(score, dtype=float)}
    )


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

    Unbiased only when the ``y_j`` are samples of the policy itself: plan them
    with ``SamplePlan(..., temperature=1.0, top_k=0)`` (top-k or another
    temperature samples another distribution, and no reweighting can undo a
    truncation: its samples never reach the tokens it cut).
    The average runs over each prompt's own n responses (row ``s`` of the
    ``[P, n]`` layout, i.e. samples ``[s*n:(s+1)*n]``), not over the shifted
    slice ``[s:s+n]`` of the APL authors' released code.
    """
    logp = table["logp_policy"].to_numpy(float)
    if per_token:
        logp = logp / np.maximum(table["n_tokens"].to_numpy(float), 1.0)
    rows = lay[2]
    return -logp[rows].mean(axis=1) if rows.shape[1] else np.zeros(len(rows))


# Gold preferences from gold rewards (Bradley-Terry).

def bradley_terry(r_a: np.ndarray, r_b: np.ndarray, tau: float) -> np.ndarray:
    """``p(a > b) = sigmoid((R_a - R_b) / tau)``; ``tau = 0`` gives the argmax; ties give 0.5."""
    d = np.asarray(r_a, float) - np.asarray(r_b, float)
    if tau == 0:
        return np.where(d > 0, 1.0, np.where(d < 0, 0.0, 0.5))
    return 0.5 * (1.0 + np.tanh(d / (2.0 * tau)))  # numerically safe sigmoid


def hard_labels(p: np.ndarray, rng: np.random.Generator, r_a=None, r_b=None) -> np.ndarray:
    """Draw a hard label from ``p``; exact ties in gold reward stay at 0.5."""
    p = np.asarray(p, float)
    draw = (rng.random(p.shape) < p).astype(float)
    if r_a is not None:
        draw = np.where(np.asarray(r_a) == np.asarray(r_b), 0.5, draw)
    return draw
