"""This machine's limits, measured by the benchmark that quotes them: matmul FLOP/s per dtype, memory bandwidth.

A stage's achieved FLOP/s is only meaningful next to what the same dtype can
do here and now (other jobs on a shared machine lower both alike), so every
benchmark measures the peak itself instead of quoting a datasheet.

* matmul peak: the best timing of a 2048 x 2048 ``torch.matmul`` (2 * 2048^3
  FLOP) in float32 and in bfloat16, over about 2 s of repeats after about 1 s
  of warm-up (a short warm-up left oneDNN and the clock cold: the bf16 figure
  then varied 231 to 411 GFLOP/s between runs);
* memory bandwidth: the best of the same timed repeats of a 512 MiB float32
  copy (read + write counted: 2 x 512 MiB per copy).

FLOP counts of a transformer use the usual ``2 x parameters x tokens`` per
forward and ``6 x parameters x tokens`` for forward + backward (the embedding
lookup is not a matmul and is left out; attention's own FLOPs are small at
these lengths and left out too), so the fractions are slight underestimates.
"""
from __future__ import annotations

import time

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _best(fn, repeats: int, warm_s: float = 1.0, run_s: float = 2.0) -> float:
    """Fastest single call of ``fn``: after ``warm_s`` of warm-up, over at least ``repeats`` calls and ``run_s``."""
    until = time.perf_counter() + warm_s
    fn()  # warm-up: allocator, kernels, oneDNN, the clock
    while time.perf_counter() < until:
        fn()
    best, done, until = float("inf"), 0, time.perf_counter() + run_s
    while done < repeats or time.perf_counter() < until:
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
        done += 1
    return best


def matmul_peak(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an ``n x n`` matmul in ``dtype`` (fp32 | bf16) on the CPU, best of the timed repeats."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(DTYPES[dtype])
    b = torch.randn(n, n, generator=g).to(DTYPES[dtype])
    return 2 * n**3 / _best(lambda: torch.matmul(a, b), repeats)


def memory_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """Bytes/s of a large tensor copy (read + write), best of the timed repeats."""
    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / _best(lambda: dst.copy_(src), repeats)


def peaks() -> dict:
    """``{"fp32": FLOP/s, "bf16": FLOP/s, "bandwidth": bytes/s}``, measured now."""
    return {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16"), "bandwidth": memory_bandwidth()}


def model_step(model, precision: str, rows: int = 8, length: int = 168) -> float:
    """FLOP/s of one bare forward + backward of ``model`` on ``rows x length`` random tokens, at ``precision``.

    The ceiling a trainer of this model can reach here: the same matmul shapes
    with none of a trainer's work around them (no padding, no loss, no
    optimizer). Under bf16 autocast the norms, rotary embeddings and
    activations stay float32 and memory-bound, so it sits well below the matmul
    peak on a small model. One warm-up and one timed call; the gradients are
    dropped, the weights are not changed.
    """
    from acqkit.models.precision import autocast, precision_of, set_precision

    was = precision_of(model)
    set_precision(model, precision)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (rows, length), generator=g)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(True)

    def step():
        with autocast(model):
            loss = model(input_ids=ids).logits.float().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    try:
        step()
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        set_precision(model, was)
    return 6 * matmul_params(model) * rows * length / seconds


def describe(p: dict) -> str:
    return (f"measured here: matmul 2048x2048 fp32 {p['fp32'] / 1e9:.0f} GFLOP/s, bf16 {p['bf16'] / 1e9:.0f} "
            f"GFLOP/s; memory copy {p['bandwidth'] / 1e9:.1f} GB/s")


def matmul_params(model) -> int:
    """Parameters that take part in matmuls per token: all but the input embedding (the tied head counts once)."""
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    total = sum(p.numel() for p in model.parameters())
    tied = head is not None and head.weight is embed
    return total - embed.numel() + (embed.numel() if tied else 0)


def head_params(model) -> int:
    head = model.get_output_embeddings()
    return head.weight.numel() if head is not None else 0


def flops_line(label: str, flop: float, seconds: float, p: dict, precision: str) -> str:
    """``label: X GFLOP/s = Y % of the <dtype> matmul peak``."""
    rate = flop / seconds
    return (f"{label}: {flop / 1e9:.1f} GFLOP in {seconds:.2f} s = {rate / 1e9:.1f} GFLOP/s, "
            f"{rate / p[precision]:.0%} of the measured {precision} matmul peak")
