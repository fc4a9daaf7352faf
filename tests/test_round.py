"""A whole round on the tiny model, through the Python API and through the CLI."""
import json

import pandas as pd
from click.testing import CliRunner

from acqkit.cli import cli
from acqkit.config import preset
from acqkit.loop import RESULT_COLUMNS, run


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
    a = run(cfg, out=tmp_path / "a").drop(columns="seconds")
    b = run(cfg, out=tmp_path / "b").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    assert (tmp_path / "a" / "labels.jsonl").read_text() == (tmp_path / "b" / "labels.jsonl").read_text()
