"""KL and predictive entropy estimate the policy's own distribution, not a top-k truncation of it.

One-token responses make both exact values a sum over the vocabulary, so the
Monte-Carlo estimates can be checked against them; the same estimates from
top-k 50 samples (the run's default sampling) land far off.
"""
from dataclasses import replace

import numpy as np
import pytest
import torch

from acqkit.config import preset
from acqkit.plugins import registry
from acqkit.round import loop
from acqkit.round.session import Session
from acqkit.strategies import layout, predictive_entropy
from acqkit_plugins.apl import Entropy


@pytest.fixture(scope="module")
def session():
    """The tiny model as reference, and as policy with noise on its output layer (so KL and entropy are far from 0)."""
    cfg = preset("smoke", max_new_tokens=1, eval_prompts=4, kl_samples=200, gen_batch_size=800,
                 score_batch_size=800)
    s = Session.open(cfg, registry())
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = s.policy.get_output_embeddings().weight
        w.add_(0.15 * torch.randn(w.shape, generator=gen))
    return s, cfg


@torch.no_grad()
def next_token_logp(model, prompt_ids):
    return torch.stack([torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)
                        for ids in prompt_ids])


def truncated(logp, k=50):
    """The top-k sampling distribution: the k likeliest tokens, renormalised."""
    keep = logp >= logp.topk(k, dim=-1).values[:, -1:]
    return torch.log_softmax(logp.masked_fill(~keep, float("-inf")), -1)


def test_kl_estimate_matches_the_exact_kl_not_the_top_k_one(session):
    s, cfg = session
    lp, lr = next_token_logp(s.policy, s.evalset.prompt_ids), next_token_logp(s.reference, s.evalset.prompt_ids)
    ratio = lp - lr
    exact = (lp.exp() * ratio).sum(-1)  # KL per prompt, summed over the vocabulary
    var = (lp.exp() * (ratio - exact[:, None]) ** 2).sum(-1)
    se = float(var.sum().sqrt() / (len(exact) * cfg.kl_samples ** 0.5))
    top_k = float((truncated(lp).exp() * ratio).nan_to_num().sum(-1).mean())  # what top-k 50 samples estimate
    exact = float(exact.mean())
    assert abs(top_k - exact) > 8 * se  # the test can tell the two apart
    estimate = loop.evaluate_policy(s, cfg, 1)["kl"]
    assert abs(estimate - exact) < 4 * se, (estimate, exact, top_k, se)


def entropy_estimate(s, cfg, plan):
    table = loop.sample_and_score(s, cfg, plan, 1)
    return predictive_entropy(table, layout(table)).mean(), table


def test_apl_entropy_matches_the_exact_entropy_not_the_top_k_one(session):
    s, cfg = session
    plan = Entropy(og=1, n_responses=200).plan(4, cfg.n_responses, cfg.temperature)
    assert plan.temperature == 1.0 and plan.top_k == 0
    estimate, table = entropy_estimate(s, cfg, plan)
    prompt_ids = [s.prompt_ids[p] for p in dict.fromkeys(table["prompt_id"])]
    lp = next_token_logp(s.policy, prompt_ids)
    exact_each = -(lp.exp() * lp).sum(-1)
    var = (lp.exp() * (lp + exact_each[:, None]) ** 2).sum(-1)
    se = float(var.sum().sqrt() / (len(exact_each) * plan.n_responses ** 0.5))
    exact = float(exact_each.mean())
    # one-token responses: the table's exact per-token entropy is the whole entropy
    assert np.allclose(table.groupby("prompt_id", sort=False)["entropy"].first(), exact_each, atol=1e-4)
    assert abs(estimate - exact) < 4 * se, (estimate, exact, se)
    biased, _ = entropy_estimate(s, cfg, replace(plan, top_k=None))  # the run's top-k 50
    assert abs(biased - exact) > 8 * se, (biased, exact, se)
