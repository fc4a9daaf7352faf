"""Scorer throughput (tokens/s) on the sentiment task's length mix vs the padding-free limit.

What is measured, on the same sequences (chat-templated sentiment prompts,
responses of 8..64 tokens of review-like words):

* ``acqkit.round.score.score``: left-padded, length-bucketed batches, logits only at
  response positions (``logits_to_keep``); with and without the per-token entropy.
* the same batches without length bucketing (input order), to show what the buckets buy;
* the padding-free limit as the issue defines it: one unpadded forward per
  sequence (batch of 1), logits only at that sequence's response positions;
* a packed estimate: sequences concatenated into rows of at most ``--pack`` tokens
  with restarting position ids (transformers then builds a block-diagonal causal
  mask), logits only at response positions. No padding at all, but attention
  still runs over the whole row (masked blocks included), so it is an achievable
  figure, not an ideal one. Its log-probs are checked against the per-sequence ones.

Tokens/s counts real tokens (prompt + response) for every method; achieved FLOP/s
(useful FLOPs only: 2 x matmul parameters x real tokens for the backbone, plus the
LM head at response tokens) is shown against the matmul peak of the same dtype,
measured at the start (``_peak.py``). ``--precision bf16`` scores under bf16
autocast (the head stays float32). Each repeat runs
every method once, in rotating order; the table shows each method's best repeat
(on a shared machine other jobs only ever add time).
Run on demand: ``python benchmarks/scoring.py --model smollm2``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from acqkit.round.batching import left_pad, length_buckets
import _peak  # benchmarks/_peak.py
from acqkit.models import autocast, load_model, load_tokenizer, resolve_precision
from acqkit.round.sample import encode_prompts
from acqkit.round.score import response_logps, score

WORDS = (
    "the film movie story acting cast plot scenes director music ending characters performance cinema "
    "audience great wonderful brilliant moving beautiful superb charming funny warm powerful stunning "
    "dull slow boring weak bad messy flat tired lovely best perfect fine good strong clever smart "
    "and but with a is was it this that truly really very so quite an of in on for to its by"
).split()


def machine(label: str) -> str:
    """One line the performance page quotes: cores, torch threads, load averages."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"[{label}] {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  nproc={os.cpu_count()}  "
            f"torch threads={torch.get_num_threads()}  loadavg(1/5/15 min)={load}")


def length_mix(tokenizer, n: int, seed: int = 0, lo: int = 8, hi: int = 64):
    """``n`` (prompt messages, prompt ids, response ids, response text) like a sentiment round.

    Prompts are drawn from the task's train prompts (chat template applied, as
    the sampler does); each response has a uniform length in ``lo..hi`` tokens.
    """
    from acqkit_plugins.sentiment import load_prompts

    rng = np.random.default_rng(seed)
    pool = load_prompts("train")
    pool_ids = encode_prompts(tokenizer, pool)
    out = []
    for _ in range(n):
        k = int(rng.integers(len(pool)))
        want = int(rng.integers(lo, hi + 1))
        words = []
        while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < want:
            words += list(rng.choice(WORDS, size=8))
        ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][:want]
        out.append((pool[k].messages, pool_ids[k], ids, tokenizer.decode(ids)))
    return out


def padding_fraction(prompts, responses, batches) -> tuple[float, float]:
    """(share of padded input positions, share of wasted response-logit positions) over ``batches``."""
    cells = real = lcells = lreal = 0
    for idx in batches:
        lens = [len(prompts[i]) + len(responses[i]) for i in idx]
        rlens = [len(responses[i]) for i in idx]
        cells += len(idx) * max(lens)
        real += sum(lens)
        lcells += len(idx) * max(rlens)
        lreal += sum(rlens)
    return 1 - real / cells, 1 - lreal / lcells


@torch.inference_mode()
def unbucketed(model, prompts, responses, pad_id: int, batch_size: int) -> np.ndarray:
    """The scorer's batches in input order (no length buckets): what bucketing saves."""
    out = np.zeros(len(prompts))
    for s in range(0, len(prompts), batch_size):
        ids, mask, pos, resp = left_pad(prompts[s : s + batch_size], responses[s : s + batch_size], pad_id)
        out[s : s + batch_size] = response_logps(model, ids, mask, pos, resp)[0].double().numpy()
    return out


def response_sum(logits, targets) -> float:
    return torch.log_softmax(logits.float(), -1).gather(-1, targets[:, None]).sum().item()


@torch.inference_mode()
def per_sequence(model, prompts, responses) -> np.ndarray:
    """The limit: one unpadded forward per sequence, logits only where a response token is predicted."""
    out = np.zeros(len(prompts))
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids = torch.tensor([p + r])
        keep = torch.arange(len(p) - 1, len(p) + len(r) - 1)
        with autocast(model):  # --precision: the same compute dtype as acqkit's scorer
            logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits[0]
        out[i] = response_sum(logits, ids[0, len(p):])
    return out


@torch.inference_mode()
def packed(model, prompts, responses, max_tokens: int) -> np.ndarray:
    """Sequences packed into rows of <= ``max_tokens`` (greedy, sorted by length), no padding at all."""
    order = sorted(range(len(prompts)), key=lambda i: -(len(prompts[i]) + len(responses[i])))
    rows, row, used = [], [], 0
    for i in order:
        n = len(prompts[i]) + len(responses[i])
        if row and used + n > max_tokens:
            rows.append(row)
            row, used = [], 0
        row.append(i)
        used += n
    rows.append(row)
    out = np.zeros(len(prompts))
    for row in rows:
        ids, pos, keep, spans = [], [], [], []
        for i in row:
            p, r = prompts[i], responses[i]
            start = len(ids)
            ids += p + r
            pos += list(range(len(p) + len(r)))
            keep += range(start + len(p) - 1, start + len(p) + len(r) - 1)
            spans.append((i, len(r)))
        ids_t = torch.tensor([ids])
        keep_t = torch.tensor(keep)
        # position ids that restart per sequence and no attention mask: transformers builds the
        # block-diagonal causal mask itself (cache disabled, as its packed-sequence detection needs).
        with autocast(model):
            logits = model(input_ids=ids_t, position_ids=torch.tensor([pos]), logits_to_keep=keep_t,
                           use_cache=False).logits[0]
        token_logp = torch.log_softmax(logits.float(), -1).gather(-1, ids_t[0, keep_t + 1][:, None])[:, 0]
        at = 0
        for i, n in spans:
            out[i] = token_logp[at : at + n].sum().item()
            at += n
    return out


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, smollm2, or a model path")
    parser.add_argument("--n", type=int, default=256, help="number of (prompt, response) sequences")
    parser.add_argument("--batch-size", type=int, default=16, help="scorer batch size (RunConfig.score_batch_size)")
    parser.add_argument("--pack", type=int, default=512, help="max tokens per packed row")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine("start"))
    precision = resolve_precision(args.precision)
    peaks = _peak.peaks()
    print(f"precision {precision}; {_peak.describe(peaks)}")

    tok = load_tokenizer(args.model)
    model = load_model(args.model, precision=precision)
    mix = length_mix(tok, args.n, args.seed)
    prompts, responses = [m[1] for m in mix], [m[2] for m in mix]
    pad = tok.pad_token_id
    tokens = sum(len(p) + len(r) for p, r in zip(prompts, responses))
    plen, rlen = np.array([len(p) for p in prompts]), np.array([len(r) for r in responses])
    print(f"model={args.model}  {args.n} sequences, {tokens} tokens (prompt {plen.min()}..{plen.max()} "
          f"mean {plen.mean():.1f}, response {rlen.min()}..{rlen.max()} mean {rlen.mean():.1f}), "
          f"batch size {args.batch_size}")

    methods = {
        "acqkit score (buckets)": lambda: score(model, prompts, responses, pad, args.batch_size, with_entropy=False)[0],
        "acqkit score (buckets) + entropy": lambda: score(model, prompts, responses, pad, args.batch_size)[0],
        "same batches, no buckets": lambda: unbucketed(model, prompts, responses, pad, args.batch_size),
        "limit: per-sequence, unpadded": lambda: per_sequence(model, prompts, responses),
        f"packed rows <= {args.pack} tokens": lambda: packed(model, prompts, responses, args.pack),
    }
    names = list(methods)
    timed(methods[names[0]])  # warm-up (allocator, kernels), not reported
    seconds = {name: [] for name in names}
    results = {}
    for rep in range(args.repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            t, results[name] = timed(methods[name])
            seconds[name].append(t)

    ref = results["limit: per-sequence, unpadded"]
    limit = tokens / min(seconds["limit: per-sequence, unpadded"])
    pack = tokens / min(seconds[f"packed rows <= {args.pack} tokens"])
    print(f"\nbest of {args.repeats} repeats; tokens/s counts real tokens only")
    print(f"{'method':36s} {'seconds':>8s} {'tokens/s':>9s} {'vs limit':>9s} {'vs packed':>9s} {'max |dlogp|':>11s}")
    for name in names:
        s = min(seconds[name])
        diff = float(np.abs(results[name] - ref).max())
        print(f"{name:36s} {s:8.2f} {tokens / s:9.0f} {tokens / s / limit:9.2f} {tokens / s / pack:9.2f} {diff:11.2e}")

    bucketed = length_buckets([len(p) + len(r) for p, r in zip(prompts, responses)], args.batch_size)
    in_order = [list(range(s, min(s + args.batch_size, args.n))) for s in range(0, args.n, args.batch_size)]
    # the second column is the padding of the [rows, longest response] grid, which acqkit's LM head now skips
    print(f"\n{'padding':36s} {'input positions':>16s} {'response grid':>16s}")
    for name, batches in (("length buckets (acqkit)", bucketed), ("input order", in_order)):
        seq, logit = padding_fraction(prompts, responses, batches)
        print(f"{name:36s} {seq:16.1%} {logit:16.1%}")
    body = _peak.matmul_params(model) - _peak.head_params(model)
    flop = 2 * body * tokens + 2 * _peak.head_params(model) * int(rlen.sum())
    print("\n" + _peak.flops_line("acqkit score (buckets), useful FLOPs", flop,
                                  min(seconds["acqkit score (buckets)"]), peaks, precision))
    ratio = tokens / min(seconds["acqkit score (buckets)"]) / limit
    print(f"\nacqkit / limit = {ratio:.2f} (target >= 0.8: {'MET' if ratio >= 0.8 else 'MISSED'})")
    print(machine("end"))


if __name__ == "__main__":
    main()
