"""Time all-pairs margins plus selection for every built-in strategy.

N = 16 responses for each of 10,000 prompts (1.2 M pairs), random log-probs.
Run on demand: ``python benchmarks/selection.py``. The issue's bar is well under a
second per strategy.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from acqkit.plugins import registry
from acqkit.strategies import grouped

SPECS = (
    "smallest-margin", "random", "margin(instance=largest)", "always-smallest", "always-random",
    "always-largest", "margin(instance=smallest, corpus=largest, normalize=true)",
    "apl-entropy", "apl-certainty", "apl-hybrid",
)


def response_table(n_prompts: int, n_responses: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = n_prompts * n_responses
    return pd.DataFrame({
        "prompt_id": np.repeat([f"prompt-{i}" for i in range(n_prompts)], n_responses),
        "response_id": rng.permutation(rows),
        "text": "",
        "n_tokens": rng.integers(1, 512, rows),
        "logp_policy": rng.normal(-150.0, 40.0, rows),
        "logp_ref": rng.normal(-150.0, 40.0, rows),
        "entropy": rng.uniform(0.5, 3.0, rows),
    })


def best_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--responses", type=int, default=16)
    parser.add_argument("--budget", type=int, default=2_500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    table = response_table(args.prompts, args.responses)
    pairs = args.prompts * args.responses * (args.responses - 1) // 2
    print(f"{args.prompts} prompts x {args.responses} responses = {pairs:,} pairs, budget {args.budget}; "
          f"best of {args.repeat} runs")
    values = table["logp_policy"].to_numpy()
    print(f"  {'(acqkit.strategies.grouped alone: the [P, N] reshape)':60s} "
          f"{best_ms(lambda: grouped(table, values), args.repeat):8.1f} ms")
    reg = registry()
    for spec in SPECS:
        strategy = reg.build("strategy", spec)
        chosen = strategy.select(table, args.budget, np.random.default_rng(0), 0.1)
        ms = best_ms(lambda: strategy.select(table, args.budget, np.random.default_rng(0), 0.1), args.repeat)
        print(f"  {spec:60s} {ms:8.1f} ms  ({len(chosen)} pairs)")


if __name__ == "__main__":
    main()
