"""Compute precision: which dtype the matmuls run in, decided once per process.

``precision = "bf16"`` runs every forward (sampling, scoring, training,
evaluation) under ``torch.autocast(dtype=torch.bfloat16)`` with float32
weights: the policy keeps float32 master weights and AdamW state, the residual
stream and the norms stay float32, and the policy and the frozen reference go
through the *same* numerics, so identical weights still give identical
log-probs (a margin of exactly 0 at round 0). The LM head, log-softmax and
every sum of log-probs, margin and loss stay float32 (``acqkit.round.score``).
Frozen models (the reference, SPA's previous policy) store their linear
weights in bf16 (:func:`store_frozen_in_bf16`): the operands autocast would
cast them to anyway, so the numbers are the same and the memory is halved.

A model carries its precision as an attribute (:func:`set_precision`), so every
stage that runs it (and a plugin that gets it, e.g. a reward-model oracle)
reads it with :func:`autocast` without the setting being threaded through
every signature.
"""
from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch

from acqkit.config import PRECISIONS
from acqkit.errors import ConfigError

ATTR = "acqkit_precision"


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bf16 matmuls natively (not emulated, hence not slower than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        return bool(torch.cpu._is_avx512_bf16_supported() or amx())
    return "bf16" in _cpu_flags()  # aarch64: the "bf16" feature (Graviton 3, Neoverse V1/N2)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {w for line in text.splitlines() if line.lower().startswith(("flags", "features"))
            for w in line.split(":", 1)[-1].split()}


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``auto``/``fp32``/``bf16`` -> ``fp32`` or ``bf16`` on ``device``.

    ``auto`` picks bf16 only where the hardware has it. An explicit ``bf16`` on
    hardware without it is an error, not a silent slowdown: emulated bf16 on a
    CPU runs several times slower than float32.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"config field 'precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return "fp32"
    native = native_bf16(device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if not native:
        what = ("this GPU has no bf16 support (torch.cuda.is_bf16_supported() is False)"
                if torch.device(device).type == "cuda" else
                "this CPU has no native bf16 (no avx512_bf16 or amx_bf16 in its flags; bf16 would be emulated, "
                "several times slower than float32)")
        raise ConfigError(f"--precision bf16: {what}; use --precision fp32, or auto (bf16 only where the "
                          "hardware has it)")
    return "bf16"


def dtype_for(precision: str, device: torch.device | str = "cpu") -> torch.dtype:
    """The compute dtype of ``precision`` (``auto`` resolved on ``device``): float32 or bfloat16."""
    return torch.bfloat16 if resolve_precision(precision, device) == "bf16" else torch.float32


def set_precision(model, precision: str) -> None:
    """Record on ``model`` the (resolved) precision its forwards run in; copies (deepcopy) keep it."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"set_precision takes a resolved precision (fp32 or bf16), got {precision!r}")
    setattr(model, ATTR, precision)


def precision_of(model) -> str:
    """The precision recorded on ``model`` (or on the model a DDP/peft wrapper holds); fp32 if none."""
    for m in (model, getattr(model, "module", None)):
        if m is not None and ATTR in getattr(m, "__dict__", {}):
            return m.__dict__[ATTR]
    return "fp32"


def autocast(model):
    """A context in which ``model``'s forwards run at its precision (bf16 autocast, or nothing).

    Enter it per forward (or per ``generate``), never around optimizer steps:
    autocast caches its bf16 copies of trainable weights until the outermost
    context exits, so a context spanning a step would keep stale weights.
    """
    if precision_of(model) != "bf16":
        return contextlib.nullcontext()
    device = next(model.parameters()).device
    return torch.autocast(device.type, dtype=torch.bfloat16)


def store_frozen_in_bf16(model) -> int:
    """Store a bf16 model's frozen linear weights in bf16: the same numbers, half the memory, no per-call cast.

    Under bf16 autocast a linear layer's float32 weight is cast to bf16 at every
    call unless it requires grad (autocast caches only those casts), so a frozen
    reference paid a cast of all its weights per forward and held them in
    float32. A weight stored in bf16 is the very operand that cast produced:
    log-probs stay bit-identical to the float32-weight path (tested), so a
    margin between an equal policy and reference is still exactly 0.

    Only ``nn.Linear`` layers whose weights are all frozen are cast. The input
    embedding and the LM head stay float32 (the head is often tied to the
    embedding, and the scorer runs it in float32). A model at ``fp32`` is left
    alone. Such a model must run under :func:`autocast`, as every acqkit stage
    does. Returns the number of parameters now in bf16.
    """
    if precision_of(model) != "bf16":
        return 0
    ends = [getattr(model, f"get_{end}_embeddings", lambda: None)() for end in ("input", "output")]
    keep = {id(p) for m in ends if m is not None for p in m.parameters()}
    cast = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        params = list(module.parameters(recurse=False))
        if any(p.requires_grad or id(p) in keep for p in params):
            continue
        for p in params:
            if p.dtype == torch.float32:
                p.data = p.data.to(torch.bfloat16)
                cast += p.numel()
    return cast
