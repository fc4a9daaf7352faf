"""Reference log-probs, counted, and (with ``ref_cache = "exact"``) scored once per response.

The reference is frozen, so its log-prob of a (prompt, response) pair could be
computed once per session. The catch is floating point: the batched scorer's
value for a sequence depends, in the last bits, on what it was padded and
batched with (measured: about 1 float32 ulp of the sum, ~3e-5 nats), so a value
cached from one batch is not what a fresh call in another batch would return,
and that can flip an exact tie between two margins.

``"off"`` (default) scores exactly as before: length-bucketed batches, no cache;
it only counts the forward passes. ``"exact"`` scores every uncached sequence
alone (a batch of one, no padding), so its value is a function of its tokens
and the weights only: a cached value is bit-for-bit what an uncached call
returns, in any order, batch or process history. The price is batch-of-one
throughput on the misses, and numbers that differ from ``"off"`` in the last bits.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from acqkit.errors import ConfigError
from acqkit.round.score import score

MODES = ("off", "exact")


@torch.inference_mode()
def fingerprint(model) -> str:
    """A digest of the model's class, config and every byte of every parameter and buffer.

    Computed once per session: the reference is never trained, so its weights
    cannot change after the digest is taken. Equal digests mean the same
    architecture with the same weights, hence the same log-probs.
    """
    h = hashlib.sha256()  # hardware-accelerated on most x86 and ARM CPUs
    h.update(type(model).__name__.encode())
    config = getattr(model, "config", None)
    if config is not None:
        h.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class RefScorer:
    """Summed reference log-probs of responses, as :func:`acqkit.round.score.score` returns them.

    ``scored`` counts sequences the reference ran a forward pass for, ``cached``
    the ones answered from the cache (repeats within a call included). The cache
    is keyed by ``(fingerprint, prompt ids, response ids)``.
    """

    def __init__(self, model, pad_id: int, mode: str = "off", shared: bool = True):
        if mode not in MODES:
            raise ConfigError(f"ref_cache must be one of {', '.join(MODES)}, got {mode!r}")
        self.model, self.pad_id, self.mode = model, pad_id, mode
        self.shared = shared  # a collective: every process calls it alike, each scores a share (score(shared=))
        self.scored = self.cached = 0
        self._fingerprint: str | None = None
        self.store: dict[tuple, float] = {}

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.model)
        return self._fingerprint

    def counts(self) -> dict:
        return {"ref_scored": self.scored, "ref_cached": self.cached}

    def __call__(self, prompts: list[list[int]], responses: list[list[int]], batch_size: int = 16,
                 label: str = "scoring: reference") -> np.ndarray:
        if self.mode == "off":
            self.scored += len(prompts)
            return score(self.model, prompts, responses, self.pad_id, batch_size, with_entropy=False, label=label,
                         shared=self.shared)[0]
        fp = self.fingerprint
        keys = [(fp, tuple(p), tuple(r)) for p, r in zip(prompts, responses)]
        todo = list(dict.fromkeys(k for k in keys if k not in self.store))  # unique misses, first-seen order
        if todo:
            values, _ = score(self.model, [list(k[1]) for k in todo], [list(k[2]) for k in todo], self.pad_id,
                              batch_size=1, with_entropy=False, label=label, shared=self.shared)
            self.store.update(zip(todo, values.tolist()))
        self.scored += len(todo)
        self.cached += len(keys) - len(todo)
        return np.array([self.store[k] for k in keys], dtype=np.float64)
