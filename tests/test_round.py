"""A whole round on the tiny model, through the Python API and through the CLI."""
import json
from dataclasses import replace

import pandas as pd
import pytest
from click.testing import CliRunner

from acqkit.round import loop
from acqkit.cli import cli
from acqkit.config import preset
from acqkit.round.loop import RESULT_COLUMNS, run
from acqkit.plugins import collect, make_manager
from kill_helpers import StopAfterRound


def test_python_api_runs_rounds_and_persists_labels(tmp_path):
    cfg = preset("smoke", strategy="smallest-margin", rounds=2, budget=12, seed_labels=4)
    results = run(cfg, out=tmp_path)
    assert list(results.columns) == RESULT_COLUMNS
    assert results["round"].tolist() == [0, 1, 2]
    assert results["labels_spent"].tolist() == [4, 10, 16]  # 4 warm-start + 6 per round
    assert results["win_rate"].between(0, 1).all()
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 16 and {r["round"] for r in labels} == {0, 1, 2}
    assert all(r["p"] in (0.0, 0.5, 1.0) and r["text_a"] is not None for r in labels)
    on_disk = pd.read_csv(tmp_path / "results.csv")
    assert on_disk["labels_spent"].tolist() == [4, 10, 16]


def test_cli_compare_writes_a_row_per_strategy_seed_round(tmp_path):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["compare", "--preset", "smoke", "--strategies", "random,smallest-margin",
                                      "--seeds", "2", "--rounds", "1", "--budget", "8", "--out", str(out),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert "gold win rate" in result.output and "smallest-margin" in result.output
    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 2 * 2 * 2  # strategies x seeds x (round 0 + round 1)
    assert set(rows["strategy"]) == {"random", "smallest-margin"}
    assert (out / "config.toml").exists()


def test_cli_run_and_clear_errors(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["run", "--preset", "smoke", "--rounds", "1", "--budget", "4", "--seed-labels", "0",
                             "--out", str(tmp_path / "r"), "--quiet"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(cli, ["compare", "--preset", "smoke", "--strategies", "random,nope", "--out",
                              str(tmp_path / "x")])
    assert bad.exit_code != 0 and "unknown strategy 'nope'" in bad.output and "smallest-margin" in bad.output
    missing = runner.invoke(cli, ["run", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "y")])
    assert missing.exit_code != 0 and "no model directory" in missing.output


def test_same_seed_same_results(tmp_path):
    cfg = preset("smoke", strategy="random", rounds=1, budget=6, seed_labels=4)
    run(cfg, out=tmp_path / "a")
    run(cfg, out=tmp_path / "b")
    for name in ("results.csv", "labels.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = run(replace(cfg, seed=1), out=tmp_path / "c")
    texts = lambda d: [json.loads(x)["text_a"] for x in (tmp_path / d / "labels.jsonl").read_text().splitlines()]
    assert texts("a")[4:] != texts("c")[4:]  # a different seed samples different responses (warm start shared)


@pytest.mark.parametrize("strategy, warm_starts", [("smallest-margin", 0), ("apl-certainty(og=2)", 1),
                                                    ("selfee(judge=previous, soft=true)", 0)])
def test_resume_after_a_stop_between_rounds_matches_an_uninterrupted_run(tmp_path, monkeypatch, strategy,
                                                                         warm_starts):
    cfg = preset("smoke", strategy=strategy, rounds=3, budget=12, seed_labels=4)
    run(cfg, out=tmp_path / "full")
    crashing = collect(make_manager(extra_plugins=[StopAfterRound(2)]))
    with pytest.raises(KeyboardInterrupt):
        run(cfg, out=tmp_path / "resumed", registry=crashing)
    assert len(pd.read_csv(tmp_path / "resumed" / "results.csv")) == 3  # rounds 0..2 persisted
    calls = []
    real = loop.warm_start
    monkeypatch.setattr(loop, "warm_start", lambda *a, **k: calls.append(1) or real(*a, **k))
    run(cfg, out=tmp_path / "resumed", resume=True)
    assert len(calls) == warm_starts  # only a strategy that restarts from round 0 each round redoes it
    for name in ("results.csv", "labels.jsonl", "examples.jsonl"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name


def test_compare_resume_from_its_directory_keeps_finished_cells(tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--preset", "smoke", "--strategies", "random", "--seeds", "1", "--rounds", "2",
            "--budget", "4", "--seed-labels", "2", "--out", str(out), "--quiet"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = (out / "results.csv").read_bytes()
    marker = out / "runs" / "random" / "seed-0" / "checkpoint" / "ACQKIT_ROUND"
    stamp = marker.stat().st_mtime_ns
    again = CliRunner().invoke(cli, ["compare", "--resume", str(out), "--quiet"])
    assert again.exit_code == 0, again.output
    assert (out / "results.csv").read_bytes() == before
    assert marker.stat().st_mtime_ns == stamp  # nothing was recomputed


def test_runs_on_one_session_share_cached_stages_only_when_the_config_allows(monkeypatch):
    """The warm start and round 1's table are shared across strategies, never across what shapes them."""
    from acqkit.plugins import registry
    from acqkit.round.session import Session

    base = preset("smoke", strategy="random", rounds=1, budget=4, seed_labels=2, eval_prompts=4, max_new_tokens=8,
                  epochs=1, seed_epochs=1)
    session = Session.open(base, registry())
    computed = []
    real = loop.sample_and_score
    monkeypatch.setattr(loop, "sample_and_score",
                        lambda *a, **k: computed.append((a[3], real(*a, **k))) or computed[-1][1])

    def rounds_computed(cfg):
        computed.clear()
        run(cfg, session=session)
        return [r for r, _ in computed]

    assert rounds_computed(base) == [0, 1]
    first = {r: t for r, t in computed}
    assert rounds_computed(replace(base, strategy="smallest-margin")) == []  # same warm start, same plan
    # what shaped the warm-start policy: round 1 samples from another policy
    assert rounds_computed(replace(base, lr=base.lr / 2)) == [0, 1]
    # top-k changes the samples of both rounds
    assert rounds_computed(replace(base, top_k=5)) == [0, 1]
    other = {r: t for r, t in computed}
    for r in (0, 1):
        assert first[r]["response_ids"].tolist() != other[r]["response_ids"].tolist()
    assert rounds_computed(replace(base, top_k=5, strategy="smallest-margin")) == []
    # a response's randomness is its prompt's, not its batch's: another batch size draws the same tokens,
    # but the stages run again (the cache promises the very bits, and batching moves the last ones)
    assert rounds_computed(replace(base, gen_batch_size=3)) == [0, 1]
    for r in (0, 1):
        assert first[r]["response_ids"].tolist() == computed[r][1]["response_ids"].tolist()
