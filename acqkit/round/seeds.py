"""Seeds derived from names, so no stage's randomness depends on what ran before it.

``stage_seed(seed, round, "sample")`` seeds a stage; ``row_seed(stage, prompt
id, j)`` seeds the ``j``-th response to one prompt, so a sample depends on
the prompt and not on the batch, the chunk or the process that drew it.
"""
from __future__ import annotations

import hashlib

import numpy as np


def stage_seed(*parts) -> int:
    """A 31-bit seed derived from (run seed, round, stage name, ...)."""
    words = [p if isinstance(p, int) else sum(ord(c) * 31**i for i, c in enumerate(str(p))) % 2**31
             for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)


def row_seed(stage: int, key, j: int) -> int:
    """The seed of response ``j`` to the prompt named ``key`` (its id) in the stage seeded ``stage``.

    ``key`` is hashed whole (blake2b), so two prompt ids never share a stream
    unless they are equal.
    """
    digest = hashlib.blake2b(str(key).encode(), digest_size=8).digest()
    words = [stage, int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:], "little"), j]
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)
