"""One DPO trainer for every strategy: sigmoid loss with soft targets.

Reference log-probs are precomputed (the scorer already has them), so a step
is one forward/backward of the policy over chosen and rejected stacked into a
single batch. Runs under accelerate, so the same code is single-process on a
laptop and data-parallel under ``accelerate launch``. Under ``precision =
"bf16"`` (recorded on the model, ``acqkit.models.precision``) each forward runs
in bf16 autocast while the weights, gradients, AdamW state, log-probs and the
loss stay float32.
"""
from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from acqkit.errors import ConfigError
from acqkit.round.batching import left_pad
from acqkit.models.lora import has_adapters, is_adapter_param
from acqkit.progress import track
from acqkit.round.score import response_logits, summed_logps


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
    train_layers: int | None = None  # train only the last k transformer blocks (None: everything)
    group_by_length: bool = True  # batches of pairs of similar length, in a seeded random order (shard_batches)

    def __post_init__(self):
        """Fail at construction, naming the field, not steps into training (benchmarks and tests build these)."""
        for name in ("epochs", "batch_size", "grad_accum") + (("train_layers",) if self.train_layers is not None
                                                               else ()):
            if getattr(self, name) < 1:
                raise ConfigError(f"train config field {name!r} must be >= 1, got {getattr(self, name)}")
        for name in ("beta", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"train config field {name!r} must be > 0, got {getattr(self, name)}")
        if not self.max_grad_norm >= 0:
            raise ConfigError(f"train config field 'max_grad_norm' must be >= 0 (0 = no clipping), "
                              f"got {self.max_grad_norm}")
        if not 0 <= self.warmup <= 1:
            raise ConfigError(f"train config field 'warmup' must be a fraction in [0, 1], got {self.warmup}")


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


@dataclass
class TrainBatch:
    """One micro-batch as an in-training refiner sees it (tensors detached).

    Rows ``[:B]`` are the ``a`` responses and ``[B:]`` the ``b`` responses.
    ``targets(batch)`` returns the ``p`` to train on; SPA's confidence-based
    smoothing and decoupled noise detection are such functions.
    """

    step: int
    total_steps: int
    beta: float
    ids: torch.Tensor
    mask: torch.Tensor
    pos: torch.Tensor
    resp: torch.Tensor
    logits: torch.Tensor  # policy logits at response positions, [2B, R, V] (0 where resp is False)
    pol: torch.Tensor  # summed policy log-probs, [2B]
    ref: torch.Tensor  # summed reference log-probs, [2B]
    p: torch.Tensor  # labels, [B]
    index: tuple = ()  # each pair's position in the training list, so a refiner can log which it changed


def lr_factor(step: int, total: int, warmup: float) -> float:
    warm = max(1, int(round(warmup * total)))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def batch_loss(model, batch: list[Example], beta: float, pad_id: int, targets=None, step: int = 0,
               total_steps: int = 1, index=()):
    """Mean DPO loss of a batch: a and b in one concatenated forward pass."""
    device = next(model.parameters()).device
    prompts = [e.prompt for e in batch] * 2
    responses = [e.a for e in batch] + [e.b for e in batch]
    ids, mask, pos, resp = (t.to(device) for t in left_pad(prompts, responses, pad_id))
    logits = response_logits(model, ids, mask, pos, resp)
    logps, _ = summed_logps(logits, ids, resp)
    n = len(batch)
    ref = torch.tensor([e.ref_a for e in batch] + [e.ref_b for e in batch], device=device, dtype=logps.dtype)
    p = torch.tensor([e.p for e in batch], device=device, dtype=logps.dtype)
    if targets is not None:
        p = targets(TrainBatch(step, total_steps, beta, ids, mask, pos, resp, logits.detach(),
                               logps.detach(), ref, p, tuple(index))).to(logps.dtype)
    return dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], p, beta).mean()


def transformer_blocks(model) -> torch.nn.ModuleList:
    """The model's stack of transformer blocks: its longest ``ModuleList``."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ConfigError(f"{type(model).__name__} has no ModuleList of transformer blocks to freeze")
    return max(lists, key=len)


def trainable_last(model, k: int | None) -> None:
    """Freeze everything but the last ``k`` blocks (and modules after them, e.g. the final norm).

    Embeddings and a tied LM head stay frozen: on large models the point is to
    skip their gradients and optimizer state. A model with LoRA adapters trains
    only its adapters (those in the last ``k`` blocks, if ``k`` is given).
    """
    if k is None:
        for p in model.parameters():
            p.requires_grad_(True)
        _adapters_only(model)
        return
    blocks = transformer_blocks(model)
    if not 1 <= k <= len(blocks):
        raise ConfigError(f"train_layers must be between 1 and {len(blocks)}, got {k}")
    for p in model.parameters():
        p.requires_grad_(False)
    for block in list(blocks)[-k:]:
        for p in block.parameters():
            p.requires_grad_(True)
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    norm = getattr(decoder, "norm", None)
    if norm is not None:
        for p in norm.parameters():
            p.requires_grad_(True)
    _adapters_only(model)


def _adapters_only(model) -> None:
    """With LoRA adapters (acqkit.models.lora), the base stays frozen whatever was selected above."""
    if has_adapters(model):
        for name, p in model.named_parameters():
            p.requires_grad_(p.requires_grad and is_adapter_param(name))


GROUP_BATCHES = 8  # a length group spans this many batches: batch composition still changes every epoch


def pair_length(e: Example) -> int:
    """Padded width of a pair in the stacked batch: its prompt plus the longer response."""
    return len(e.prompt) + max(len(e.a), len(e.b))


def shard_batches(examples: list[Example], cfg: TrainConfig, rank: int, world: int) -> list[list[Example]]:
    """This process's micro-batches: one seeded shuffle per epoch, strided across processes.

    With ``group_by_length`` (the default), each epoch's shuffled order is cut
    into groups of ``GROUP_BATCHES`` global batches; a group is sorted by
    :func:`pair_length` (ties keep the shuffled order) and cut into batches,
    and the epoch's batches are then shuffled by the same seeded generator. So
    batches hold pairs of similar length (less padding), every epoch draws new
    groups, and the optimizer sees the batches in a seeded random order, not
    short to long. Without it, the shuffled order is cut as it is.

    The order is padded (wrapping around, as DistributedSampler does) so every
    process runs the same number of steps and DDP never waits on a missing one.
    """
    rng = random.Random(cfg.seed)
    lengths = [pair_length(e) for e in examples]
    step = cfg.batch_size * world  # pairs per global batch, over all processes
    batches = []
    for _ in range(cfg.epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        if not cfg.group_by_length:
            order += order[: (-len(order)) % world]
            shard = order[rank::world]
            batches += [[examples[i] for i in shard[s : s + cfg.batch_size]]
                        for s in range(0, len(shard), cfg.batch_size)]
            continue
        span = step * GROUP_BATCHES
        grouped = [i for s in range(0, len(order), span)
                   for i in sorted(order[s : s + span], key=lambda i: lengths[i])]
        blocks = [grouped[s : s + step] for s in range(0, len(grouped), step)]
        rng.shuffle(blocks)
        for block in blocks:
            block = block + block[: (-len(block)) % world]
            batches.append([examples[i] for i in block[rank::world]])
    return batches


def train(model, examples: list[Example], cfg: TrainConfig, pad_id: int, accelerator=None, targets=None) -> dict:
    """Train ``model`` in place on ``examples``; returns ``{"loss": mean loss, "steps": n}``.

    ``targets``, if given, maps each :class:`TrainBatch` to the labels to train on.
    """
    from accelerate import Accelerator

    if not examples:
        return {"loss": float("nan"), "steps": 0}
    # bf16 is autocast per forward by the scorer's response_logits (the model's precision), not by accelerate.
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no")
    trainable_last(model, cfg.train_layers)
    if has_adapters(model):
        torch.manual_seed(cfg.seed)  # LoRA dropout draws from torch's RNG: seed it per stage like the rest
    batches = shard_batches(examples, cfg, accelerator.process_index, accelerator.num_processes)
    where = {id(e): i for i, e in enumerate(examples)}  # TrainBatch.index: positions in the training list
    total_steps = max(1, math.ceil(len(batches) / cfg.grad_accum))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    # The schedule is stepped by hand once per optimizer step: accelerate's wrapped
    # scheduler would step once per process, which changes the schedule with the world size.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup))
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    losses = []
    for step, batch in enumerate(track(batches, "training", total=len(batches))):
        update = (step + 1) % cfg.grad_accum == 0 or step == len(batches) - 1
        # Between optimizer steps, skip DDP's gradient all-reduce: it happens once, on the update.
        with contextlib.nullcontext() if update else accelerator.no_sync(model):
            loss = batch_loss(model, batch, cfg.beta, pad_id, targets, step, len(batches),
                              [where[id(e)] for e in batch])
            accelerator.backward(loss / cfg.grad_accum)
        if update:
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    accelerator.unwrap_model(model)
    accelerator.free_memory()
    return {"loss": sum(losses) / len(losses), "steps": len(batches)}
