"""Time and peak memory of one full acqkit round, stage by stage (sample, score, select, label, train, evaluate).

The round is round 1 of ``preset("default")`` (SmolLM2-135M, the random
strategy, gold labels) run through the stage functions of ``acqkit.round.loop`` with
one ``Session``, from the initial weights (the round-0 warm start is not part of
the round and is skipped). ``sample_and_score`` is one function in acqkit; to
split it, this script wraps the session's sampler (``session.generate``) and the
``score`` function of ``acqkit.round.loop`` (policy) and ``acqkit.round.refcache`` (reference)
(in this process only, acqkit's code is untouched); whatever else it does (decoding,
assembling the response table) is shown as ``table``. Labels are persisted to a
temporary run directory, as in a real run.

Memory, per stage:
* peak RSS sampled by a psutil thread every 5 ms (short spikes can be missed),
  and its rise over the RSS at the start of the stage;
* ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the stage: the process's
  high-water mark so far (monotonic, so it only says when the peak was reached).
tracemalloc is not used: it does not see torch's tensor allocations.
Run on demand: ``python benchmarks/round.py`` (``--model tiny`` for a quick check).
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from acqkit.round import budget as budgets
from acqkit.round import label, loop, refcache
from acqkit.components import RefineContext
from acqkit.config import preset
from acqkit.plugins import registry
from acqkit.round.session import Session, stage_seed
from acqkit.round.select import check_pairs
from scoring import machine  # benchmarks/scoring.py

MiB = 2**20


class Recorder:
    """Wall time and sampled peak RSS of named stages."""

    def __init__(self, interval: float = 0.005):
        self.proc = psutil.Process()
        self.rows: dict[str, dict] = {}
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        self._thread.start()

    def _sample(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._peak = max(self._peak, self.proc.memory_info().rss)

    @contextlib.contextmanager
    def stage(self, name: str):
        rss0 = self.proc.memory_info().rss
        self._peak = rss0
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            peak = max(self._peak, self.proc.memory_info().rss)
            row = self.rows.setdefault(name, {"seconds": 0.0, "peak": 0, "rise": 0})
            row["seconds"] += seconds
            row["peak"] = max(row["peak"], peak)
            row["rise"] = max(row["rise"], peak - rss0)
            row["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            with self.stage(name):
                return fn(*args, **kwargs)

        return timed

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="override the preset's model (default: smollm2)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--budget", type=int, default=None, help="labels in the round (default: the preset's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine("start"))
    cfg = preset(args.preset, model=args.model, budget=args.budget, rounds=1)
    reg = registry()
    rec = Recorder()

    with rec.stage("session open (not part of the round)"):
        session = Session.open(cfg, reg)
    strategy = reg.build("strategy", cfg.strategy)
    labeler, refiner = reg.build("labeler", cfg.labeler), reg.build("refiner", cfg.refiner)
    budget = budgets.per_round(cfg.budget, cfg.schedule, cfg.rounds)[0]
    plan = strategy.plan(budget, cfg.n_responses, cfg.temperature)
    rnd = 1
    scratch = tempfile.TemporaryDirectory(prefix="acqkit-round-bench-")  # labels.jsonl + ledger, as in a real run
    run_dir = Path(scratch.name)

    start = time.perf_counter()
    generate, score = session.generate, loop.score
    session.generate, loop.score, refcache.score = rec.wrap("sample", generate), rec.wrap("score", score), \
        rec.wrap("score", score)
    try:
        table = loop.sample_and_score(session, cfg, plan, rnd)
    finally:
        session.generate, loop.score, refcache.score = generate, score, score
    rest = time.perf_counter() - start - rec.rows["sample"]["seconds"] - rec.rows["score"]["seconds"]
    rec.rows["table"] = {"seconds": rest}  # decode + assemble, between the wrapped calls: no memory of its own
    with rec.stage("select"):
        rng = np.random.default_rng(stage_seed(cfg.seed, rnd, "select"))
        pairs = check_pairs(strategy.select(table, budget, rng, cfg.beta), table, budget, cfg.strategy)
    with rec.stage("label"):
        labels = label.label_pairs(session, cfg, labeler, cfg.labeler, pairs, table, rnd, run_dir)
    with rec.stage("train"):
        examples = loop.examples_from(refiner.refine(labels, table), table)
        targets = refiner.in_training(RefineContext(round=rnd, beta=cfg.beta, reference=None))
        stats = loop.train(session.policy, examples, loop.train_config(cfg, rnd), session.tokenizer.pad_token_id,
                           targets=targets)
    with rec.stage("evaluate"):
        metrics = loop.evaluate_policy(session, cfg, rnd)
    total = time.perf_counter() - start
    rec.close()
    scratch.cleanup()

    n_tok = table["n_tokens"].to_numpy()
    print(f"model={cfg.model} preset={args.preset} strategy={cfg.strategy} labeler={cfg.labeler}: "
          f"{plan.n_prompts} prompts x {plan.n_responses} responses (max {cfg.max_new_tokens} new tokens, "
          f"mean {n_tok.mean():.1f}), {len(labels)} labelled pairs, {stats['steps']} train steps "
          f"({cfg.epochs} epochs, batch {cfg.batch_size}), eval on {cfg.eval_prompts} prompts "
          f"(greedy + {cfg.kl_samples} KL sample each)")
    print(f"win rate {metrics['win_rate']:.3f}, train loss {stats['loss']:.4f}\n")
    print(f"{'stage':38s} {'seconds':>8s} {'share':>6s} {'peak RSS':>9s} {'rise':>8s} {'ru_maxrss':>10s}")
    order = ["session open (not part of the round)", "sample", "score", "table", "select", "label", "train",
             "evaluate"]
    for name in order:
        r = rec.rows[name]
        share = "" if name.startswith("session") else f"{r['seconds'] / total:6.1%}"
        memory = (f"{r['peak'] / MiB:7.0f} MiB {r['rise'] / MiB:4.0f} MiB {r['maxrss'] / MiB:6.0f} MiB"
                  if "peak" in r else f"{'-':>11s} {'-':>8s} {'-':>10s}")
        print(f"{name:38s} {r['seconds']:8.2f} {share:>6s} {memory}")
    print(f"{'round total':38s} {total:8.2f} {'100%':>6s}")
    print("\nmemory: peak RSS sampled by psutil every 5 ms; rise = peak minus RSS at the stage's start; "
          "ru_maxrss = resource.getrusage high-water mark after the stage")
    print(machine("end"))


if __name__ == "__main__":
    main()
