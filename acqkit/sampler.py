"""Sample responses from a policy with batched ``generate`` (left padding, seeded).

Every batch reseeds torch from (seed, batch index), so a batch's samples do
not depend on what ran before it in the process.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .progress import track


@dataclass(frozen=True)
class GenConfig:
    max_new_tokens: int = 32
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 50
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
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=cfg.max_new_tokens,
            do_sample=sampling, temperature=cfg.temperature if sampling else None,
            top_k=cfg.top_k if sampling else None, top_p=None, pad_token_id=pad,
        )
        for row in out[:, width:].tolist():
            responses.append(cut_at_eos(row, stop))
    return responses
