"""Does bf16 noise pick different pairs? Selection on one real response table, fp32 vs bf16 log-probs.

A round-1 table as a comparison sees it: SmolLM2 (``preset("default")``), the
shared warm start trained in float32 (round 0, ``seed_labels`` gold pairs), then
``--prompts`` x ``--responses`` samples of that policy. The same responses are
scored three times, under the policy and the frozen reference:

* ``fp32``: acqkit's float32 scorer, batch ``score_batch_size`` (the baseline);
* ``fp32, other batches``: float32 again in batches of ``--rebatch``: float32's own
  noise floor (padding and batching move the last bits, docs/performance.md);
* ``bf16``: ``precision = "bf16"`` (bf16 autocast backbone, float32 LM head and sums).

For each variant against the baseline it prints how far the log-probs and the
implicit-reward margins move, and how often each strategy's choice changes: the
smallest- and largest-margin pair per prompt (instance level), the top-k of a
corpus ranking (``always-smallest`` / ``always-largest``, APL's certainty), with
Spearman's rho of the certainty ranking. Whether a changed choice matters is
read off the gold oracle: the mean |gold reward gap| of the chosen pairs.
Run on demand: ``python benchmarks/precision_numerics.py --model smollm2``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from acqkit.components import SamplePlan, gold_rewards
from acqkit.config import preset
from acqkit.models import set_precision
from acqkit.plugins import registry
from acqkit.round import loop
from acqkit.round.score import score
from acqkit.round.session import Session
from acqkit.strategies import all_pairs
from scoring import machine  # benchmarks/scoring.py

STRATEGIES = {  # name: budget as a fraction of the prompts (1 = one pair per prompt)
    "smallest-margin": 1.0, "largest-margin": 1.0, "always-smallest": 0.25, "always-largest": 0.25,
    "apl-certainty": 0.25,
}


def rescore(session, table: pd.DataFrame, precision: str, batch_size: int) -> pd.DataFrame:
    """The table with its log-probs and entropy recomputed at ``precision`` in batches of ``batch_size``."""
    prompts, responses = list(map(list, table["prompt_ids"])), list(map(list, table["response_ids"]))
    pad = session.tokenizer.pad_token_id
    for model in (session.policy, session.reference):
        set_precision(model, precision)
    try:
        lp, ent = score(session.policy, prompts, responses, pad, batch_size, label=f"{precision}: policy")
        lr, _ = score(session.reference, prompts, responses, pad, batch_size, with_entropy=False,
                      label=f"{precision}: reference")
    finally:
        for model in (session.policy, session.reference):
            set_precision(model, "fp32")
    return table.assign(logp_policy=lp, logp_ref=lr, entropy=ent)


def pair_set(pairs: pd.DataFrame) -> set:
    return {(int(min(a, b)), int(max(a, b))) for a, b in zip(pairs["a"], pairs["b"])}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    return float(np.corrcoef(rx, ry)[0, 1])


def compare(base: pd.DataFrame, other: pd.DataFrame, gold: pd.Series, reg, beta: float, label: str) -> None:
    d_pol = np.abs(other["logp_policy"].to_numpy() - base["logp_policy"].to_numpy())
    d_ref = np.abs(other["logp_ref"].to_numpy() - base["logp_ref"].to_numpy())
    r0 = beta * (base["logp_policy"] - base["logp_ref"]).to_numpy()
    r1 = beta * (other["logp_policy"] - other["logp_ref"]).to_numpy()
    _, _, _, m0 = all_pairs(base, r0)
    _, _, _, m1 = all_pairs(other, r1)
    srt = np.sort(m0, axis=1)
    gap = np.median(srt[:, 1] - srt[:, 0])  # how far apart the two smallest margins of a prompt are
    print(f"\n== {label} vs fp32 ==")
    print(f"|d logp| policy: median {np.median(d_pol):.2e}, max {d_pol.max():.2e} nats; reference: median "
          f"{np.median(d_ref):.2e}, max {d_ref.max():.2e}")
    print(f"|d margin| (beta x nats): median {np.median(np.abs(m1 - m0)):.2e}, max {np.abs(m1 - m0).max():.2e}; "
          f"fp32 margins: median {np.median(m0):.2e}, median gap smallest-to-second {gap:.2e}")
    print(f"spearman rho of all {m0.size} pair margins: {spearman(m0.ravel(), m1.ravel()):.4f}; of per-response "
          f"implicit rewards: {spearman(r0, r1):.4f}")
    print(f"{'strategy':18s} {'budget':>6s} {'changed':>12s} {'|gold gap| fp32':>16s} {label + ' |gold gap|':>24s}")
    for name, share in STRATEGIES.items():
        budget = max(1, int(round(share * base["prompt_id"].nunique())))
        strategy = reg.build("strategy", name)
        p0 = strategy.select(base, budget, np.random.default_rng(0), beta)
        p1 = strategy.select(other, budget, np.random.default_rng(0), beta)
        s0, s1 = pair_set(p0), pair_set(p1)
        changed = len(s0 - s1)
        g0 = np.mean([abs(gold[a] - gold[b]) for a, b in s0])
        g1 = np.mean([abs(gold[a] - gold[b]) for a, b in s1])
        print(f"{name:18s} {budget:6d} {changed:4d} ({changed / len(s0):5.1%}) {g0:16.3f} {g1:24.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--responses", type=int, default=4)
    parser.add_argument("--rebatch", type=int, default=7, help="batch size of the float32 noise-floor rescoring")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine("start"))
    start = time.perf_counter()
    cfg = preset("default", model=args.model, precision="fp32", eval_prompts=4, kl_samples=0)
    reg = registry()
    session = Session.open(cfg, reg)
    session.reset_policy(loop.warm_start(session, cfg, reg, None)["state"])  # round 0, float32
    table = loop.sample_and_score(session, cfg, SamplePlan(args.prompts, args.responses, cfg.temperature), 1)
    by_id = {p.id: p for p in session.train_prompts}
    gold = pd.Series(gold_rewards(session.task, [by_id[i] for i in table["prompt_id"]], list(table["text"]),
                                  list(table["n_tokens"])), index=table["response_id"].to_numpy())
    n_tok = table["n_tokens"].to_numpy()
    print(f"model={args.model}: warm start on {cfg.seed_labels} gold pairs (fp32), then {args.prompts} prompts x "
          f"{args.responses} responses (mean {n_tok.mean():.1f} tokens), beta {cfg.beta}; "
          f"setup {time.perf_counter() - start:.0f} s")
    compare(table, rescore(session, table, "fp32", args.rebatch), gold, reg, cfg.beta,
            f"fp32, batches of {args.rebatch}")
    compare(table, rescore(session, table, "bf16", cfg.score_batch_size), gold, reg, cfg.beta, "bf16")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    print(machine("end"))


if __name__ == "__main__":
    main()
