"""Sample responses from a policy with batched ``generate`` (left padding, seeded).

Every batch reseeds torch from (seed, batch index), so a batch's samples do
not depend on what ran before it in the process. Generation runs at the
model's precision (``acqkit.models.precision``: bf16 autocast or float32).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from acqkit.errors import PluginOutputError
from acqkit.models.precision import autocast
from acqkit.progress import track


@dataclass(frozen=True)
class GenConfig:
    max_new_tokens: int = 32
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 50  # 0 means untruncated: samples of the policy itself (what the KL estimate needs)
    batch_size: int = 64


def encode_prompts(tokenizer, prompts) -> list[list[int]]:
    """Chat-template each prompt's messages and tokenize (no extra special tokens)."""
    out = []
    for p in prompts:
        text = tokenizer.apply_chat_template(list(p.messages), add_generation_prompt=True, tokenize=False)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def cut_at_eos(tokens: list[int], stop: set[int]) -> list[int]:
    """Keep tokens up to and including the first stop token (it is part of the response)."""
    for i, t in enumerate(tokens):
        if t in stop:
            return tokens[: i + 1]
    return tokens


@torch.inference_mode()
def generate(model, tokenizer, prompt_ids: list[list[int]], n: int, cfg: GenConfig, seed: int,
             label: str = "sampling") -> list[list[int]]:
    """``n`` responses per prompt, returned prompt-major: ``[p0r0, p0r1, ..., p1r0, ...]``."""
    flat = [ids for ids in prompt_ids for _ in range(n)]
    stop = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    starts = list(range(0, len(flat), cfg.batch_size))
    responses: list[list[int]] = []
    for b, start in enumerate(track(starts, label, total=len(starts))):
        chunk = flat[start : start + cfg.batch_size]
        width = max(len(c) for c in chunk)
        ids = torch.tensor([[pad] * (width - len(c)) + c for c in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk], device=device)
        torch.manual_seed(seed * 1_000_003 + b)
        sampling = cfg.temperature > 0
        with autocast(model):  # the model's precision; one context per call, so bf16 weight copies are reused
            out = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=cfg.max_new_tokens,
                do_sample=sampling, temperature=cfg.temperature if sampling else None,
                # top_k 0 disables the warper (None would fall back to transformers' default of 50);
                # top_p 1.0 so a model's own generation_config cannot truncate the samples either
                top_k=cfg.top_k if sampling else None, top_p=1.0 if sampling else None, pad_token_id=pad,
            )
        for row in out[:, width:].tolist():
            responses.append(cut_at_eos(row, stop))
    return responses


@dataclass(frozen=True)
class SampleRequest:
    """What a sampler backend gets (interface: :class:`acqkit.components.Sampler`)."""

    model: Any  # the current policy, a transformers causal LM in this process
    tokenizer: Any
    prompt_ids: list[list[int]]
    n: int
    gen: GenConfig
    seed: int
    stop_ids: frozenset[int]
    label: str = "sampling"
    model_spec: str = ""  # the --model the session loaded

    def save_policy(self, directory) -> Path:
        """Write the current policy and tokenizer for an engine in another process.

        Safetensors; a LoRA policy writes its adapter in peft's format, whose
        ``base_model_name_or_path`` names the base weights.
        """
        from acqkit.models.lora import has_adapters, save_adapters

        directory = Path(directory)
        if has_adapters(self.model):
            save_adapters(self.model, directory)
        else:
            self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        return directory


def sample(sampler, name: str, model, tokenizer, prompt_ids: list[list[int]], n: int, cfg: GenConfig, seed: int,
           label: str = "sampling", model_spec: str = "") -> list[list[int]]:
    """Ask ``sampler`` for ``n`` responses per prompt; check the shape, cut at the stop token and length.

    Both cuts are no-ops on the built-in ``hf`` sampler's output, which already ends there.
    """
    stop = eos_ids(model, tokenizer)
    request = SampleRequest(model, tokenizer, prompt_ids, n, cfg, seed, frozenset(stop), label, model_spec)
    out = sampler.generate(request)
    want = len(prompt_ids) * n
    if not isinstance(out, (list, tuple)) or len(out) != want:
        got = len(out) if isinstance(out, (list, tuple)) else type(out).__name__
        raise PluginOutputError(f"sampler {name!r} returned {got} responses for {len(prompt_ids)} prompts x {n}; "
                         f"expected {want} lists of token ids")
    return [cut_at_eos([int(t) for t in r], stop)[: cfg.max_new_tokens] for r in out]
