"""Power, minimum detectable effect, seeds needed, Holm and verdicts, against independent calculations.

acqkit computes power with scipy's noncentral t; statsmodels' TTestPower (its own implementation)
and multipletests are the independent checks.
"""
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from acqkit.cli import cli
from acqkit.report.stats import holm, mde, mean_ci, p_value, power, sd, seeds_needed, verdict_words, versus_chance
from acqkit.report.summary import caption, markdown_table, summarize

SM = TTestPower()  # one-sample / paired t-test power


@pytest.mark.parametrize("effect, spread, n", [(0.097, 0.08, 3), (0.097, 0.08, 8), (-0.121, 0.10, 5),
                                               (0.02, 0.3, 40), (0.5, 0.1, 2)])
def test_power_matches_statsmodels(effect, spread, n):
    expected = SM.power(effect_size=abs(effect) / spread, nobs=n, alpha=0.05, alternative="two-sided")
    assert power(effect, spread, n) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("spread, n", [(0.08, 3), (0.10, 3), (0.05, 8), (0.2, 20)])
def test_minimum_detectable_effect_matches_statsmodels(spread, n):
    d = SM.solve_power(effect_size=None, nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
    assert mde(spread, n) == pytest.approx(d * spread, rel=1e-4)
    assert power(mde(spread, n), spread, n) == pytest.approx(0.8, abs=1e-6)


def test_seeds_needed_for_the_committed_results():
    """Issue 19: +0.097 with paired SD 0.08 (and -0.121 with SD 0.10) need about 6 to 8 seeds."""
    for effect, spread in ((0.097, 0.08), (-0.121, 0.10)):
        n = seeds_needed(effect, spread)
        assert 6 <= n <= 8
        exact = SM.solve_power(effect_size=abs(effect) / spread, nobs=None, alpha=0.05, power=0.8)
        assert n == math.ceil(exact)  # the fewest whole seeds reaching 80%
        assert power(effect, spread, n) >= 0.8 > power(effect, spread, n - 1)
    assert seeds_needed(0.0, 0.1) == math.inf and math.isnan(seeds_needed(0.1, 0.0))
    assert seeds_needed(1e-6, 1.0) == math.inf  # beyond any experiment


def test_p_value_is_the_paired_t_test():
    a, b = np.array([0.62, 0.70, 0.81, 0.55]), np.array([0.50, 0.60, 0.70, 0.58])
    d = a - b
    assert p_value(d.mean(), sd(d), len(d)) == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert math.isnan(p_value(0.1, 0.0, 3)) and math.isnan(p_value(0.1, 0.05, 1))


def test_holm_matches_statsmodels():
    p = [0.01, 0.04, 0.03, 0.005, 0.2]
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1].tolist())
    with_nan = holm([0.04, math.nan, 0.01])
    assert with_nan[0] == pytest.approx(0.04) and math.isnan(with_nan[1]) and with_nan[2] == pytest.approx(0.02)
    assert holm([0.03]) == [0.03]  # one comparison: nothing to correct


def test_verdict_words():
    assert verdict_words(0.11, 0.01, 3, 0.003, 0.03) == "better"
    assert verdict_words(-0.11, 0.01, 3, 0.003, 0.03) == "worse"
    assert verdict_words(0.02, 0.2, 3, 0.8, 0.65) == "no difference larger than 0.650"
    assert verdict_words(0.4, math.nan, 1, math.nan, math.nan) == "n/a: one seed, no test"
    assert verdict_words(math.nan, math.nan, 0, math.nan, math.nan) == "n/a: no paired seeds"
    assert verdict_words(0.05, 0.0, 3, math.nan, math.nan) == "same difference on every seed (SD 0, no test)"
    assert verdict_words(0.0, 0.0, 3, math.nan, math.nan) == "identical on every seed"


def hand_results(wins: dict[str, list[float]]) -> pd.DataFrame:
    rows = [dict(strategy=s, seed=i, round=1, labels_spent=4, win_rate=w, gold_reward=w, kl=1.0, length=8.0,
                 label_agreement=1.0) for s, ws in wins.items() for i, w in enumerate(ws)]
    return pd.DataFrame(rows)


# Five seeds. "a" gains 0.10 (clear), "b" gains 0.028 with p ~ 0.045 alone (not after Holm), "c" is noise.
WINS = {"random": [0.50, 0.55, 0.60, 0.52, 0.58], "a": [0.62, 0.63, 0.71, 0.60, 0.69],
        "b": [0.54, 0.56, 0.65, 0.52, 0.62], "c": [0.60, 0.45, 0.62, 0.50, 0.55]}


def test_summary_holm_verdicts_and_power_columns():
    s = summarize(hand_results(WINS)).set_index("strategy")
    ps = []
    for name in ("a", "b", "c"):
        d = np.array(WINS[name]) - np.array(WINS["random"])
        p = sps.ttest_rel(WINS[name], WINS["random"]).pvalue
        ps.append(p)
        assert s.loc[name, "win_rate_diff_p"] == pytest.approx(p)
        assert s.loc[name, "win_rate_diff_sd"] == pytest.approx(d.std(ddof=1))
        assert s.loc[name, "win_rate_diff_mde"] == pytest.approx(
            SM.solve_power(effect_size=None, nobs=5, alpha=0.05, power=0.8) * d.std(ddof=1), rel=1e-4)
        assert s.loc[name, "win_rate_diff_seeds"] == math.ceil(
            SM.solve_power(effect_size=abs(d.mean()) / d.std(ddof=1), nobs=None, alpha=0.05, power=0.8))
    assert s[["win_rate_diff_p_holm"]].loc[["a", "b", "c"]].squeeze().tolist() == pytest.approx(
        multipletests(ps, method="holm")[1].tolist())
    assert s.loc["random", "verdict"] == "baseline" and s.loc["a", "verdict"] == "better"
    assert s.loc["c", "verdict"] == f"no difference larger than {s.loc['c', 'win_rate_diff_mde']:.3f}"
    # "b" alone passes at 0.05; corrected for three comparisons it does not
    assert s.loc["b", "win_rate_diff_p"] < 0.05 < s.loc["b", "win_rate_diff_p_holm"]
    assert s.loc["b", "verdict"] == f"no difference larger than {s.loc['b', 'win_rate_diff_mde']:.3f}"


def test_holm_is_stated_only_with_several_comparisons():
    several = summarize(hand_results(WINS))
    assert "Holm correction over the 3 comparisons with random" in caption("random", several)
    one = summarize(hand_results({k: WINS[k] for k in ("random", "a")}))
    assert "Holm" not in caption("random", one)
    md = markdown_table(several, "hand", "random")
    assert "| verdict | seeds needed |" in md and "_Holm correction over the 3" in md
    assert "| better |" in md


def test_report_writes_summary_csv(tmp_path):
    hand_results(WINS).to_csv(tmp_path / "results.csv", index=False)
    out = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "no difference larger than" in out.output and "better" in out.output
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert {"win_rate_diff_mde", "win_rate_diff_seeds", "win_rate_diff_p_holm", "verdict"} <= set(summary.columns)
    assert summary.set_index("strategy").loc["a", "verdict"] == "better"


@pytest.mark.parametrize("agreements", [
    [0.58, 0.67, 0.50, 0.75, 0.42, 0.58, 0.67, 0.58],  # mean 0.59, p ~ 0.02: above
    [0.58, 0.42, 0.50, 0.67, 0.33, 0.58, 0.50, 0.42],  # mean 0.50: not distinguishable
    [0.25, 0.33, 0.42, 0.17, 0.33, 0.42, 0.25, 0.33],  # systematically inverted: below
    [0.55, 0.60, 0.45],                                  # 3 seeds of noise: not distinguishable
])
def test_label_agreement_against_chance_is_scipys_one_sample_t_test(agreements):
    p = sps.ttest_1samp(agreements, 0.5).pvalue
    expected = "not distinguishable" if p >= 0.05 else "above" if np.mean(agreements) > 0.5 else "below"
    assert versus_chance(agreements) == expected


def test_label_agreement_against_chance_edge_cases():
    assert versus_chance([1.0, 1.0, 1.0]) == "above"  # every seed perfect: no spread, no doubt
    assert versus_chance([0.5, 0.5]) == "not distinguishable"
    assert versus_chance([0.9]) == "one seed, no test"
    assert versus_chance([math.nan, math.nan]) == ""  # round 0 has no labels


def test_table_marks_labels_that_do_not_beat_chance(tmp_path):
    """Coin-flip and inverted labels are marked in the agreement column and explained under the table."""
    frame = hand_results({k: WINS[k] for k in ("random", "a", "b")})
    frame.loc[frame["strategy"] == "a", "label_agreement"] = [0.58, 0.42, 0.50, 0.67, 0.33]
    frame.loc[frame["strategy"] == "b", "label_agreement"] = [0.25, 0.33, 0.42, 0.17, 0.33]
    summary = summarize(frame)
    assert summary.set_index("strategy")["label_agreement_vs_chance"].to_dict() == {
        "random": "above", "a": "not distinguishable", "b": "below"}
    md = markdown_table(summary, "hand", "random")
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "| 1.00 |" in rows["random"] and "†" not in rows["random"] and "‡" not in rows["random"]
    assert "0.50 ± 0.16 †" in rows["a"] and "0.30 ± 0.12 ‡" in rows["b"]
    assert "† label agreement not above chance" in md and "‡ label agreement below chance" in md
    clean = markdown_table(summarize(hand_results(WINS)), "hand", "random")
    assert "†" not in clean and "‡" not in clean  # gold-quality labels: no mark, no note
    frame.to_csv(tmp_path / "results.csv", index=False)
    assert CliRunner().invoke(cli, ["report", str(tmp_path)]).exit_code == 0
    written = pd.read_csv(tmp_path / "summary.csv").set_index("strategy")
    assert written.loc["b", "label_agreement_vs_chance"] == "below"


def test_identical_seeds_have_exactly_no_spread():
    """Six equal round-0 win rates: numpy's mean misses by an ulp, which must not print as "± 0.000"."""
    x = [0.44701840727831820832] * 6
    assert np.std(x, ddof=1) > 0  # the float noise this guards against
    assert mean_ci(x) == (x[0], 0.0) and sd(x) == 0.0
    assert verdict_words(0.0, sd([0.0] * 6), 6, math.nan, math.nan) == "identical on every seed"
