"""Reference log-probs: the exact cache returns bit-for-bit what an uncached call returns; "off" is the old path."""
import numpy as np
import torch

from acqkit import models
from acqkit.round.refcache import RefScorer, fingerprint
from acqkit.round.score import score


def sequences(n, seed=0):
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(5, 2000, rng.integers(3, 20)).tolist() for _ in range(n)]
    responses = [rng.integers(5, 2000, rng.integers(1, 16)).tolist() for _ in range(n)]
    return prompts, responses


def test_cached_and_uncached_scoring_agree_exactly_in_any_order(tiny):
    model, tok = tiny
    pad = tok.pad_token_id
    prompts, responses = sequences(24)
    uncached = score(model, prompts, responses, pad, batch_size=1, with_entropy=False)[0]
    refs = RefScorer(model, pad, "exact")
    first = refs(prompts[:16], responses[:16], batch_size=16)
    assert (first == uncached[:16]).all()
    assert refs.counts() == {"ref_scored": 16, "ref_cached": 0}
    order = np.random.default_rng(1).permutation(24).tolist() + [3]  # shuffled, new ones mixed in, one repeat
    again = refs([prompts[i] for i in order], [responses[i] for i in order], batch_size=7)
    assert (again == uncached[order]).all()
    assert refs.counts() == {"ref_scored": 24, "ref_cached": 17}  # 8 new forwards; 16 + 1 from the cache
    fresh = RefScorer(model, pad, "exact")([prompts[i] for i in order], [responses[i] for i in order])
    assert (fresh == again).all()


def test_off_is_the_batched_scorer_and_only_counts(tiny):
    model, tok = tiny
    prompts, responses = sequences(20, seed=2)
    refs = RefScorer(model, tok.pad_token_id)
    got = refs(prompts, responses, batch_size=16)
    assert (got == score(model, prompts, responses, tok.pad_token_id, 16, with_entropy=False)[0]).all()
    refs(prompts[:5], responses[:5])
    assert refs.counts() == {"ref_scored": 25, "ref_cached": 0} and not refs.store


def test_fingerprint_follows_the_weights(tiny):
    model, _ = tiny
    same = models.load_model("tiny")
    assert fingerprint(same) == fingerprint(model)
    with torch.no_grad():
        same.model.norm.weight[0] += 1e-3
    assert fingerprint(same) != fingerprint(model)
