"""Diagnostics from a real smoke comparison's logs, checked against calculations made here from the same files;
and the ``flip`` labeler's rate and determinism."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from acqkit.cli import cli
from acqkit.components import LabelContext
from acqkit.plugins import registry
from acqkit.report.diagnostics import diagnose, find_runs, pool_margins

STRATEGIES = ["random", "smallest-margin"]


def jsonl(path: Path) -> pd.DataFrame:
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Two strategies x 2 seeds x 2 rounds, half the gold labels reversed, a refiner that logs its smoothing."""
    out = tmp_path_factory.mktemp("diag") / "cmp"
    args = ["compare", "--preset", "smoke", "--strategies", ",".join(STRATEGIES), "--seeds", "2", "--rounds", "2",
            "--budget", "8", "--seed-labels", "2", "--eval-prompts", "4", "--max-new-tokens", "8",
            "--labeler", "flip(labeler=gold, rate=0.5)", "--refiner", "confidence-smoothing(warmup=0, k=0.5)",
            "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def runs(out: Path) -> dict:
    found = {}
    for path in find_runs(out):
        found[(path.parent.name, int(path.name.split("-")[1]))] = path
    assert sorted(found) == [(s, k) for s in ("random", "smallest-margin") for k in (0, 1)]
    return found


def margins_of(path: Path) -> tuple[pd.DataFrame, dict]:
    pool = jsonl(path / "pool.jsonl")
    reward = {(r, i): w for r, i, w in pool[["round", "response_id", "reward"]].itertuples(index=False)}
    return pool, reward


def test_labels_record_gold_agreement_and_flips(compared):
    out, _ = compared
    for (strategy, seed), path in runs(out).items():
        labels = jsonl(path / "labels.jsonl")
        assert {"gold_p", "gold_agrees", "flipped"} <= set(labels.columns)
        assert (labels["flipped"] == labels["source"].str.endswith("+flipped")).all()
        assert not labels.loc[labels["round"] == 0, "flipped"].any()  # the warm start's gold labels are clean
        results = pd.read_csv(path / "results.csv").set_index("round")
        for rnd in (1, 2):
            agrees = labels.loc[labels["round"] == rnd, "gold_agrees"].dropna()
            expected = results.loc[rnd, "label_agreement"]
            # the per-label record reproduces the loop's own label_agreement
            assert (math.isnan(expected) and agrees.empty) or agrees.astype(float).mean() == pytest.approx(expected)
        decided = labels[(labels["round"] >= 1) & (labels["p"] != 0.5)]
        assert decided["flipped"].sum() >= 1
        # a flipped gold label agrees with gold only where gold itself was a near coin flip
        flipped = decided[decided["flipped"] & decided["gold_agrees"].notna()]
        assert (flipped["gold_agrees"] == ((flipped["gold_p"] > 0.5) == (flipped["p"] > 0.5))).all()


def test_pool_margins_and_smallest_margin_choices(compared):
    out, _ = compared
    d = diagnose(out)
    for (strategy, seed), path in runs(out).items():
        pool, reward = margins_of(path)
        labels = jsonl(path / "labels.jsonl")
        online = labels[labels["round"] >= 1]
        assert set(pool["round"]) == {1, 2}
        for rnd, pid, a, b in online[["round", "prompt_id", "a", "b"]].itertuples(index=False):
            mine = pool[(pool["round"] == rnd) & (pool["prompt_id"] == pid)]
            assert {a, b} <= set(mine["response_id"])  # the chosen pair came from the logged pool
            if strategy == "smallest-margin":  # its pair has the prompt's smallest |margin|
                chosen = abs(reward[(rnd, a)] - reward[(rnd, b)])
                assert chosen == pytest.approx(pool_margins(mine).min(), abs=1e-9)
    summary = d.margin_summary.set_index("strategy")
    n_pool = sum(len(pool_margins(margins_of(p)[0])) for (s, _), p in runs(out).items() if s == "random")
    assert summary.loc["random", "pool_pairs"] == n_pool
    assert summary.loc["smallest-margin", "chosen_percentile"] <= summary.loc["random", "chosen_percentile"]


def test_overlap_matrix_is_the_mean_jaccard_per_seed(compared):
    out, _ = compared
    matrix = diagnose(out).overlap
    assert list(matrix.index) == list(matrix.columns) == STRATEGIES
    assert np.allclose(np.diag(matrix), 1.0) and np.allclose(matrix, matrix.T)
    by_hand = []
    for seed in (0, 1):
        sets = []
        for strategy in STRATEGIES:
            labels = jsonl(runs(out)[(strategy, seed)] / "labels.jsonl")
            r1 = labels[labels["round"] == 1]
            sets.append({(p, frozenset((x, y))) for p, x, y in r1[["prompt_id", "text_a", "text_b"]].itertuples(index=False)})
        by_hand.append(len(sets[0] & sets[1]) / len(sets[0] | sets[1]))
    assert matrix.loc["random", "smallest-margin"] == pytest.approx(np.mean(by_hand))


def test_label_quality_by_margin_decile(compared):
    out, _ = compared
    quality = diagnose(out).quality
    every = quality[quality["strategy"] == "all"]
    labels = pd.concat([jsonl(p / "labels.jsonl") for p in runs(out).values()])
    judged = labels[(labels["round"] >= 1) & labels["gold_agrees"].notna()]
    assert every["n"].sum() == len(judged)
    assert (every["n"] * every["agreement"]).sum() / every["n"].sum() == pytest.approx(
        judged["gold_agrees"].astype(float).mean())
    assert list(every["decile"]) == list(range(1, len(every) + 1)) and (every["lo"].diff().dropna() >= 0).all()


def test_flip_detection_precision_and_recall(compared):
    out, _ = compared
    flips = diagnose(out).flips.set_index("strategy")
    for strategy in STRATEGIES:
        both = smoothed = flipped = 0
        for (s, _), path in runs(out).items():
            if s != strategy:
                continue
            labels = jsonl(path / "labels.jsonl")
            log = jsonl(path / "refiner.jsonl")
            for rnd, steps in log.groupby("round"):  # training set = the round's labels, in order
                mine = labels[labels["round"] == rnd].reset_index(drop=True)
                share = steps.groupby("index")["smoothed"].mean()
                down = share >= 0.5
                is_flipped = mine.loc[share.index, "flipped"].to_numpy(bool)
                both += int((down.to_numpy() & is_flipped).sum())
                smoothed += int(down.sum())
                flipped += int(is_flipped.sum())
        row = flips.loc[strategy]
        assert (row["both"], row["smoothed"], row["flipped"]) == (both, smoothed, flipped)
        assert row["precision"] == pytest.approx(both / smoothed) if smoothed else math.isnan(row["precision"])
        assert row["recall"] == pytest.approx(both / flipped) if flipped else math.isnan(row["recall"])


def test_report_renders_every_diagnostic(compared):
    out, printed = compared
    for title in ("Jaccard overlap", "margins of the chosen pairs", "by margin decile", "flipped labels the refiner"):
        assert title in printed  # compare shows them too
    again = CliRunner().invoke(cli, ["report", str(out), "--plots", str(out / "again")])
    assert again.exit_code == 0, again.output
    folder = out / "again" / "diagnostics"
    for name in ("overlap.csv", "margins.csv", "label_quality.csv", "flip_detection.csv"):
        assert (folder / name).exists()
    for name in ("overlap.png", "margins.png", "label_quality.png"):
        with Image.open(folder / name) as img:
            assert img.format == "PNG"
    assert pd.read_csv(folder / "overlap.csv", index_col=0).shape == (2, 2)


# --- the flip labeler -----------------------------------------------------------------------------


def pairs_and_table(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"prompt_id": [f"p{i // 2}" for i in range(2 * n)], "response_id": range(2 * n),
                          "logp_policy": rng.normal(size=2 * n), "logp_ref": np.zeros(2 * n)})
    pairs = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "a": range(0, 2 * n, 2),
                          "b": range(1, 2 * n, 2), "score": 0.0})
    return pairs, table


def ask(spec: str, stage_seed: int = 7) -> pd.DataFrame:
    pairs, table = pairs_and_table()
    ctx = LabelContext(task=None, rng=np.random.default_rng(stage_seed), round=1, extras={})
    return registry().build("labeler", spec).label(pairs, table, ctx)


def test_flip_reverses_exactly_its_rate_and_marks_them():
    clean = ask("self")
    noisy = ask("flip(labeler=self, rate=0.25)")
    flipped = noisy["source"].str.endswith("+flipped").to_numpy()
    assert flipped.sum() == 10  # 25% of 40 decided labels, exactly
    assert np.array_equal(noisy["p"].to_numpy(), np.where(flipped, 1 - clean["p"], clean["p"]))
    assert set(noisy.loc[~flipped, "source"]) == {"self"}
    assert ask("flip(labeler=self, rate=0)")["source"].eq("self").all()
    assert ask("flip(labeler=self, rate=1)")["source"].str.endswith("+flipped").all()


def test_flip_is_deterministic_and_seeded():
    first, again = ask("flip(labeler=self, rate=0.5)"), ask("flip(labeler=self, rate=0.5)")
    pd.testing.assert_frame_equal(first, again)
    other_seed = ask("flip(labeler=self, rate=0.5, seed=1)")
    other_stage = ask("flip(labeler=self, rate=0.5)", stage_seed=8)  # another run seed or round
    assert not first["source"].equals(other_seed["source"]) and not first["source"].equals(other_stage["source"])


def test_flip_is_paid_iff_its_labeler_is():
    reg = registry()
    assert reg.build("labeler", "flip(labeler=self)").paid is False
    assert reg.build("labeler", "flip(labeler=gold)").paid is True
    assert reg.build("labeler", "flip(labeler=self(soft=true), rate=0.5)").inner.soft is True
    with pytest.raises(Exception, match="rate must be in"):
        reg.build("labeler", "flip(labeler=gold, rate=1.5)")
