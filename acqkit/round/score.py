"""Log-probabilities of responses under a model: one forward pass per response.

The LM head runs only at the positions that predict a response token (the
hidden states there are gathered first); prompt tokens and padding get no
logits. The same function serves scoring (no grad) and the DPO trainer (with
grad), so both compute exactly the same quantity. Under ``precision = "bf16"``
the backbone runs in bf16 autocast, while the head, the log-softmax and every
sum stay float32 (``acqkit.models.precision``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

from acqkit.distributed import spread
from acqkit.models.precision import autocast
from acqkit.round.batching import left_pad, length_buckets
from acqkit.progress import track

# Model families whose logits are exactly ``lm_head(final hidden state)``: the head may be applied to
# gathered hidden states. Others (logit soft-capping, logit scaling) keep ``logits_to_keep``.
PLAIN_HEAD = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo", "olmo2", "phi3"})


def plain_head(model) -> bool:
    if isinstance(model, (FSDPModule, FullyShardedDataParallel)):  # only the root forward gathers the shards
        return False
    config = getattr(model, "config", None)
    return (getattr(config, "model_type", None) in PLAIN_HEAD and hasattr(model, "get_decoder")
            and isinstance(model.get_output_embeddings(), torch.nn.Linear))


def response_logits(model, ids, mask, pos, resp):
    """Float32 logits at the positions that predict each response token: ``[B, R, V]``.

    Row ``i``, column ``j`` predicts ``ids[i, -R + j]``; positions where
    ``resp`` is False (left padding of shorter responses) hold zeros: the head
    never ran there.
    """
    width = resp.shape[1]
    if not plain_head(model):
        with autocast(model):
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=width + 1)
        return out.logits[:, -(width + 1) : -1].float() * resp.unsqueeze(-1)  # position t predicts token t+1
    with autocast(model):
        hidden = model.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=pos,
                                     use_cache=False).last_hidden_state
    head = model.get_output_embeddings()
    kept = hidden[:, -(width + 1) : -1][resp].float()  # [n response tokens, H]
    with torch.autocast(hidden.device.type, enabled=False):  # the head in float32: its logits are ranked
        logits = head(kept)
    out = logits.new_zeros(resp.shape + logits.shape[-1:])
    out[resp] = logits
    return out


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


def score(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
          batch_size: int = 16, with_entropy: bool = True, label: str = "scoring", shared: bool = False):
    """``(logp [n], entropy [n] or None)`` for every (prompt, response) pair, in input order.

    ``shared=True`` makes it a collective of the processes
    (``acqkit.distributed.spread``): each scores its share of the length
    batches and all get every value, the same bits as one process computes.
    """
    n = len(prompts)
    logp = np.zeros(n)
    ent = np.zeros(n) if with_entropy else None
    batches = length_buckets([len(p) + len(r) for p, r in zip(prompts, responses)], batch_size)

    @torch.inference_mode()
    def one(idx: list[int]):
        device = next(model.parameters()).device
        ids, mask, pos, resp = (t.to(device) for t in left_pad(
            [prompts[i] for i in idx], [responses[i] for i in idx], pad_id))
        s, e = response_logps(model, ids, mask, pos, resp, with_entropy)
        return s.double().cpu().numpy(), (e.double().cpu().numpy() if with_entropy else None)

    results = spread(batches, one, label) if shared else [one(idx) for idx in track(batches, label, len(batches))]
    for idx, (s, e) in zip(batches, results):
        logp[idx] = s
        if with_entropy:
            ent[idx] = e
    return logp, ent
