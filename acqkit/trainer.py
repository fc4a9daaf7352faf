"""One DPO trainer for every strategy: sigmoid loss with soft targets.

Reference log-probs are precomputed (the scorer already has them), so a step
is one forward/backward of the policy over chosen and rejected stacked into a
single batch. Runs under accelerate, so the same code is single-process on a
laptop and data-parallel under ``accelerate launch``.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .batching import left_pad
from .progress import track
from .scorer import response_logps


@dataclass(frozen=True)
class TrainConfig:
    beta: float = 0.1
    lr: float = 5e-6
    epochs: int = 1
    batch_size: int = 8  # pairs per optimizer step (before accumulation)
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    warmup: float = 0.1  # fraction of steps with linear warm-up, then cosine decay
    seed: int = 0


@dataclass(frozen=True)
class Example:
    """A labelled pair: ``p`` is the probability that ``a`` is preferred."""

    prompt: list[int]
    a: list[int]
    b: list[int]
    ref_a: float
    ref_b: float
    p: float


def dpo_loss(pol_a, pol_b, ref_a, ref_b, p, beta: float):
    """``-[p log s(beta h) + (1-p) log s(-beta h)]``, ``h = (pol_a - ref_a) - (pol_b - ref_b)``.

    ``p = 1`` is standard DPO; ``p = 1 - eps`` is label-smoothed (conservative) DPO.
    """
    h = (pol_a - ref_a) - (pol_b - ref_b)
    return -(p * F.logsigmoid(beta * h) + (1 - p) * F.logsigmoid(-beta * h))


def lr_factor(step: int, total: int, warmup: float) -> float:
    warm = max(1, int(round(warmup * total)))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def batch_loss(model, batch: list[Example], beta: float, pad_id: int):
    """Mean DPO loss of a batch: a and b in one concatenated forward pass."""
    device = next(model.parameters()).device
    prompts = [e.prompt for e in batch] * 2
    responses = [e.a for e in batch] + [e.b for e in batch]
    ids, mask, pos, resp = (t.to(device) for t in left_pad(prompts, responses, pad_id))
    logps, _ = response_logps(model, ids, mask, pos, resp)
    pol_a, pol_b = logps[: len(batch)], logps[len(batch):]
    ref_a = torch.tensor([e.ref_a for e in batch], device=device, dtype=logps.dtype)
    ref_b = torch.tensor([e.ref_b for e in batch], device=device, dtype=logps.dtype)
    p = torch.tensor([e.p for e in batch], device=device, dtype=logps.dtype)
    return dpo_loss(pol_a, pol_b, ref_a, ref_b, p, beta).mean()


def train(model, examples: list[Example], cfg: TrainConfig, pad_id: int, accelerator=None) -> dict:
    """Train ``model`` in place on ``examples``; returns ``{"loss": mean loss, "steps": n}``."""
    from accelerate import Accelerator

    if not examples:
        return {"loss": float("nan"), "steps": 0}
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available(),
                                             gradient_accumulation_steps=cfg.grad_accum)
    micro = cfg.batch_size
    per_epoch = math.ceil(len(examples) / (micro * accelerator.num_processes))
    total_steps = max(1, math.ceil(per_epoch * cfg.epochs / cfg.grad_accum))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    order_rng = random.Random(cfg.seed)
    losses = []
    batches = []
    for _ in range(cfg.epochs):
        order = list(range(len(examples)))
        order_rng.shuffle(order)
        shard = order[accelerator.process_index :: accelerator.num_processes]
        batches += [[examples[i] for i in shard[s : s + micro]] for s in range(0, len(shard), micro)]
    for batch in track(batches, "training", total=len(batches)):
        with accelerator.accumulate(model):
            loss = batch_loss(model, batch, cfg.beta, pad_id)
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    accelerator.unwrap_model(model)
    accelerator.free_memory()
    return {"loss": sum(losses) / len(losses), "steps": len(batches)}
