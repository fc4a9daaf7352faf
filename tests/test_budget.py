"""Budget schedules: every schedule of one budget spends exactly the same total."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acqkit.round.budget import fractions, per_round


def test_the_margin_papers_three_schedules():
    # 30k labels over 3 rounds: increase 5k/10k/15k, constant 10k x 3, decrease 15k/10k/5k
    assert per_round(30_000, "increase", 3) == [5_000, 10_000, 15_000]
    assert per_round(30_000, "constant", 3) == [10_000, 10_000, 10_000]
    assert per_round(30_000, "decrease", 3) == [15_000, 10_000, 5_000]


def test_remainders_go_to_the_largest_fraction_then_the_earlier_round():
    # increase: 10 * (1/6, 2/6, 3/6) = 1.67, 3.33, 5 -> floors 1, 3, 5, one left for round 1 (.67)
    assert per_round(10, "increase", 3) == [2, 3, 5]
    assert per_round(10, "decrease", 3) == [5, 3, 2]
    # constant: 3.33 each, equal remainders -> the earliest round
    assert per_round(10, "constant", 3) == [4, 3, 3]
    assert per_round(5, "constant", 3) == [2, 2, 1]


@pytest.mark.parametrize("schedule", ["1/6,2/6,3/6", "1/6|2/6|3/6", "1,2,3", [1, 2, 3], [1 / 6, 2 / 6, 0.5],
                                      ["1/6", "2/6", "3/6"], np.array([0.1, 0.2, 0.3])])
def test_explicit_lists_are_normalised_like_increase(schedule):
    assert per_round(10, schedule, 3) == per_round(10, "increase", 3)
    assert fractions(schedule, 3) == pytest.approx([1 / 6, 2 / 6, 3 / 6])


def test_a_zero_fraction_skips_a_round():
    assert per_round(7, "0,1,0", 3) == [0, 7, 0]


@pytest.mark.parametrize("schedule, rounds", [
    ("1,2", 3), ("constant", 0), ("-1,1,1", 3), ("0,0,0", 3), ("sometimes", 3), ("1/0,1,1", 3),
    ([float("nan"), 1, 1], 3), ([float("inf"), 1, 1], 3),
])
def test_bad_schedules_are_refused(schedule, rounds):
    with pytest.raises(ValueError):
        fractions(schedule, rounds)


@pytest.mark.parametrize("total", [-1, 2.5])
def test_bad_totals_are_refused(total):
    with pytest.raises(ValueError):
        per_round(total, "constant", 3)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 12))
def test_named_schedules_spend_the_same_total(total, rounds):
    counts = {name: per_round(total, name, rounds) for name in ("constant", "increase", "decrease")}
    for name, c in counts.items():
        assert sum(c) == total and len(c) == rounds and min(c) >= 0, name
        assert all(isinstance(x, int) for x in c)
    assert max(counts["constant"]) - min(counts["constant"]) <= 1
    assert counts["increase"] == sorted(counts["increase"])
    assert counts["decrease"] == sorted(counts["decrease"], reverse=True)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=12))
def test_explicit_schedules_spend_the_total_within_one_label_of_each_share(total, weights):
    if sum(weights) <= 0:
        with pytest.raises(ValueError):
            per_round(total, weights, len(weights))
        return
    counts = per_round(total, weights, len(weights))
    assert sum(counts) == total
    share = np.asarray(weights) / sum(weights) * total
    assert np.all(np.abs(np.asarray(counts) - share) < 1 + 1e-6)
