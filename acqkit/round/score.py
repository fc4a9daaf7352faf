"""Log-probabilities of responses under a model: one forward pass per response.

Only response positions get logits (``logits_to_keep``); prompt tokens and
padding are masked out. The same function serves scoring (no grad) and the
DPO trainer (with grad), so both compute exactly the same quantity.
"""
from __future__ import annotations

import numpy as np
import torch

from acqkit.round.batching import left_pad, length_buckets
from acqkit.progress import track


def response_logits(model, ids, mask, pos, resp):
    """Float logits at the positions that predict each response token: ``[B, R, V]``."""
    width = resp.shape[1]
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=width + 1)
    return out.logits[:, -(width + 1) : -1].float()  # position t predicts token t+1


def summed_logps(logits, ids, resp):
    """Sum of log-softmax(logits) at the response tokens, masked."""
    logp = torch.log_softmax(logits, dim=-1)
    token_logp = logp.gather(-1, ids[:, -resp.shape[1]:].unsqueeze(-1)).squeeze(-1)
    return (token_logp * resp).sum(-1), logp


def response_logps(model, ids, mask, pos, resp, with_entropy: bool = False):
    """Summed response log-prob per row, and optionally mean per-token entropy.

    The entropy is exact per position, from the full softmax of the logits (the
    untruncated policy at temperature 1), averaged over the response's own
    tokens: it describes this response's prefixes, whatever sampled them.
    """
    summed, logp = summed_logps(response_logits(model, ids, mask, pos, resp), ids, resp)
    if not with_entropy:
        return summed, None
    ent = -(logp.exp() * logp).sum(-1)
    mean_ent = (ent * resp).sum(-1) / resp.sum(-1).clamp(min=1)
    return summed, mean_ent


@torch.inference_mode()
def score(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
          batch_size: int = 16, with_entropy: bool = True, label: str = "scoring"):
    """``(logp [n], entropy [n] or None)`` for every (prompt, response) pair, in input order."""
    n = len(prompts)
    logp = np.zeros(n)
    ent = np.zeros(n) if with_entropy else None
    device = next(model.parameters()).device
    batches = length_buckets([len(p) + len(r) for p, r in zip(prompts, responses)], batch_size)
    for idx in track(batches, label, total=len(batches)):
        ids, mask, pos, resp = (t.to(device) for t in left_pad(
            [prompts[i] for i in idx], [responses[i] for i in idx], pad_id))
        s, e = response_logps(model, ids, mask, pos, resp, with_entropy)
        logp[idx] = s.double().cpu().numpy()
        if with_entropy:
            ent[idx] = e.double().cpu().numpy()
    return logp, ent
