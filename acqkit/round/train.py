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
import copy
import functools
import logging
import math
import os
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from accelerate.utils import DistributedType

from acqkit.distributed import gather
from acqkit.errors import ConfigError
from acqkit.round.batching import left_pad
from acqkit.models.lora import has_adapters, is_adapter_param
from acqkit.models.precision import precision_of
from acqkit.progress import track
from acqkit.round.seeds import row_seed
from acqkit.round.score import response_logits, summed_logps


@dataclass(frozen=True)
class TrainConfig:
    beta: float = 0.1
    lr: float = 5e-6
    epochs: int = 1
    batch_size: int = 8  # pairs per optimizer step, over all processes
    grad_accum: int = 1  # micro-batches (forward passes) per process per step: memory, not maths
    max_grad_norm: float = 1.0
    warmup: float = 0.1  # fraction of steps with linear warm-up, then cosine decay
    seed: int = 0
    train_layers: int | None = None  # train only the last k transformer blocks (None: everything)
    group_by_length: bool = True  # batches of pairs of similar length, in a seeded random order (step_batches)

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
    return pair_losses(model, batch, beta, pad_id, targets, step, total_steps, index).mean()


def pair_losses(model, batch: list[Example], beta: float, pad_id: int, targets=None, step: int = 0,
                total_steps: int = 1, index=()):
    """The DPO loss of each pair of a batch, ``[B]``: a and b in one concatenated forward pass."""
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
    return dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], p, beta)


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


def step_batches(examples: list[Example], cfg: TrainConfig) -> list[list[Example]]:
    """Every optimizer step's batch of ``batch_size`` pairs (the last of an epoch may be smaller).

    One seeded shuffle per epoch; with ``group_by_length`` (the default) the
    shuffled order is cut into groups of ``GROUP_BATCHES`` batches, a group is
    sorted by :func:`pair_length` (ties keep the shuffled order) and cut into
    batches, and the epoch's batches are shuffled by the same seeded
    generator. So batches hold pairs of similar length (less padding), every
    epoch draws new groups, and the optimizer sees them in a seeded random
    order, not short to long. The batches do not depend on the process count.
    """
    rng = random.Random(cfg.seed)
    lengths = [pair_length(e) for e in examples]
    size, batches = cfg.batch_size, []
    for _ in range(cfg.epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        if cfg.group_by_length:
            span = size * GROUP_BATCHES
            order = [i for s in range(0, len(order), span)
                     for i in sorted(order[s : s + span], key=lambda i: lengths[i])]
        blocks = [order[s : s + size] for s in range(0, len(order), size)]
        if cfg.group_by_length:
            rng.shuffle(blocks)
        batches += [[examples[i] for i in block] for block in blocks]
    return batches


def micro_batches(batch: list, parts: int) -> list[list]:
    """``batch`` cut into ``parts`` consecutive slices whose sizes differ by at most one (some may be empty)."""
    q, r = divmod(len(batch), parts)
    cuts = [0]
    for i in range(parts):
        cuts.append(cuts[-1] + q + (i < r))
    return [batch[a:b] for a, b in zip(cuts, cuts[1:])]


def shard_batches(examples: list[Example], cfg: TrainConfig, rank: int, world: int) -> list[list[list[Example]]]:
    """This process's share of every step: ``grad_accum`` micro-batches (lists of pairs) per step.

    A step's batch is cut into ``world * grad_accum`` micro-batches; process
    ``rank`` takes the ``rank``-th run of ``grad_accum`` of them. Every process
    gets the same number of steps and micro-batches (an empty one still runs,
    with weight 0, so DDP's all-reduce never waits on a missing backward).
    """
    return share_steps(step_batches(examples, cfg), cfg.grad_accum, rank, world)


def share_steps(batches: list[list], grad_accum: int, rank: int, world: int) -> list[list[list]]:
    """:func:`shard_batches` from the steps' batches already cut."""
    parts = world * grad_accum
    return [micro_batches(batch, parts)[rank * grad_accum : (rank + 1) * grad_accum] for batch in batches]


@functools.cache
def fsdp_not_here(device: str, kind: str) -> None:
    """Say once that accelerate turned an FSDP config into something else: it shards only on GPUs (1.15)."""
    logging.getLogger("acqkit").warning(
        "acqkit: the accelerate config asks for FSDP, but accelerate runs FSDP only on GPUs; on %s it trains "
        "with %s (the same weights, unsharded)", device, kind)


def adamw_kernel(model) -> dict:
    """Which AdamW implementation: the fastest one that keeps float32 runs' numbers.

    float32: the multi-tensor kernel (``foreach``), bit-identical to the
    per-tensor loop torch picks on a CPU and about 1.6x faster, so every
    float32 result stays what it was (tested). bf16: the fused kernel, about 15x
    faster than the loop on a CPU (a SmolLM2 step's update: about 1 s -> 0.1 s)
    but rounding differently in the last bit; bf16 runs have their own numbers
    anyway, and still the same ones for the same seed.
    """
    return {"fused": True} if precision_of(model) == "bf16" else {"foreach": True}


def train(model, examples: list[Example], cfg: TrainConfig, pad_id: int, accelerator=None, targets=None) -> dict:
    """Train ``model`` in place on ``examples``; returns ``{"loss": mean loss per pair, "steps": n}``.

    ``batch_size`` pairs per optimizer step whatever the process count: each
    micro-batch's summed loss is scaled by ``world / k`` (``k`` the step's pairs),
    so DDP's gradient average is the gradient of the step's mean loss. One
    process with ``grad_accum = 2`` and two with ``grad_accum = 1`` compute the
    same micro-batches and add the same two gradients: the same weights, bit
    for bit (``tests/test_distributed.py``). Under FSDP (an accelerate config
    file) a copy of the model is sharded for training: gradients and AdamW
    state are split between the processes, and the whole trained weights are
    gathered back into ``model`` on every process. ``targets``, if given, maps
    each :class:`TrainBatch` to the labels to train on.
    """
    from accelerate import Accelerator

    if not examples:
        return {"loss": float("nan"), "steps": 0}
    # bf16 is autocast per forward by the scorer's response_logits (the model's precision), not by accelerate.
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no")
    trainable_last(model, cfg.train_layers)
    # FSDP shards the module it wraps, which then runs only in lockstep on every process, while acqkit
    # samples and scores with whole weights: train a copy, then load its gathered weights back.
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    if not fsdp and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        if accelerator.is_main_process:
            fsdp_not_here(str(accelerator.device), accelerator.distributed_type.value)
    caller, home = model, next(model.parameters()).device
    if fsdp:  # the whole weights wait in host memory; the device holds only the shards while training
        model = copy.deepcopy(caller.to("cpu")).to(home)
    world, rank = accelerator.num_processes, accelerator.process_index
    batches = step_batches(examples, cfg)
    steps = share_steps(batches, cfg.grad_accum, rank, world)
    where = {id(e): i for i, e in enumerate(examples)}  # TrainBatch.index: positions in the training list
    sizes = [len(b) for b in batches]
    fsdp1 = fsdp and not accelerator.is_fsdp2
    if fsdp1:  # FSDP1 may replace the parameters (use_orig_params = false): wrap before the optimizer sees them
        model = accelerator.prepare(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0,
                                  **adamw_kernel(model))
    # The schedule is stepped by hand once per optimizer step: accelerate's wrapped
    # scheduler would step once per process, which changes the schedule with the world size.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, len(steps), cfg.warmup))
    if fsdp1:
        optimizer = accelerator.prepare(optimizer)
    else:  # DDP; FSDP2 wants both in one call (it maps the optimizer onto the sharded parameters)
        model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    sums = []  # (step, micro-batch, summed loss): the reported loss, added up in the same order by every world
    for step, micros in enumerate(track(steps, "training", total=len(steps))):
        for m, micro in enumerate(micros):
            last = m == len(micros) - 1
            torch.manual_seed(row_seed(cfg.seed, step, rank * cfg.grad_accum + m))  # dropout (LoRA): per micro-batch
            # Between a process's micro-batches, skip DDP's gradient all-reduce: it happens once, on the last.
            with contextlib.nullcontext() if last else accelerator.no_sync(model):
                batch = micro or examples[:1]  # an empty micro-batch still joins the all-reduce, with weight 0
                losses = pair_losses(model, batch, cfg.beta, pad_id, targets if micro else None, step, len(steps),
                                     [where[id(e)] for e in batch])
                weight = world / sizes[step] if micro else 0.0
                accelerator.backward(losses.sum() * weight)
            if micro:
                sums.append((step, rank * cfg.grad_accum + m, losses.detach().sum().item()))
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    model.eval()
    if fsdp:  # a collective: every process gets the whole trained weights, in the caller's plain module
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        caller.load_state_dict(get_model_state_dict(model, options=StateDictOptions(full_state_dict=True)))
        caller.to(home).eval()
    accelerator.unwrap_model(model)
    accelerator.free_memory()
    sums = gather(sums) if world > 1 else sums  # every process's micro-batches
    return {"loss": sum(v for _, _, v in sorted(sums)) / sum(sizes), "steps": len(steps)}
