"""SELFEE / SPA: self-labels, confidence smoothing, decoupled detection, and a whole run."""
import numpy as np
import pandas as pd
import pytest
import torch

from acqkit.round.batching import left_pad
from acqkit.components import LabelContext
from acqkit.config import preset
from acqkit.round.loop import run
from acqkit.round.score import response_logits, score
from acqkit.round.train import Example, TrainBatch, batch_loss
from acqkit_plugins.selfee import ConfidenceSmoothing, Decoupled, Selfee, SelfLabeler, extrapolated_logps


def test_self_labels_follow_the_implicit_reward_ties_to_first():
    table = pd.DataFrame({"response_id": [0, 1, 2, 3, 4, 5], "prompt_id": ["x", "x", "y", "y", "z", "z"],
                          "logp_policy": [-10.0, -12.0, -8.0, -5.0, -7.0, -9.0],
                          "logp_ref": [-11.0, -11.0, -8.0, -6.0, -8.0, -10.0]})
    # rewards: x: +1 vs -1 -> a; y: 0 vs +1 -> b; z: +1 vs +1 (tie) -> a
    pairs = pd.DataFrame({"prompt_id": ["x", "y", "z"], "a": [0, 2, 4], "b": [1, 3, 5], "score": 0.0})
    labels = SelfLabeler().label(pairs, table, None)
    assert labels["p"].tolist() == [1.0, 0.0, 1.0]
    assert labels["cost"].sum() == 0 and set(labels["source"]) == {"self"}
    soft = SelfLabeler(soft=True, beta=0.5).label(pairs, table, None)
    assert soft["p"].tolist() == pytest.approx([1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(0.5)), 0.5])


def test_previous_judge_scores_the_pair_with_the_previous_iterate(tiny):
    model, tok = tiny
    prompts = [[5, 6, 7], [5, 6, 7], [8, 9], [8, 9]]
    responses = [[10, 11, 12], [13, 14], [15], [16, 17, 18, 19]]
    prev, _ = score(model, prompts, responses, tok.pad_token_id, with_entropy=False)
    # logp_ref makes the initial judge prefer the opposite of what the previous iterate implies
    policy = prev + np.array([1.0, -1.0, -1.0, 1.0])
    table = pd.DataFrame({"response_id": range(4), "prompt_id": ["x", "x", "y", "y"], "logp_policy": policy,
                          "logp_ref": policy + np.array([1.0, -1.0, -1.0, 1.0]) * 2,
                          "prompt_ids": prompts, "response_ids": responses})
    pairs = pd.DataFrame({"prompt_id": ["x", "y"], "a": [0, 2], "b": [1, 3], "score": 0.0})
    ctx = LabelContext(task=None, rng=None, round=2, extras={"previous": model, "tokenizer": tok})
    assert SelfLabeler(judge="previous").label(pairs, table, ctx)["p"].tolist() == [1.0, 0.0]
    assert SelfLabeler(judge="initial").label(pairs, table, ctx)["p"].tolist() == [0.0, 1.0]
    assert SelfLabeler(judge="previous").needs_previous_policy and not SelfLabeler().needs_previous_policy
    assert Selfee(judge="previous").labeler == "self(judge=previous)" and Selfee().labeler == "self"
    assert Selfee(judge="previous", soft=True).labeler == "self(judge=previous, soft=true)"
    with pytest.raises(ValueError, match="judge"):
        SelfLabeler(judge="sft")


def test_selfee_pairs_highest_against_lowest_reward():
    table = pd.DataFrame({"response_id": range(6), "prompt_id": ["x"] * 3 + ["y"] * 3,
                          "logp_policy": [-3.0, -1.0, -2.0, -5.0, -5.0, -5.0], "logp_ref": [-2.0] * 6})
    pairs = Selfee(k=3).select(table, 0, np.random.default_rng(0), beta=0.1)
    assert pairs[["a", "b"]].values.tolist() == [[1, 0], [3, 4]]  # y: all equal -> first two


def make_batch(margins, p, step=10, total=10, beta=1.0):
    """A TrainBatch whose label-oriented beta*z equals ``margins`` (refs zero, b's logp zero)."""
    m = torch.tensor(margins, dtype=torch.float64)
    p = torch.tensor(p, dtype=torch.float64)
    sign = torch.sign(p - 0.5)
    sign[sign == 0] = 1
    pol = torch.cat([m * sign / beta, torch.zeros_like(m)])
    empty = torch.zeros(1)
    return TrainBatch(step, total, beta, empty, empty, empty, empty, empty, pol, torch.zeros_like(pol), p)


def test_smoothing_touches_exactly_the_pairs_below_the_percentile():
    margins = [5.0, 0.0, 9.0, 1.0, 3.0, 2.0, 8.0, 4.0, 7.0, 6.0]
    p = [1.0, 0.0] * 5
    fn = ConfidenceSmoothing(k=0.3, alpha=0.1, window=0, warmup=0.0).in_training(None)
    out = fn(make_batch(margins, p)).tolist()
    tau = np.quantile(margins, 0.3)  # 2.7: the pairs with margin 0, 1, 2
    for m, before, after in zip(margins, p, out):
        expected = (0.9 if before == 1 else 0.1) if m < tau else before
        assert after == pytest.approx(expected)
    assert sum(a != b for a, b in zip(out, p)) == 3


def test_no_smoothing_during_warmup_and_running_window():
    refiner = ConfidenceSmoothing(k=0.5, window=4, warmup=0.2)
    fn = refiner.in_training(None)
    early = fn(make_batch([0.0, 10.0], [1.0, 1.0], step=1, total=10))
    assert early.tolist() == [1.0, 1.0]
    # window holds the last 4 margins: [0, 10, 1, 2] -> median 1.5 -> only margin 1 is below.
    late = fn(make_batch([1.0, 2.0], [1.0, 1.0], step=5, total=10))
    assert late.tolist() == pytest.approx([0.9, 1.0])



def spa_smooths(batches, k, window):
    """SPA's rule, written out independently: which pairs of each batch get smoothed.

    A pair is confident when beta*z is strictly above tau, the k-th quantile
    (linear interpolation) of the last ``window`` decided pairs' beta*z; ties
    (p = 0.5) have no margin, stay out of the window and are never smoothed.
    """
    seen, out = [], []
    for margins, p in batches:
        seen = (seen + [m for m, q in zip(margins, p) if q != 0.5])[-window:] if window else \
            seen + [m for m, q in zip(margins, p) if q != 0.5]
        xs = sorted(seen)
        pos = k * (len(xs) - 1)
        lo = int(pos)
        tau = xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (pos - lo)
        out.append([q != 0.5 and not m > tau for m, q in zip(margins, p)])
    return out


def acqkit_smooths(batches, k, window):
    fn = ConfidenceSmoothing(k=k, alpha=0.1, window=window, warmup=0.0).in_training(None)
    return [[a != b for a, b in zip(fn(make_batch(m, p)).tolist(), p)] for m, p in batches]


@pytest.mark.parametrize("name, batches, k, window", [
    # 11 pairs at k = 0.1: the quantile lands exactly on the second smallest pair, which is not confident.
    ("quantile on a pair", [([5.0, 0.0, 9.0, 1.0, 3.0, 2.0, 8.0, 4.0, 7.0, 6.0, 10.0], [1.0, 0.0] * 5 + [1.0])],
     0.1, 50),
    # equal margins: tau equals every margin, no pair is strictly above it, SPA smooths them all
    ("equal margins", [([2.0] * 6, [1.0, 0.0, 1.0, 0.0, 1.0, 1.0])], 0.1, 50),
    # ties would enter with margin 0 and pull tau down to 0.5 (nothing smoothed); without them tau = 3
    ("ties", [([1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 7.0, 7.0, 7.0, 7.0], [1.0] * 5 + [0.5] * 5)], 0.5, 50),
    # a running window across batches, ties in the first batch
    ("window", [([4.0, 1.0, 9.0], [1.0, 0.5, 0.0]), ([3.0, 3.0, 6.0], [0.0, 1.0, 0.5]), ([2.0, 8.0], [1.0, 1.0])],
     0.25, 4),
])
def test_smoothing_agrees_with_an_independent_spa_threshold(name, batches, k, window):
    expected = spa_smooths(batches, k, window)
    assert acqkit_smooths(batches, k, window) == expected
    assert any(any(b) for b in expected)  # each case smooths something

def test_decoupled_with_lambda_zero_is_plain_confidence(tiny):
    model, tok = tiny
    ids, mask, pos, resp = left_pad([[5, 6, 7], [8, 9]] * 2, [[10, 11], [12, 13, 14], [15], [16, 17]],
                                    tok.pad_token_id)
    with torch.no_grad():
        logits = response_logits(model, ids, mask, pos, resp)
    pol = torch.log_softmax(logits, -1).gather(-1, ids[:, -resp.shape[1]:].unsqueeze(-1)).squeeze(-1)
    pol = (pol * resp).sum(-1)
    batch = TrainBatch(5, 5, 0.1, ids, mask, pos, resp, logits, pol, pol - 0.3 * torch.arange(4.0),
                       torch.tensor([1.0, 0.0]))
    from acqkit import RefineContext
    ctx = RefineContext(round=1, beta=0.1, reference=model)
    plain = ConfidenceSmoothing(k=0.5, window=0, warmup=0).in_training(ctx)(batch)
    lam0 = Decoupled(lam=0.0, k=0.5, window=0, warmup=0).in_training(ctx)(batch)
    assert torch.equal(plain, lam0)


def test_extrapolated_logits_match_the_formula(tiny):
    model, tok = tiny
    ref = type(model)(model.config)
    ref.load_state_dict({k: v + 0.01 * torch.randn_like(v) for k, v in model.state_dict().items()})
    ids, mask, pos, resp = left_pad([[5, 6, 7]], [[10, 11, 12]], tok.pad_token_id)
    with torch.no_grad():
        logits = response_logits(model, ids, mask, pos, resp)
        lam = 0.5
        got = extrapolated_logps(logits, TrainBatch(0, 1, 0.1, ids, mask, pos, resp, logits, None, None, None),
                                 ref, lam)
        # By hand: full forward of both models on the unpadded sequence, token by token.
        seq = torch.tensor([[5, 6, 7, 10, 11, 12]])
        h, h_ref = model(input_ids=seq).logits[0], ref(input_ids=seq).logits[0]
        expected = sum(torch.log_softmax((1 + lam) * h[t - 1] - lam * h_ref[t - 1], -1)[seq[0, t]].item()
                       for t in (3, 4, 5))
    assert got.item() == pytest.approx(expected, abs=1e-4)


def test_trainer_uses_each_pairs_target(tiny):
    model, tok = tiny
    ex = [Example([5, 6], [7, 8], [9], -3.0, -2.0, 1.0), Example([5], [7], [8, 9], -1.0, -4.0, 1.0)]
    flipped = [Example(e.prompt, e.a, e.b, e.ref_a, e.ref_b, 0.0) for e in ex]
    with torch.no_grad():
        via_targets = batch_loss(model, ex, 0.1, tok.pad_token_id, targets=lambda b: 1 - b.p)
        direct = batch_loss(model, flipped, 0.1, tok.pad_token_id)
        unchanged = batch_loss(model, ex, 0.1, tok.pad_token_id)
    assert torch.allclose(via_targets, direct) and not torch.allclose(via_targets, unchanged)


def test_selfee_run_spends_only_seed_labels(tmp_path):
    cfg = preset("smoke", strategy="selfee", rounds=2, budget=8, seed_labels=4)
    results = run(cfg, out=tmp_path)
    assert results["labels_spent"].tolist() == [4, 4, 4]
    assert results["pairs_trained"].tolist() == [4, 4, 4]
    agreement = results["label_agreement"].iloc[1:]
    assert agreement.notna().all() and agreement.between(0, 1).all()
