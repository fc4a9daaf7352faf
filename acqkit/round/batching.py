"""Left-padded batches of (prompt, response) token sequences.

Everything is left-padded so every response ends in the last column: the
logits of the last ``R + 1`` positions (``logits_to_keep``) cover every
response in the batch, and the prompt's logits are never computed.
"""
from __future__ import annotations

import torch


def left_pad(prompts: list[list[int]], responses: list[list[int]], pad_id: int):
    """Returns ``input_ids, attention_mask, position_ids, response_mask [B, R]``."""
    seqs = [p + r for p, r in zip(prompts, responses)]
    width = max(len(s) for s in seqs)
    r_width = max(max(len(r) for r in responses), 1)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    resp = torch.zeros((len(seqs), r_width), dtype=torch.bool)
    for i, (s, r) in enumerate(zip(seqs, responses)):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
        if r:
            resp[i, r_width - len(r):] = True
    # Positions count real tokens only, as generate() does, so padding never shifts them.
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos, resp


def length_buckets(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted), to cut padding."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
