"""SELFEE / SPA (arXiv 2406.04412): self-labeling with noise-aware refinement.

The ``self`` labeler judges pairs by the policy's own implicit reward against
the frozen initial model; ``confidence-smoothing`` label-smooths the pairs the
model is least confident about while it trains; ``decoupled`` measures that
confidence on extrapolated logits ``(1 + lambda) h_theta - lambda h_ref``.
The ``selfee`` strategy bundles them: K = 2 samples at temperature 0.7, every
prompt self-labelled (0 paid labels), trained against the previous policy.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from acqkit import Labeler, Refiner, SamplePlan, Strategy, grouped, hookimpl, pairs_frame
from acqkit.round.score import response_logits, score, summed_logps


class SelfLabeler(Labeler):
    """Chosen = higher ``logp_policy - logp_judge`` (ties to ``a``); ``soft`` gives sigmoid(beta * diff).

    ``judge="initial"`` (default) uses ``logp_ref``, the frozen initial model:
    the judgment reference the paper's ablation prefers. ``judge="previous"``
    scores the pair's responses once more with the previous iterate (the policy
    before the one that sampled the round; in round 1 the initial model), which
    it asks for by declaring ``needs_previous_policy``: the label stage keeps
    that iterate and checkpoints it, so the loop knows nothing of judges.
    """

    paid = False

    def __init__(self, soft: bool = False, beta: float = 0.1, judge: str = "initial"):
        if judge not in ("initial", "previous"):
            raise ValueError(f"judge must be initial or previous, got {judge!r}")
        self.soft, self.beta, self.judge = bool(soft), float(beta), judge
        self.needs_previous_policy = judge == "previous"

    def label(self, pairs: pd.DataFrame, table: pd.DataFrame, context) -> pd.DataFrame:
        rows = table.set_index("response_id")
        judge = rows["logp_ref"] if self.judge == "initial" else self._previous_logps(pairs, rows, context)
        r = rows["logp_policy"] - judge
        diff = r.loc[pairs["a"]].to_numpy(float) - r.loc[pairs["b"]].to_numpy(float)
        p = 1 / (1 + np.exp(-self.beta * diff)) if self.soft else (diff >= 0).astype(float)
        return pairs.assign(p=p, source="self", cost=0)

    @staticmethod
    def _previous_logps(pairs, rows, context) -> pd.Series:
        model = context.extras.get("previous")
        if model is None:
            raise ValueError("self labeler with judge=previous needs the previous policy; "
                             "the label stage passes it when the labeler sets needs_previous_policy")
        ids = pd.unique(np.concatenate([pairs["a"].to_numpy(), pairs["b"].to_numpy()]))
        sub = rows.loc[ids]
        pad = context.extras["tokenizer"].pad_token_id
        logps, _ = score(model, list(sub["prompt_ids"]), list(sub["response_ids"]), pad, with_entropy=False,
                         label="judging: previous iterate")
        return pd.Series(np.asarray(logps, float), index=ids).reindex(rows.index)


@dataclass
class Selfee(Strategy):
    """K responses per prompt; the pair is the highest- vs lowest-reward response (K = 2: the two)."""

    pairs: int | None = None  # self-labelled pairs per round; default: the round's label budget
    k: int = 2
    temperature: float = 0.7
    labeler: str = "self"
    refiner: str = "decoupled"
    train_reference: str = "previous"
    judge: str = "initial"  # judgment reference of the self labeler: initial (SFT) or previous iterate
    soft: bool = False  # self-labels p = sigmoid(beta * reward gap) instead of 0/1
    training: str = "continue"

    def __post_init__(self):
        if self.judge not in ("initial", "previous"):
            raise ValueError(f"judge must be initial or previous, got {self.judge!r}")
        if self.labeler == "self":  # pass the recipe's judging options on to its labeler
            options = [f"judge={self.judge}"] * (self.judge != "initial") + ["soft=true"] * bool(self.soft)
            self.labeler = f"self({', '.join(options)})" if options else "self"
        if self.k < 2:
            raise ValueError(f"k must be >= 2, got {self.k}")
        if self.train_reference not in ("initial", "previous"):
            raise ValueError(f"train_reference must be initial or previous, got {self.train_reference!r}")

    def plan(self, budget: int, n_responses: int, temperature: float) -> SamplePlan:
        return SamplePlan(self.pairs or budget, self.k, self.temperature)

    def select(self, table, budget, rng, beta) -> pd.DataFrame:
        r = beta * (table["logp_policy"].to_numpy(float) - table["logp_ref"].to_numpy(float))
        prompts, rid, rr = grouped(table, r)
        hi, lo = rr.argmax(axis=1), rr.argmin(axis=1)  # first index on ties
        same = hi == lo  # all rewards equal: fall back to the first two responses
        hi, lo = np.where(same, 0, hi), np.where(same, 1, lo)
        p = np.arange(len(prompts))
        return pairs_frame(prompts, rid[p, hi], rid[p, lo], np.abs(rr[p, hi] - rr[p, lo]))


class ConfidenceSmoothing(Refiner):
    """Label-smooth (``alpha``) the pairs that are not confident: ``beta * z <= tau``.

    ``z`` is the label-oriented implicit-reward margin under the current policy.
    SPA calls a pair confident only when ``beta * z`` is strictly above ``tau``,
    the ``k``-quantile (numpy's linear one) of the last ``window`` decided pairs
    seen in training (SPA's running window) or, with ``window=0``, of every
    decided pair seen so far this round. Ties (p = 0.5) have no direction, so
    no margin: they are never smoothed (already as soft as it gets) and stay out
    of the window, where a margin of 0 would move ``tau`` for the other pairs.
    Nothing is smoothed during the first ``warmup`` fraction of steps. After it, every decided
    pair a step sees is logged (``context.log``: training-list ``index``, ``step``, ``smoothed``),
    so ``acqkit report`` can score the smoothing against labels flipped on purpose.
    """

    def __init__(self, k: float = 0.1, alpha: float = 0.1, window: int = 50, warmup: float = 0.2):
        if not 0 < k < 1 or not 0 <= alpha <= 0.5 or window < 0 or not 0 <= warmup < 1:
            raise ValueError("need 0 < k < 1, 0 <= alpha <= 0.5, window >= 0 and 0 <= warmup < 1")
        self.k, self.alpha, self.window, self.warmup = k, alpha, window, warmup

    def in_training(self, context):
        seen = deque(maxlen=self.window or None)
        log = getattr(context, "log", None)
        return lambda batch: self.smooth(batch, self.policy_logps(batch, context), seen, log)

    def policy_logps(self, batch, context):
        return batch.pol

    def smooth(self, batch, pol: torch.Tensor, seen: deque, log=None) -> torch.Tensor:
        n = len(batch.p)
        h = (pol[:n] - batch.ref[:n]) - (pol[n:] - batch.ref[n:])
        direction = torch.sign(batch.p - 0.5)
        decided = (direction != 0).cpu().numpy()  # ties have no margin: out of the window, never smoothed
        margin = (batch.beta * h * direction).cpu().numpy()
        seen.extend(margin[decided].tolist())
        if batch.step < self.warmup * batch.total_steps or not seen:
            return batch.p
        tau = np.quantile(np.fromiter(seen, float), self.k)
        low_np = (margin <= tau) & decided  # confident: strictly above tau
        index = getattr(batch, "index", ())
        if log is not None and len(index) == n:
            for i in np.flatnonzero(decided):
                log({"index": int(index[i]), "step": int(batch.step), "smoothed": bool(low_np[i])})
        low = torch.from_numpy(low_np).to(batch.p.device)
        smoothed = batch.p * (1 - self.alpha) + (1 - batch.p) * self.alpha
        return torch.where(low, smoothed, batch.p)


class Decoupled(ConfidenceSmoothing):
    """Confidence measured on extrapolated logits ``(1 + lam) h_theta - lam h_ref`` (lam = 0: plain)."""

    needs_reference_model = True

    def __init__(self, lam=(0.5, 0.25, 0.125), **kwargs):
        super().__init__(**kwargs)
        self.lam = [float(x) for x in (lam if isinstance(lam, (list, tuple)) else [lam])]

    def in_training(self, context):
        self.current = self.lam[min(context.round, len(self.lam)) - 1] if context.round > 0 else self.lam[0]
        return super().in_training(context)

    def policy_logps(self, batch, context):
        return extrapolated_logps(batch.logits, batch, context.reference, self.current)


@torch.no_grad()
def extrapolated_logps(logits: torch.Tensor, batch, reference, lam: float) -> torch.Tensor:
    """Summed log-probs of the response tokens under ``log_softmax((1 + lam) h - lam h_ref)``."""
    if lam == 0:
        return summed_logps(logits, batch.ids, batch.resp)[0]
    ref_logits = response_logits(reference, batch.ids, batch.mask, batch.pos, batch.resp)
    return summed_logps((1 + lam) * logits - lam * ref_logits, batch.ids, batch.resp)[0]


@hookimpl
def acqkit_register_labelers(register):
    register("self", SelfLabeler)


@hookimpl
def acqkit_register_refiners(register):
    register("confidence-smoothing", ConfidenceSmoothing)
    register("decoupled", Decoupled)


@hookimpl
def acqkit_register_strategies(register):
    register("selfee", Selfee)
