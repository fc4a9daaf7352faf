"""Every built-in acquisition rule on tables small enough to solve by hand.

Unless a test says otherwise beta = 1 and logp_ref = 0, so a response's
implicit reward is its logp_policy and margins can be read off the table.
"""
from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np
import pandas as pd
import pytest

from acqkit import PAIR_COLUMNS, SamplePlan
from acqkit.plugins import collect, make_manager
from acqkit_plugins import apl, margin
from acqkit_plugins.apl import Certainty, Entropy, Hybrid
from acqkit_plugins.margin import MarginSelection


def table(rewards: dict[str, list[float]], ref=None, n_tokens=None, ids=None) -> pd.DataFrame:
    """One row per response; ``rewards[p]`` are prompt p's logp_policy values in table order."""
    rows, rid = [], 0
    for p, values in rewards.items():
        for k, lp in enumerate(values):
            rows.append({
                "prompt_id": p,
                "response_id": ids[p][k] if ids else rid,
                "text": f"{p}/{k}",
                "n_tokens": n_tokens[p][k] if n_tokens else 1,
                "logp_policy": float(lp),
                "logp_ref": float(ref[p][k]) if ref else 0.0,
                "entropy": 1.0,
            })
            rid += 1
    return pd.DataFrame(rows)


def pairs(frame: pd.DataFrame) -> list[tuple]:
    return [(p, int(a), int(b)) for p, a, b in frame[["prompt_id", "a", "b"]].itertuples(index=False)]


def select(strategy, t, budget, beta=1.0, seed=0):
    out = strategy.select(t, budget, np.random.default_rng(seed), beta)
    assert list(out.columns) == PAIR_COLUMNS
    return out


# ---------------------------------------------------------------- instance level

def test_instance_smallest_and_largest_among_all_pairs():
    # rewards 0, 1, 3, 7 -> margins in triu order: (0,1)=1 (0,2)=3 (0,3)=7 (1,2)=2 (1,3)=6 (2,3)=4
    t = table({"p": [0, 1, 3, 7]})
    small = select(MarginSelection(instance="smallest"), t, 1)
    large = select(MarginSelection(instance="largest"), t, 1)
    assert pairs(small) == [("p", 0, 1)] and small.score.tolist() == [1.0]
    assert pairs(large) == [("p", 0, 3)] and large.score.tolist() == [7.0]


def test_instance_ties_go_to_the_first_pair_in_triu_order():
    # rewards 0, 2, 4: (0,1)=2 and (1,2)=2 tie for smallest -> (0,1)
    t = table({"p": [0, 2, 4]})
    assert pairs(select(MarginSelection(instance="smallest"), t, 1)) == [("p", 0, 1)]
    # rewards 0, 5, 0: (0,1)=5 and (1,2)=5 tie for largest -> (0,1); (0,2)=0 is the smallest
    t = table({"p": [0, 5, 0]})
    assert pairs(select(MarginSelection(instance="largest"), t, 1)) == [("p", 0, 1)]
    assert pairs(select(MarginSelection(instance="smallest"), t, 1)) == [("p", 0, 2)]


def test_pairs_follow_table_order_not_response_id_order():
    t = table({"p": [0, 2, 4]}, ids={"p": [7, 3, 5]})
    assert pairs(select(MarginSelection(instance="smallest"), t, 1)) == [("p", 7, 3)]
    assert pairs(select(MarginSelection(instance="first"), t, 1)) == [("p", 7, 3)]
    assert pairs(select(MarginSelection(instance="largest"), t, 1)) == [("p", 7, 5)]


def test_interleaved_rows_are_grouped_by_prompt():
    t = table({"p": [0, 9], "q": [0, 1]})
    t = t.iloc[[0, 2, 1, 3]].reset_index(drop=True)  # p, q, p, q
    out = select(MarginSelection(instance="smallest", corpus="smallest"), t, 2)
    assert pairs(out) == [("q", 2, 3), ("p", 0, 1)] and out.score.tolist() == [1.0, 9.0]


def test_instance_random_is_uniform_over_the_pairs():
    # 1200 copies of one prompt: each draws its own pair; response k of prompt s has id 4s + k
    t = table({f"p{s}": [0, 1, 3, 7] for s in range(1200)})
    out = select(MarginSelection(instance="random"), t, 1200)
    counts = pd.Series(list(zip(out.a % 4, out.b % 4))).value_counts()
    assert set(counts.index) == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)}
    assert counts.between(150, 250).all()  # 200 expected each; 5 sigma is about 68


def test_margins_carry_beta_and_subtract_the_reference():
    # r = beta * (logp_policy - logp_ref) = 0.5 * ([-4, -4, -10] - [-6, -1, -10]) = [1, -1.5, 0]
    # margins (0,1)=2.5 (0,2)=1 (1,2)=1.5; beta = 1 doubles them and keeps the ranking
    t = table({"p": [-4, -4, -10]}, ref={"p": [-6, -1, -10]})
    out = select(MarginSelection(instance="largest"), t, 1, beta=0.5)
    assert pairs(out) == [("p", 0, 1)] and out.score.tolist() == [2.5]
    out = select(MarginSelection(instance="smallest"), t, 1, beta=0.5)
    assert pairs(out) == [("p", 0, 2)] and out.score.tolist() == [1.0]
    out = select(MarginSelection(instance="smallest"), t, 1, beta=1.0)
    assert pairs(out) == [("p", 0, 2)] and out.score.tolist() == [2.0]


def test_length_normalised_margins_can_pick_another_pair():
    # raw rewards -10, -4, -1: margins (0,1)=6 (0,2)=9 (1,2)=3 -> smallest (1,2)
    # per token (n = 10, 2, 1): -1, -2, -1: margins 1, 0, 1 -> smallest (0,2)
    t = table({"p": [-10, -4, -1]}, n_tokens={"p": [10, 2, 1]})
    assert pairs(select(MarginSelection(), t, 1)) == [("p", 1, 2)]
    out = select(MarginSelection(normalize=True), t, 1)
    assert pairs(out) == [("p", 0, 2)] and out.score.tolist() == [0.0]


# ---------------------------------------------------------------- corpus level

TWO_EACH = {"p0": [0, 3], "p1": [5, 6], "p2": [2, 0], "p3": [-1, 0]}  # margins 3, 1, 2, 1


def test_corpus_smallest_and_largest_with_ties_to_the_earlier_prompt():
    t = table(TWO_EACH)
    out = select(MarginSelection(corpus="smallest"), t, 2)
    assert out.prompt_id.tolist() == ["p1", "p3"] and out.score.tolist() == [1.0, 1.0]
    out = select(MarginSelection(corpus="smallest"), t, 3)
    assert out.prompt_id.tolist() == ["p1", "p3", "p2"]
    out = select(MarginSelection(corpus="largest"), t, 2)
    assert out.prompt_id.tolist() == ["p0", "p2"] and out.score.tolist() == [3.0, 2.0]


def test_corpus_none_keeps_table_order_up_to_the_budget():
    out = select(MarginSelection(corpus="none"), table(TWO_EACH), 3)
    assert out.prompt_id.tolist() == ["p0", "p1", "p2"]


def test_corpus_random_draws_uniform_subsets_of_the_chosen_pairs():
    t = table(TWO_EACH)
    seen = set()
    for seed in range(100):
        out = select(MarginSelection(instance="first", corpus="random"), t, 2, seed=seed)
        assert len(set(out.prompt_id)) == 2
        seen.add(frozenset(out.prompt_id))
    assert len(seen) == 6  # all C(4, 2) subsets


@pytest.mark.parametrize("instance, corpus, expected", [
    # p0 rewards 0,1,5: margins (0,1)=1 (0,2)=5 (1,2)=4
    # p1 rewards 0,2,3: margins (0,1)=2 (0,2)=3 (1,2)=1
    # p2 rewards 1,1,1: every margin 0
    ("largest", "smallest", [("p2", 6, 7, 0.0), ("p1", 3, 5, 3.0)]),
    ("largest", "largest", [("p0", 0, 2, 5.0), ("p1", 3, 5, 3.0)]),
    ("smallest", "largest", [("p0", 0, 1, 1.0), ("p1", 4, 5, 1.0)]),
    ("smallest", "smallest", [("p2", 6, 7, 0.0), ("p0", 0, 1, 1.0)]),
])
def test_instance_and_corpus_compose(instance, corpus, expected):
    t = table({"p0": [0, 1, 5], "p1": [0, 2, 3], "p2": [1, 1, 1]})
    out = select(MarginSelection(instance=instance, corpus=corpus), t, 2)
    assert [(p, int(a), int(b), s) for p, a, b, s in out.itertuples(index=False)] == expected


def test_margin_plan_oversamples_by_the_kept_fraction():
    assert MarginSelection().plan(10, 8, 1.0) == SamplePlan(10, 8, 1.0)
    assert MarginSelection(corpus="smallest").plan(10, 8, 1.0) == SamplePlan(20, 8, 1.0)
    assert MarginSelection(corpus="random", keep=0.3).plan(3, 4, 0.9) == SamplePlan(10, 4, 0.9)  # not 11
    assert MarginSelection(corpus="largest", keep=0.3).plan(10, 4, 1.0) == SamplePlan(34, 4, 1.0)


def test_a_short_pool_still_spends_the_budget():
    # planned 2 * 3 = 6 prompts, only 4 came: keep the 3 smallest, not 50% of 4
    out = select(MarginSelection(corpus="smallest", keep=0.5), table(TWO_EACH), 3)
    assert len(out) == 3
    # fewer prompts than the budget: one pair per prompt
    assert len(select(MarginSelection(corpus="smallest"), table(TWO_EACH), 10)) == 4


@pytest.mark.parametrize("factory", [MarginSelection, Entropy, Certainty, Hybrid])
def test_no_pairs_without_two_responses_or_budget(factory):
    assert select(factory(), table({"p": [1], "q": [2]}), 5).empty
    assert select(factory(), table(TWO_EACH), 0).empty
    assert select(factory(), table({}).reindex(columns=["prompt_id", "response_id", "n_tokens",
                                                        "logp_policy", "logp_ref"]), 5).empty


# ---------------------------------------------------------------- APL entropy

def test_entropy_ranks_prompts_by_mean_negative_logp():
    # H = -mean(logp): p0 2, p1 6, p2 4, p3 4
    t = table({"p0": [-1, -3], "p1": [-10, -2], "p2": [-4, -4], "p3": [-5, -3]})
    out = select(Entropy(), t, 3)
    assert out.prompt_id.tolist() == ["p1", "p2", "p3"]  # p2 and p3 tie: earlier first
    assert out.score.tolist() == [6.0, 4.0, 4.0]


def test_entropy_per_token_divides_each_logp_by_its_length():
    # per token: p0 (-1/1, -3/1) -> 2; p1 (-10/10, -2/2) -> 1; p2 (-4/2, -4/2) -> 2
    t = table({"p0": [-1, -3], "p1": [-10, -2], "p2": [-4, -4]},
              n_tokens={"p0": [1, 1], "p1": [10, 2], "p2": [2, 2]})
    assert select(Entropy(), t, 1).prompt_id.tolist() == ["p1"]
    out = select(Entropy(per_token=True), t, 2)
    assert out.prompt_id.tolist() == ["p0", "p2"] and out.score.tolist() == [2.0, 2.0]


def buggy_entropy(logp: np.ndarray, n: int) -> np.ndarray:
    """The APL authors' released code: prompt s averages samples [s:s+n]."""
    return np.array([-logp[s:s + n].mean() for s in range(len(logp) // n)])


def test_entropy_uses_each_prompts_own_samples_not_the_authors_shifted_slice():
    values = {"p0": [-1, -9], "p1": [-1, -1], "p2": [-3, -3]}
    flat = np.array([v for vs in values.values() for v in vs], dtype=float)
    correct = np.array([-flat[s * 2:(s + 1) * 2].mean() for s in range(3)])  # 5, 1, 3
    buggy = buggy_entropy(flat, 2)  # p1 averages [-9, -1] -> 5, p2 averages [-1, -1] -> 1
    assert correct.tolist() == [5.0, 1.0, 3.0] and buggy.tolist() == [5.0, 5.0, 1.0]
    out = select(Entropy(), table(values), 2)
    assert out.prompt_id.tolist() == ["p0", "p2"]  # the buggy ranking would say p0, p1
    assert out.score.tolist() == [5.0, 3.0]


@pytest.mark.parametrize("instance, pair", [("smallest", (1, 2)), ("largest", (0, 2)), ("first", (0, 1))])
def test_entropy_picks_the_pair_of_a_chosen_prompt_by_the_instance_rule(instance, pair):
    # p0 is the high-entropy prompt: H = 8/3 vs 1/3; its rewards -1, -3, -4
    t = table({"p0": [-1, -3, -4], "p1": [0, 0, -1]})
    out = select(Entropy(instance=instance), t, 1)
    assert pairs(out) == [("p0", *pair)]


def test_entropy_plan_samples_the_untruncated_policy_at_temperature_one():
    # the estimator assumes samples of the policy itself: temperature 1, no top-k (test_estimators.py)
    assert Entropy().plan(4, 8, 0.7) == SamplePlan(128, 8, 1.0, top_k=0)
    assert Entropy(og=2, n_responses=6).plan(4, 8, 0.7) == SamplePlan(8, 6, 1.0, top_k=0)
    assert Entropy(og=1).plan(4, 1, 1.0) == SamplePlan(4, 2, 1.0, top_k=0)  # entropy needs n >= 2 for a pair


# ---------------------------------------------------------------- APL certainty

def test_certainty_takes_the_largest_reward_differences_first():
    # margins p0 0.5, p1 2, p2 2, p3 1
    t = table({"p0": [0, 0.5], "p1": [2, 0], "p2": [0, -2], "p3": [1, 0]})
    out = select(Certainty(), t, 2)
    assert out.prompt_id.tolist() == ["p1", "p2"] and out.score.tolist() == [2.0, 2.0]
    assert select(Certainty(), t, 3).prompt_id.tolist() == ["p1", "p2", "p3"]
    # the opposite of the margin paper's winner on the same table
    assert select(MarginSelection(corpus="smallest"), t, 1).prompt_id.tolist() == ["p0"]


def test_certainty_uses_the_first_two_responses_unless_told_otherwise():
    t = table({"p": [0, 1, 9]})
    assert pairs(select(Certainty(), t, 1)) == [("p", 0, 1)]
    assert pairs(select(Certainty(instance="largest"), t, 1)) == [("p", 0, 2)]


def test_certainty_plan_overgenerates_one_pair_per_prompt_at_0_7():
    assert Certainty().plan(4, 8, 1.0) == SamplePlan(128, 2, 0.7)  # the run's top-k (top_k=None)
    assert Certainty(og=16, temperature=1.0, n_responses=4).plan(4, 8, 0.7) == SamplePlan(64, 4, 1.0)


# ---------------------------------------------------------------- APL hybrid

# Prompt s: logp_policy (-h, -h) so H = h; logp_ref (-h - u, -h) so the pair's margin is u.
H = [1, 8, 2, 7, 3, 4, 5, 6]
U = [9, 1, 8, 3, 7, 6, 5, 4]
POOL = table({f"p{s}": [-h, -h] for s, h in enumerate(H)},
             ref={f"p{s}": [-h - u, -h] for s, (h, u) in enumerate(zip(H, U))})


def test_hybrid_keeps_high_entropy_prompts_then_the_most_certain_pair():
    # budget 1, og 2, os 4: pool 8, keep the top 2 by entropy (p1, p3), then margin 3 beats 1
    out = select(Hybrid(og=2, os=4), POOL, 1)
    assert pairs(out) == [("p3", 6, 7)] and out.score.tolist() == [3.0]
    assert select(Certainty(), POOL, 1).prompt_id.tolist() == ["p0"]
    assert select(Entropy(), POOL, 1).prompt_id.tolist() == ["p1"]
    assert select(Hybrid(og=2, os=4), POOL, 2).prompt_id.tolist() == ["p3", "p1"]


def test_hybrid_entropy_stage_is_clipped_between_budget_and_budget_times_og():
    # og 4, os 2: ceil(8 / 2) = 4 kept (p1, p3, p7, p6) -> most certain p6 (5)
    assert select(Hybrid(og=4, os=2), POOL, 1).prompt_id.tolist() == ["p6"]
    # og 2, os 2: 4 clipped down to budget * og = 2 -> p3
    assert select(Hybrid(og=2, os=2), POOL, 1).prompt_id.tolist() == ["p3"]
    # os 8 on a short pool: ceil(8 / 8) = 1 clipped up to the budget 2 -> p1, p3
    assert select(Hybrid(og=32, os=8), POOL, 2).prompt_id.tolist() == ["p3", "p1"]


def test_hybrid_plan_samples_n_responses_for_og_times_os_times_the_budget():
    assert Hybrid().plan(4, 8, 0.7) == SamplePlan(4 * 32 * 8, 8, 1.0, top_k=0)
    assert Hybrid(og=16, os=4, n_responses=4).plan(2, 8, 1.0) == SamplePlan(128, 4, 1.0, top_k=0)


# ---------------------------------------------------------------- options and registration

def test_training_modes_default_per_paper_and_can_be_overridden():
    assert MarginSelection().training == "continue"
    assert {Entropy().training, Certainty().training, Hybrid().training} == {"reinit"}
    assert MarginSelection(training="reinit").training == "reinit"
    assert Certainty(training="continue").training == "continue"


@pytest.mark.parametrize("factory, options", [
    (MarginSelection, {"instance": "median"}),
    (MarginSelection, {"corpus": "first"}),
    (MarginSelection, {"keep": 0}),
    (MarginSelection, {"keep": 1.5}),
    (MarginSelection, {"keep": "half"}),
    (MarginSelection, {"training": "warm"}),
    (Entropy, {"og": 0}),
    (Entropy, {"n_responses": 1}),
    (Certainty, {"temperature": 0}),
    (Hybrid, {"os": 2.5}),
])
def test_bad_options_are_refused(factory, options):
    with pytest.raises(ValueError):
        factory(**options)


def fresh_registry():
    return collect(make_manager(load_entrypoints=False, extra_plugins=[margin, apl]))


def test_every_name_registers():
    assert fresh_registry().names("strategy") == sorted([
        "margin", "random", "smallest-margin", "largest-margin", "always-smallest", "always-random", "always-largest",
        "entropy", "certainty", "hybrid", "apl-entropy", "apl-certainty", "apl-hybrid",
    ])


def test_builtins_load_through_the_entry_point_group():
    found = {ep.name: ep.value for ep in entry_points(group="acqkit")}
    assert found["margin"] == "acqkit_plugins.margin" and found["apl"] == "acqkit_plugins.apl"


@pytest.mark.parametrize("spec, expected", [
    ("random", MarginSelection(instance="random")),
    ("smallest-margin", MarginSelection(instance="smallest")),
    ("always-smallest", MarginSelection(instance="smallest", corpus="smallest", keep=0.5)),
    ("always-random", MarginSelection(instance="random", corpus="random", keep=0.5)),
    ("always-largest", MarginSelection(instance="largest", corpus="largest", keep=0.5)),
    ("always-smallest(keep=0.25, training=reinit)",
     MarginSelection(instance="smallest", corpus="smallest", keep=0.25, training="reinit")),
    ("margin(instance=largest, corpus=none)", MarginSelection(instance="largest")),
    ("margin(instance=random, corpus=smallest, keep=1/4, normalize=true)",
     MarginSelection(instance="random", corpus="smallest", keep=0.25, normalize=True)),
    ("apl-entropy(per_token=true, instance=smallest)", Entropy(per_token=True, instance="smallest")),
    ("apl-certainty(og=16)", Certainty(og=16)),
    ("apl-hybrid(og=16, os=4)", Hybrid(og=16, os=4)),
    ("hybrid", Hybrid()),
])
def test_specs_build_presets_with_overrides(spec, expected):
    assert fresh_registry().build("strategy", spec) == expected
