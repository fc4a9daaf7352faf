"""Which evaluation design separates two strategies with the least CPU: prompts, greedy vs samples, shared seeds.

Trains one round of each strategy for each seed on one session (the
comparison's own code: ``acqkit.round.loop.run``), then evaluates every
trained policy on every held-out prompt of the task in three ways, timing each:

* greedy: one greedy response per prompt (acqkit's evaluation);
* k samples per prompt (temperature 1, the run's top-k), the same random
  streams for every strategy of a seed (common random numbers: keyed sampling
  draws response ``j`` to a prompt from (seed, prompt id, ``j``), so the first
  ``j`` of ``k`` samples are exactly the ``j`` samples of a smaller run);
* k samples with a stream of their own per strategy (independent seeds).

The cost of j < k shared-seed samples is taken as j/k of the k-sample
evaluation (one sample is timed on its own).

Each response's win probability against the initial policy's greedy response
is the gold Bradley-Terry probability, as in ``results.csv``. A design's
paired difference (strategy minus the baseline at the same seed) is averaged
over its prompts; subsets are the first n prompts. Reported per design: the
mean and SD over seeds of the paired difference, the CPU seconds of one
evaluation, and SD^2 x seconds, the evaluation CPU a given precision costs
(seeds needed grow with SD^2): lower is better.

    python benchmarks/eval_design.py --seeds 6            # SmolLM2, the sentiment task, ~25 min here
    python benchmarks/eval_design.py --model tiny --preset smoke --seeds 3   # a quick check
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from acqkit.components import Task, declared
from acqkit.config import preset
from acqkit.plugins import registry
from acqkit.round.evaluate import decode, greedy, shared_gold
from acqkit.round.loop import run
from acqkit.round.sample import GenConfig
from acqkit.round.session import Session, stage_seed
from acqkit.strategies import bradley_terry
from scoring import machine  # benchmarks/scoring.py


def win_probs(session: Session, responses: list[list[int]], per_prompt: int, tau: float, gen_batch: int) -> np.ndarray:
    """``[prompts, per_prompt]`` gold win probabilities against the initial policy's greedy responses."""
    ev = session.evalset
    prompts = [p for p in ev.prompts for _ in range(per_prompt)]
    rewards = shared_gold(session.task, prompts, decode(session.tokenizer, responses), [len(r) for r in responses],
                          gen_batch)
    return bradley_terry(rewards, np.repeat(ev.ref_rewards, per_prompt), tau).reshape(-1, per_prompt)


def evaluate_designs(session: Session, cfg, k: int, crn_seed: int, own_seed: int) -> dict:
    ev, tau = session.evalset, declared(session.task, Task, "tau")
    keys = [p.id for p in ev.prompts]
    out, seconds = {}, {}
    t0 = time.process_time()
    responses = greedy(session.policy, session.tokenizer, ev.prompt_ids, cfg.max_new_tokens, cfg.gen_batch_size,
                       session.generate)
    out["greedy"] = win_probs(session, responses, 1, tau, cfg.gen_batch_size)
    seconds["greedy"] = time.process_time() - t0
    gen = GenConfig(cfg.max_new_tokens, 1.0, cfg.top_k, cfg.gen_batch_size)
    for name, n, seed in (("sampled-1", 1, crn_seed), ("sampled-k", k, crn_seed), ("independent-k", k, own_seed)):
        t0 = time.process_time()
        responses = session.generate(session.policy, session.tokenizer, ev.prompt_ids, n, gen, seed, keys=keys)
        out[name] = win_probs(session, responses, n, tau, cfg.gen_batch_size)
        seconds[name] = time.process_time() - t0
    assert np.array_equal(out["sampled-1"][:, 0], out["sampled-k"][:, 0]), "keyed sampling: k=1 is the first of k"
    return {"p": {n: v.tolist() for n, v in out.items()}, "seconds": seconds}


def designs(results: dict, strategies: list[str], seeds: list[int], k: int, n_prompts: int) -> list[dict]:
    """Every (prompts, responses, seeds) design: paired differences over seeds and the CPU of one evaluation."""
    base, rows = strategies[0], []
    subsets = sorted({max(1, n_prompts // 4), n_prompts // 2, 24, n_prompts} & set(range(1, n_prompts + 1)))
    for n in subsets:
        for label, key, take, source in (
            ("greedy", "greedy", 1, "greedy"),
            ("1 sample, shared seeds", "sampled-k", 1, "sampled-1"),
            *[(f"{j} samples, shared seeds", "sampled-k", j, "sampled-k") for j in sorted({2, k}) if j <= k],
            (f"{k} samples, own seeds", "independent-k", k, "independent-k"),
        ):
            for other in strategies[1:]:
                diffs = []
                for s in seeds:
                    mine = np.asarray(results[other][s]["p"][key])[:n, :take].mean()
                    theirs = np.asarray(results[base][s]["p"][key])[:n, :take].mean()
                    diffs.append(mine - theirs)
                full = np.mean([results[st][s]["seconds"][source] for st in strategies for s in seeds])
                cost = full * n / n_prompts * (take / k if source == "sampled-k" and take < k else 1.0)
                sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan")
                rows.append({"prompts": n, "design": label, "strategy": other, "mean_diff": float(np.mean(diffs)),
                             "sd": sd, "cpu_seconds": cost, "sd2_x_seconds": sd * sd * cost})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--strategies", default="random,smallest-margin")
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--k", type=int, default=4, help="sampled responses per prompt")
    ap.add_argument("--out", default=None, help="write the per-prompt results and the design table (JSON)")
    args = ap.parse_args()
    print(machine("start"), flush=True)
    reg = registry()
    base = preset(args.preset, model=args.model, rounds=1, kl_samples=0)
    session = Session.open(replace(base, eval_prompts=10**6), reg)  # every held-out prompt
    n_prompts = len(session.evalset.prompts)
    cfg = replace(base, eval_prompts=10**6)
    strategies, seeds = args.strategies.split(","), list(range(args.seeds))
    results: dict = {st: {} for st in strategies}
    for s in seeds:
        for st in strategies:
            t0 = time.perf_counter()
            run(replace(cfg, strategy=st, seed=s), session=session)
            results[st][s] = evaluate_designs(session, cfg, args.k, stage_seed(s, "eval-design"),
                                              stage_seed(s, st, "eval-design"))
            print(f"seed {s} {st}: trained and evaluated in {time.perf_counter() - t0:.0f} s; "
                  f"greedy win rate {np.mean(results[st][s]['p']['greedy']):.3f}", flush=True)
    rows = designs(results, strategies, seeds, args.k, n_prompts)
    print(f"\n{n_prompts} held-out prompts, {len(seeds)} seeds, baseline {strategies[0]}; CPU seconds of one "
          f"evaluation of one policy (process time)")
    print(f"{'prompts':>7s}  {'design':26s} {'strategy':16s} {'mean diff':>9s} {'SD':>7s} {'CPU s':>7s} "
          f"{'SD^2 x s':>9s}")
    for r in rows:
        print(f"{r['prompts']:7d}  {r['design']:26s} {r['strategy']:16s} {r['mean_diff']:+9.4f} {r['sd']:7.4f} "
              f"{r['cpu_seconds']:7.1f} {r['sd2_x_seconds']:9.5f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"rows": rows, "results": results}, indent=1))
    print(machine("end"))


if __name__ == "__main__":
    main()
