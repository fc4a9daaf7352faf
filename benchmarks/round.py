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

Achieved FLOP/s of the sample, score and train stages (useful FLOPs: real
tokens only, ``_peak.py``) against the matmul peak of the run's dtype, measured
by this script at its start; sampling is memory-bound, so it also prints the
bytes of weights read per generated token and the weight-read rate against a
measured copy bandwidth. ``--precision bf16`` runs the round in bf16 autocast.
The train line is also set against a bare forward + backward of the same model
(``_peak.model_step``), the ceiling for that model's shapes on this machine.
Run on demand: ``python benchmarks/round.py`` (``--model tiny`` for a quick check).

``--processes 1,2`` runs the round once per process count (``accelerate
launch --multi_gpu``, gloo on a CPU) with the machine's cores divided between
the processes (``OMP_NUM_THREADS``) and ``--grad-accum`` set so that processes x
grad_accum is the same in every run: each computes the same round, bit for
bit, and the script checks it. It prints the main process's per-stage seconds
side by side (FLOP/s are not measured in this mode).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from acqkit import distributed
from acqkit.round import budget as budgets
from acqkit.round import label, loop, refcache
from acqkit.components import RefineContext
from acqkit.config import preset
from acqkit.plugins import registry
from acqkit.round.session import Session, stage_seed
from acqkit.round.select import check_pairs
import _peak  # benchmarks/_peak.py
from acqkit.models import resolve_precision
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


def stage_flops(session, cfg, table, examples, rows, peaks, precision: str) -> list[str]:
    """Useful FLOP/s of sample, score and train, and sampling's weight reads against the memory bandwidth."""
    model = session.policy
    params, head = _peak.matmul_params(model), _peak.head_params(model)
    body = params - head
    plen = table["prompt_ids"].map(len).to_numpy()
    rlen = table["n_tokens"].to_numpy()
    out = []
    # sample: prefill of the prompts, then one decode step per new token for every row of a generate call
    flop = 2 * body * plen.sum() + 2 * params * rlen.sum()
    out.append(_peak.flops_line("sample", flop, rows["sample"]["seconds"], peaks, precision))
    chunks = [rlen[s : s + cfg.gen_batch_size] for s in range(0, len(rlen), cfg.gen_batch_size)]
    steps = sum(int(c.max()) for c in chunks)  # a call decodes until its longest response ends
    weight_bytes = params * (2 if precision == "bf16" else 4)  # bf16: autocast's cached bf16 copies
    rows_per_step = sum(len(c) * int(c.max()) for c in chunks) / max(1, steps)
    rate = weight_bytes * steps / rows["sample"]["seconds"]
    out.append(f"sample, memory: {steps} decode steps x {weight_bytes / 1e6:.0f} MB of weights, "
               f"{rows_per_step:.0f} rows per step = {weight_bytes / rows_per_step / 1e6:.1f} MB of weights read per "
               f"generated token; weight reads {rate / 1e9:.1f} GB/s = {rate / peaks['bandwidth']:.0%} of the "
               f"measured copy bandwidth")
    # score: the policy and the reference, one forward each, head at response tokens only
    flop = 2 * (2 * body * (plen.sum() + rlen.sum()) + 2 * head * rlen.sum())
    out.append(_peak.flops_line("score (policy + reference)", flop, rows["score"]["seconds"], peaks, precision))
    # train: forward + backward of both responses of every pair, every epoch
    tokens = sum(2 * len(e.prompt) + len(e.a) + len(e.b) for e in examples) * cfg.epochs
    resp = sum(len(e.a) + len(e.b) for e in examples) * cfg.epochs
    train_flop = 6 * body * tokens + 6 * head * resp
    out.append(_peak.flops_line("train (forward + backward)", train_flop, rows["train"]["seconds"], peaks,
                                precision))
    ceiling = _peak.model_step(model, precision)
    out.append(f"model ceiling: a bare forward + backward of this model (8 x 168 tokens) runs at "
               f"{ceiling / 1e9:.1f} GFLOP/s = {ceiling / peaks[precision]:.0%} of the {precision} matmul peak; "
               f"train reaches {train_flop / rows['train']['seconds'] / ceiling:.0%} of it")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="override the preset's model (default: smollm2)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--budget", type=int, default=None, help="labels in the round (default: the preset's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16"),
                        help="RunConfig.precision (default: the preset's)")
    parser.add_argument("--processes", default=None, help="process counts to compare, e.g. 1,2")
    parser.add_argument("--grad-accum", type=int, default=None, help="RunConfig.grad_accum (default: the preset's)")
    parser.add_argument("--gen-batch-size", type=int, default=None,
                        help="RunConfig.gen_batch_size: sequences per generation chunk (default: the preset's)")
    parser.add_argument("--report", default=None, help=argparse.SUPPRESS)  # a --processes worker's JSON
    args = parser.parse_args()
    if args.processes:
        return compare_processes(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    main_process = distributed.is_main()
    say = print if main_process else (lambda *a, **k: None)
    say(machine("start"))
    cfg = preset(args.preset, model=args.model, budget=args.budget, rounds=1, precision=args.precision,
                 grad_accum=args.grad_accum, gen_batch_size=args.gen_batch_size)
    precision = resolve_precision(cfg.precision)
    peaks = _peak.peaks() if not args.report else None  # the workers of --processes skip FLOP/s
    if peaks:
        say(f"precision {cfg.precision} -> {precision}; {_peak.describe(peaks)}")
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

    if args.report:  # a worker of --processes: the main process reports, the others only took part
        if main_process:
            Path(args.report).write_text(json.dumps({
                "seconds": {k: v["seconds"] for k, v in rec.rows.items()}, "total": total,
                "peak_rss": max(v.get("peak", 0) for v in rec.rows.values()),
                "win_rate": metrics["win_rate"], "kl": metrics["kl"], "loss": stats["loss"],
                "table": float(table["logp_policy"].sum() + table["logp_ref"].sum())}))
        return
    n_tok = table["n_tokens"].to_numpy()
    print(f"model={cfg.model} preset={args.preset} strategy={cfg.strategy} labeler={cfg.labeler}: "
          f"{plan.n_prompts} prompts x {plan.n_responses} responses (max {cfg.max_new_tokens} new tokens, "
          f"mean {n_tok.mean():.1f}), {len(labels)} labelled pairs, {stats['steps']} train steps "
          f"({cfg.epochs} epochs, batch {cfg.batch_size}), eval on {cfg.eval_prompts} prompts "
          f"(greedy + {cfg.kl_samples} KL sample each)")
    print(f"win rate {metrics['win_rate']:.3f}, train loss {stats['loss']:.4f}\n")
    print(f"{'stage':38s} {'seconds':>8s} {'share':>6s} {'peak RSS':>9s} {'rise':>8s} {'ru_maxrss':>10s}")
    for name in STAGES:
        r = rec.rows[name]
        share = "" if name.startswith("session") else f"{r['seconds'] / total:6.1%}"
        memory = (f"{r['peak'] / MiB:7.0f} MiB {r['rise'] / MiB:4.0f} MiB {r['maxrss'] / MiB:6.0f} MiB"
                  if "peak" in r else f"{'-':>11s} {'-':>8s} {'-':>10s}")
        print(f"{name:38s} {r['seconds']:8.2f} {share:>6s} {memory}")
    print(f"{'round total':38s} {total:8.2f} {'100%':>6s}")
    print()
    for line in stage_flops(session, cfg, table, examples, rec.rows, peaks, precision):
        print(line)
    print("\nmemory: peak RSS sampled by psutil every 5 ms; rise = peak minus RSS at the stage's start; "
          "ru_maxrss = resource.getrusage high-water mark after the stage")
    print(machine("end"))


STAGES = ["session open (not part of the round)", "sample", "score", "table", "select", "label", "train", "evaluate"]


def compare_processes(args) -> None:
    """Run the round under 1, 2, ... processes sharing the cores; print the main process's stages side by side."""
    counts = [int(p) for p in args.processes.split(",")]
    cores = args.threads or os.cpu_count() or 1
    most = max(counts)
    if any(most % p for p in counts):
        sys.exit(f"--processes {args.processes}: every count must divide {most} (processes x grad_accum is fixed)")
    print(machine("start"))
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    passed = [a for k in ("model", "preset", "budget", "precision", "gen_batch_size") if getattr(args, k) is not None
              for a in (f"--{k.replace('_', '-')}", str(getattr(args, k)))]
    reports = {}
    with tempfile.TemporaryDirectory(prefix="acqkit-round-procs-") as tmp:
        for p in counts:
            report = Path(tmp) / f"{p}.json"
            script = [__file__, *passed, "--grad-accum", str(most // p), "--report", str(report)]
            cmd = ([sys.executable, *script] if p == 1 else
                   [accelerate, "launch", "--multi_gpu", "--num_processes", str(p), "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", *script])
            threads = max(1, cores // p)
            print(f"{p} process(es) x {threads} thread(s), grad_accum {most // p}: {' '.join(cmd[:4])} ...", flush=True)
            subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
            reports[p] = json.loads(report.read_text())
    header = "".join(f" {f'{p} proc x {max(1, cores // p)} thr':>18s}" for p in counts)
    print(f"\n{'stage (main process, seconds)':38s}{header}")
    for name in STAGES + ["round total"]:
        cells = [reports[p]["total"] if name == "round total" else reports[p]["seconds"].get(name, float("nan"))
                 for p in counts]
        ratio = f"   x{cells[0] / cells[-1]:.2f}" if len(counts) > 1 and cells[-1] else ""
        print(f"{name:38s}" + "".join(f" {c:18.2f}" for c in cells) + ratio)
    print("peak RSS of the main process: " + ", ".join(f"{p}: {reports[p]['peak_rss'] / MiB:.0f} MiB" for p in counts))
    same = {json.dumps({k: reports[p][k] for k in ("win_rate", "kl", "loss", "table")}) for p in counts}
    print("the same round in every process count (table log-probs, loss, win rate, KL): "
          + ("yes, bit for bit" if len(same) == 1 else "NO: " + " | ".join(sorted(same))))
    print(machine("end"))


if __name__ == "__main__":
    main()
