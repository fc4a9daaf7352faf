"""Bad input stops acqkit with an error naming the file, field or plugin, and leaves nothing to trust.

Broken components come from a real plugin package (tests/faults/acqkit_bad.py,
installed through the ``acqkit`` entry-point group), run through the real loop
on the tiny model. Each case is a row of docs/reliability.md.
"""
from __future__ import annotations

import re
import shutil
import sqlite3
import sys

import pytest
from click.testing import CliRunner

from acqkit.cli import cli
from acqkit.config import preset
from acqkit.store.ledger import Ledger, LedgerError
from acqkit.round.loop import run
from acqkit.plugins import PluginError, collect, make_manager
from acqkit.round.session import Session
from acqkit.errors import PluginOutputError, PromptError
from kill_helpers import FAULTS, StopAfterRound

BASE = dict(rounds=1, budget=4, seed_labels=0, eval_prompts=4, kl_samples=0, max_new_tokens=8)
BAD = r"\(plugin 'bad' from package acqkit-bad\)"


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """The installed plugins plus the broken ones, found through entry points like any package."""
    site = tmp_path_factory.mktemp("site")
    info = site / "acqkit_bad-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acqkit-bad\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[acqkit]\nbad = acqkit_bad\n")
    sys.path[:0] = [str(site), str(FAULTS)]
    try:
        yield collect(make_manager())
    finally:
        sys.path.remove(str(site)), sys.path.remove(str(FAULTS))


@pytest.fixture(scope="module")
def session(reg):
    return Session.open(preset("smoke", **BASE), reg)


def assert_nothing_trusted(out, ledger_empty=True):
    """No results row, no checkpoint, and (unless labels were really bought) no label in the ledger."""
    assert not (out / "results.csv").exists() and not (out / "checkpoint").exists()
    if ledger_empty and (out / "ledger.sqlite").exists():
        with Ledger(out / "ledger.sqlite") as ledger:
            assert len(ledger) == 0


@pytest.mark.parametrize("field, spec, error, message", [
    ("strategy", "bad-unknown-ids", PluginOutputError,
     r"strategy 'bad-unknown-ids': unknown response id\(s\) in column 'b': \[10000\]"),
    ("strategy", "bad-self-pair", PluginOutputError, "strategy 'bad-self-pair' returned a pair of a response with itself"),
    ("strategy", "bad-across-prompts", PluginOutputError, "responses belong to different prompts"),
    ("strategy", "bad-over-budget", PluginOutputError, "returned 5 pairs, over the round's budget of 4"),
    ("strategy", "bad-raises", PluginError, f"strategy 'bad-raises' {BAD} raised RuntimeError in select\\(\\): "
                                            r"selection exploded \(at .*acqkit_bad.py:\d+\)"),
    ("strategy", "bad-pandas", PluginError, f"strategy 'bad-pandas' {BAD} raised KeyError in select\\(\\): "
                                            r".*\(at [^()]*acqkit_bad.py:\d+\)$"),  # its own line, not pandas'
    ("strategy", "bad-factory", PluginError, f"strategy 'bad-factory' {BAD} raised KeyError while being built"),
    ("labeler", "nan-oracle", PluginOutputError,
     r"labeler 'nan-oracle' returned p = NaN \(no preference\) for 4 pair\(s\) it charged for"),
    ("labeler", "inf-oracle", PluginOutputError, r"labeler 'inf-oracle' returned preference\(s\) outside \[0, 1\] "
                                                 r"or not finite: \[inf"),
    ("labeler", "range-oracle", PluginOutputError, r"outside \[0, 1\] or not finite: \[1.5"),
    ("labeler", "short-oracle", PluginOutputError, "labeler 'short-oracle' returned 3 labels for 4 pairs"),
    ("labeler", "reordered-oracle", PluginOutputError, r"labeler 'reordered-oracle' answered pair \(\d+, \d+\) at "
                                                       r"row 0 where it was asked \(\d+, \d+\); return the pairs in "
                                                       "the order given"),
    ("labeler", "unreachable-oracle", PluginError,
     f"labeler 'unreachable-oracle' {BAD} raised ConnectionError in label\\(\\): oracle unreachable"),
])
def test_a_broken_plugin_is_named_and_nothing_is_kept(reg, session, tmp_path, field, spec, error, message):
    cfg = preset("smoke", **BASE, **{field: spec})
    with pytest.raises(error, match=message):
        run(cfg, session, out=tmp_path, registry=reg)
    assert_nothing_trusted(tmp_path)


def test_a_refiner_failing_inside_training_is_named_and_the_bought_labels_are_kept(reg, session, tmp_path):
    cfg = preset("smoke", **BASE, refiner="raising-refiner")
    with pytest.raises(PluginError, match=f"refiner 'raising-refiner' {BAD} raised FloatingPointError in the "
                                          r"function its in_training\(\) returned: targets diverged"):
        run(cfg, session, out=tmp_path, registry=reg)
    assert_nothing_trusted(tmp_path, ledger_empty=False)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert len(ledger) == 4  # paid for before training failed: a rerun will not pay again


def test_the_cli_shows_a_plugin_error_as_one_line(reg, tmp_path, monkeypatch):
    monkeypatch.setattr("acqkit.plugins._default", reg)
    result = CliRunner().invoke(cli, ["run", "--preset", "smoke", "--strategy", "bad-raises", "--rounds", "1",
                                      "--budget", "4", "--seed-labels", "0", "--eval-prompts", "4",
                                      "--max-new-tokens", "8", "--kl-samples", "0", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: strategy 'bad-raises' (plugin 'bad' from package acqkit-bad) raised RuntimeError" in result.output


def test_an_oracle_returning_nan_stops_before_any_label_is_stored(reg, tmp_path):
    cfg = preset("smoke", **BASE, task="sentiment(oracle=nan-later)", eval_samples=0)  # the labels' call is second
    with pytest.raises(PluginOutputError, match=r"^oracle 'nan-later' \(plugin 'bad' from package acqkit-bad\) "
                                                r"returned 8 NaN or infinite reward\(s\) from reward\(\): \[nan"):
        run(cfg, out=tmp_path, registry=reg)
    assert_nothing_trusted(tmp_path)
    assert not (tmp_path / "labels.jsonl").exists() or not (tmp_path / "labels.jsonl").read_text().strip()


def test_a_task_whose_gold_reward_is_infinite_is_named_on_one_line(reg, tmp_path, monkeypatch):
    monkeypatch.setattr("acqkit.plugins._default", reg)
    result = CliRunner().invoke(cli, ["run", "--preset", "smoke", "--task", "inf-task", "--rounds", "1",
                                      "--budget", "4", "--seed-labels", "0", "--eval-prompts", "3",
                                      "--max-new-tokens", "8", "--kl-samples", "0", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert ("Error: task 'inf-task' (plugin 'bad' from package acqkit-bad) returned 3 NaN or infinite reward(s) "
            "from gold_reward(): [inf, inf, inf]") in result.output
    assert_nothing_trusted(tmp_path)


@pytest.mark.parametrize("task, message", [
    ("empty-prompt-task", r"task 'empty-prompt-task' \(plugin 'bad' from package acqkit-bad\), train prompt 2 "
                          r"\('odd'\): empty prompt text"),
    ("blank-prompt-task", r"task 'blank-prompt-task' .*, train prompt 2 \('odd'\): empty prompt text"),
    ("long-prompt-task", r"^task 'long-prompt-task' \(plugin 'bad' from package acqkit-bad\): prompt 'odd' is "
                         r"\d+ tokens with the chat template, over the limit of \d+"),
])
def test_every_task_gets_the_prompt_checks_of_a_prompt_file(reg, task, message):
    with pytest.raises(PromptError, match=message):
        Session.open(preset("smoke", **{**BASE, "eval_prompts": 3}, task=task), reg)


def test_fewer_eval_prompts_than_asked_is_said(reg, caplog):
    with caplog.at_level("WARNING", logger="acqkit"):
        session = Session.open(preset("smoke", **{**BASE, "eval_prompts": 24}, task="small-task"), reg)
    assert len(session.evalset.prompts) == 3
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == ["acqkit: eval_prompts = 24, but task 'small-task' (plugin 'bad' from package acqkit-bad) has 3 "
                    "eval prompts: evaluating on all 3"]


@pytest.mark.parametrize("flags, message", [
    (["--strategies", "random,nope"], "config field 'strategy': unknown strategy 'nope'; known strategies: "),
    (["--labeler", "nope"], "config field 'labeler': unknown labeler 'nope'; known labelers: "),
    (["--task", "nope"], "config field 'task': unknown task 'nope'; known tasks: "),
    (["--refiner", "nope"], "config field 'refiner': unknown refiner 'nope'; known refiners: "),
    (["--rounds", "1", "--budget", "5000"], "config field 'budget' = 5000: round 1 of 1 would buy 5000 labels but "
                                            "only 1800 distinct pairs exist (300 train prompts of task 'sentiment' "
                                            "x C(4, 2))"),
    (["--seed-labels", "301"], "config field 'seed_labels' = 301: the warm start labels one pair per prompt and "
                               "task 'sentiment' has 300 train prompts"),
    (["--model", "/no/such/model"], "--model '/no/such/model': no model directory with a config.json"),
])
def test_bad_config_fails_before_anything_is_loaded_or_written(tmp_path, flags, message):
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["compare", "--preset", "smoke", "--seeds", "1", "--out", str(out), "--quiet",
                                      *flags])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output
    assert not out.exists()


def test_an_unknown_seed_labeler_in_a_config_file_is_named(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('strategies = ["random"]\nseeds = [0]\n[base]\nmodel = "tiny"\nseed_labeler = "nope"\n')
    result = CliRunner().invoke(cli, ["compare", "--config", str(config), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 1 and "config field 'seed_labeler': unknown labeler 'nope'" in result.output
    assert not (tmp_path / "cmp").exists()


@pytest.fixture(scope="module")
def interrupted(session, tmp_path_factory):
    """A run directory left after round 1 of 2, as a Ctrl-C leaves it."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.raises(KeyboardInterrupt):
        run(preset("smoke", **{**BASE, "rounds": 2}), session, out=out,
            registry=collect(make_manager(extra_plugins=[StopAfterRound(1)])))
    return out


def corrupt_checkpoint(d):
    weights = d / "checkpoint" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def plant_pickle(d):
    (d / "checkpoint" / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")  # pickle of the int 1


def corrupt_ledger(d):
    (d / "ledger.sqlite").write_bytes(b"not a database" * 300)
    for side in ("ledger.sqlite-wal", "ledger.sqlite-shm"):
        (d / side).unlink(missing_ok=True)


def corrupt_results(d):
    (d / "results.csv").write_text("strategy,seed\nrandom,0\n")


def corrupt_log(d):
    lines = (d / "labels.jsonl").read_text().splitlines(keepends=True)
    (d / "labels.jsonl").write_text(lines[0] + "{not json\n" + "".join(lines[1:]))


@pytest.mark.parametrize("damage, error, message", [
    (corrupt_checkpoint, ValueError, r"checkpoint: cannot load the checkpoint"),
    (plant_pickle, ValueError, r"checkpoint: refusing to load pickle files \['pytorch_model.bin'\]"),
    (corrupt_ledger, LedgerError, r"ledger.sqlite is corrupted or not an SQLite database"),
    (corrupt_results, ValueError, r"results.csv: not an acqkit results file \(missing column\(s\) \['round'"),
    (corrupt_log, ValueError, r"labels.jsonl, line 2: not valid JSON"),
])
def test_a_damaged_run_directory_stops_the_resume_and_is_left_as_it_was(session, interrupted, tmp_path, damage,
                                                                         error, message):
    d = tmp_path / "run"
    shutil.copytree(interrupted, d)
    damage(d)
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    with pytest.raises(error, match=re.escape(str(d)) + ".*" + message):
        run(preset("smoke", **{**BASE, "rounds": 2}), session, out=d, resume=True)
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


def test_a_damaged_comparison_config_is_named_on_resume(tmp_path):
    (tmp_path / "config.toml").write_text("strategies = [\n")
    result = CliRunner().invoke(cli, ["compare", "--resume", str(tmp_path)])
    assert result.exit_code == 1 and f"{tmp_path / 'config.toml'}: not valid TOML" in result.output


def test_an_sqlite_file_that_is_not_a_ledger_is_refused(tmp_path):
    other = tmp_path / "ledger.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(LedgerError, match=f"{other} is an SQLite database but not an acqkit label ledger"):
        Ledger(other)
