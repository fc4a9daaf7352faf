"""The judge labeler against real HTTP servers on loopback: tests/judge_server.py, and `transformers serve`."""
from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from acqkit.cli import cli
from acqkit.components import LabelContext, Prompt
from acqkit.config import preset
from acqkit.errors import ConfigError, LedgerError, MissingFileError, ModelError
from acqkit.plugins import registry
from acqkit.report.summary import summarize, table_cells
from acqkit.round.loop import run
from acqkit.round.session import Session
from acqkit.store.ledger import APPLICATION_ID, SCHEMA_VERSION, Ledger, RoundLedger
from acqkit_plugins._judge_client import parse_verdict
from acqkit_plugins.judge import JudgeLabeler
from judge_server import JudgeServer, preferred

SENTINEL = "sk-test-SENTINEL-4f1c9e"  # must never reach a file or a log
KEY_ENV = "ACQKIT_JUDGE_TEST_KEY"


@pytest.fixture(scope="module")
def server():
    srv = JudgeServer()
    yield srv
    srv.close()


@pytest.fixture
def judge_env(server, monkeypatch):
    server.reset()
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    return server


def make(server, **options) -> JudgeLabeler:
    options = {"model": "judge-test", "base_url": server.base_url, "api_key_env": KEY_ENV, "backoff": 0.01,
               "timeout": 5.0, **options}
    return JudgeLabeler(**options)


# Four pairs of one prompt; the server's rule makes a, b, b, a (then a tie-break by length) win.
TEXTS = ["a good good answer", "bad", "meh", "good answer", "short", "a good longer one", "x y", "z"]


def frames():
    table = pd.DataFrame({"prompt_id": "p0", "response_id": range(len(TEXTS)), "text": TEXTS})
    pairs = pd.DataFrame({"prompt_id": "p0", "a": [0, 2, 4, 6], "b": [1, 3, 5, 7], "score": 0.0})
    return pairs, table


def context(ledger=None, usd_left=None, seed=0):
    prompts = [Prompt("p0", ({"role": "user", "content": "Review a film."},))]
    book = None
    if ledger is not None:
        book = RoundLedger(ledger, ("judge", "{}"), frames()[1], prompts, round=1)
    return LabelContext(task=None, rng=np.random.default_rng(seed), round=1,
                        extras={"prompts": prompts, "ledger": book, "usd_left": usd_left})


def expected_p() -> list[float]:
    return [float(preferred(TEXTS[a], TEXTS[b]) == "A") for a, b in zip([0, 2, 4, 6], [1, 3, 5, 7])]


@pytest.mark.parametrize("text, verdict", [
    ("A", "A"), ("b", "B"), ("Reasoning here.\n\nB", "B"), ("**A**", "A"), ("[[B]]", "B"), ("Verdict: A", "A"),
    ("Final answer: (B).", "B"), ("Response A\n", "A"), ("A or B", None), ("Both are fine.", None), ("", None),
    (None, None), ("A\nI am not sure", None), ("\n\n\n\n", None), ("AB", None)])
def test_verdicts_are_parsed_from_the_last_line(text, verdict):
    assert parse_verdict(text) == verdict


def test_both_orders_agree_and_every_answer_is_stored_with_its_cost(judge_env, tmp_path):
    judge = make(judge_env, price_in=2.0, price_out=10.0)
    pairs, table = frames()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        labels = judge.label(pairs, table, context(ledger))
        records = {(r.text_a, r.text_b): r for r in ledger.records()}
    assert labels["p"].tolist() == expected_p() and labels["consistency"].tolist() == [1.0] * 4
    assert len(judge_env.requests) == 8  # both orders, each once
    shown = {(r["a"], r["b"]) for r in judge_env.requests}
    assert shown == {(TEXTS[i], TEXTS[j]) for i, j in [(0, 1), (1, 0), (2, 3), (3, 2), (4, 5), (5, 4), (6, 7), (7, 6)]}
    assert {r["authorization"] for r in judge_env.requests} == {f"Bearer {SENTINEL}"}
    assert len(records) == 4  # stored as they arrived, by the judge itself
    for (a, b), row in zip(pairs[["a", "b"]].itertuples(index=False), labels.itertuples()):
        rec = records[(TEXTS[a], TEXTS[b])]
        tin, tout = rec.meta["tokens_in"], rec.meta["tokens_out"]
        assert tin > 100 and tout == 8  # "Comparing the two.\nX": 4 words, twice
        assert rec.usd == pytest.approx((tin * 2.0 + tout * 10.0) / 1e6) == pytest.approx(row.cost_usd)
        assert rec.p == row.p and rec.meta["consistency"] == 1.0 and rec.cost == 1


def test_a_position_biased_judge_gives_ties_or_is_asked_again(judge_env):
    judge_env.biased = True  # always "A": the two orders disagree on every pair
    pairs, table = frames()
    labels = make(judge_env).label(pairs, table, context())
    assert labels["p"].tolist() == [0.5] * 4 and labels["consistency"].tolist() == [0.0] * 4
    assert len(judge_env.requests) == 8
    judge_env.reset()
    judge_env.biased = True
    labels = make(judge_env, on_disagreement="reask").label(pairs, table, context())
    assert labels["p"].tolist() == [0.5] * 4 and len(judge_env.requests) == 16  # asked again in both orders
    judge_env.reset()
    labels = make(judge_env, order="fixed").label(pairs, table, context())
    assert labels["p"].tolist() == expected_p() and labels["consistency"].isna().all()
    assert len(judge_env.requests) == 4


def test_429_and_5xx_are_retried_then_the_pair_is_skipped(judge_env, capfd):
    judge_env.statuses.extend([429, 500, 503])
    pairs, table = frames()
    labels = make(judge_env, concurrency=1).label(pairs, table, context())
    assert labels["p"].tolist() == expected_p() and len(judge_env.requests) == 8 + 3
    judge_env.reset()
    judge_env.statuses.extend([500] * 3)  # the first request fails on every attempt (retries=2)
    labels = make(judge_env, concurrency=1, retries=2).label(pairs, table, context())
    assert np.isnan(labels["p"].iloc[0]) and labels["cost"].tolist() == [0, 1, 1, 1]
    assert labels["p"].iloc[1:].tolist() == expected_p()[1:]
    assert "judge skipped pair (0, 1) of round 1: no answer from the server: HTTP 500 after 3 attempt(s)" \
        in capfd.readouterr().err


def test_answers_without_a_verdict_are_asked_again_then_skipped_and_their_tokens_still_cost(judge_env, capfd):
    judge_env.malformed = 1
    pairs, table = frames()
    labels = make(judge_env, concurrency=1, price_in=1.0).label(pairs, table, context())
    assert labels["p"].tolist() == expected_p() and len(judge_env.requests) == 9
    judge_env.reset()
    judge_env.garbage = True
    labels = make(judge_env, concurrency=1, parse_retries=1, price_in=1.0).label(pairs, table, context())
    assert labels["p"].isna().all() and (labels["cost"] == 0).all() and (labels["cost_usd"] > 0).all()
    assert len(judge_env.requests) == 4 * 2  # the first order, asked twice; the second never asked
    assert "no verdict line (A or B) in 2 answer(s)" in capfd.readouterr().err


def test_a_slow_server_times_out_and_the_pair_is_skipped(judge_env, capfd):
    judge_env.delay = 1.0
    pairs, table = frames()
    labels = make(judge_env, timeout=0.2, retries=1, concurrency=4).label(pairs.iloc[:2], table, context())
    assert labels["p"].isna().all()
    assert "timed out after 2 attempt(s)" in capfd.readouterr().err


def test_concurrency_is_bounded(judge_env):
    judge_env.delay = 0.2
    pairs, table = frames()
    make(judge_env, concurrency=2).label(pairs, table, context())
    assert judge_env.peak == 2  # 4 pairs, 2 at a time (each pair asks its two orders in turn)
    judge_env.reset()
    make(judge_env, concurrency=1).label(pairs, table, context())
    assert judge_env.peak == 1


def test_a_money_budget_stops_asking_between_waves(judge_env, capfd):
    pairs, table = frames()
    one = make(judge_env, price_in=1.0).label(pairs.iloc[:1], table, context())["cost_usd"].iloc[0]
    judge_env.reset()
    # 4 pairs in waves of 2; the money runs out within the first wave: the second is never asked.
    labels = make(judge_env, price_in=1.0, concurrency=2).label(pairs, table, context(usd_left=one * 1.5))
    assert labels["p"].notna().tolist() == [True, True, False, False] and len(judge_env.requests) == 4
    assert labels["cost"].tolist() == [1, 1, 0, 0] and labels["cost_usd"].iloc[2:].tolist() == [0.0, 0.0]
    assert "money budget spent" in capfd.readouterr().err
    judge_env.reset()
    labels = make(judge_env, price_in=1.0, concurrency=2).label(pairs, table, context(usd_left=0.0))
    assert labels["p"].isna().all() and not judge_env.requests


def test_a_template_file_is_used_and_checked(judge_env, tmp_path):
    good = tmp_path / "judge.txt"
    good.write_text("Film question: {prompt}\n<response_a>\n{response_a}\n</response_a>\n<response_b>\n"
                    "{response_b}\n</response_b>\nAnswer A or B on the last line.")
    pairs, table = frames()
    judge = make(judge_env, template=str(good))
    assert judge.label(pairs, table, context())["p"].tolist() == expected_p()
    assert judge.ledger_identity[1]["template"] != "default"
    bad = tmp_path / "bad.txt"
    bad.write_text("Which is better, {response_a} or that?")
    with pytest.raises(ConfigError, match=r"bad.txt lacks the placeholder\(s\) \{prompt\}, \{response_b\}"):
        make(judge_env, template=str(bad))
    with pytest.raises(MissingFileError, match="template file .*nope.txt does not exist"):
        make(judge_env, template=str(tmp_path / "nope.txt"))


def test_bad_setups_are_clear_errors_naming_the_labeler(judge_env, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=f"labeler 'judge': environment variable {KEY_ENV} .* is not set"):
        make(judge_env)
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    with pytest.raises(ConfigError, match="option 'model' is required"):
        make(judge_env, model="")
    pairs, table = frames()
    with pytest.raises(ModelError, match="labeler 'judge': the server at .* answered HTTP 404 for model 'nope': "
                                         "model 'nope' not found"):
        make(judge_env, model="nope").label(pairs, table, context())
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ModelError, match=f"cannot reach the server at http://127.0.0.1:{port}/v1"):
        make(judge_env, base_url=f"http://127.0.0.1:{port}/v1", retries=1).label(pairs, table, context())



def test_preflight_finds_a_dead_server_or_a_refused_key_before_any_model_loads(judge_env, tmp_path, capfd):
    spec = f"judge(base_url={judge_env.base_url}, model=judge-test, api_key_env={KEY_ENV})"
    make(judge_env).preflight()  # up, key accepted, model listed: nothing to say
    assert judge_env.listings == 1 and "does not list" not in capfd.readouterr().err
    make(judge_env, model="other").preflight()  # not listed: a warning only (servers may load on demand)
    assert "does not list model 'other' (it lists judge-test); asking it anyway" in capfd.readouterr().err
    judge_env.required_key = "sk-another-key"
    out = tmp_path / "refused"
    result = CliRunner().invoke(cli, ["compare", "--preset", "smoke", "--labeler", spec, "--seeds", "1",
                                      "--strategies", "random", "--out", str(out), "--quiet"])
    assert result.exit_code == 1 and "refused the API key (HTTP 401): Incorrect API key" in result.output
    assert SENTINEL not in result.output and not out.exists()  # found before anything was written or loaded
    assert not judge_env.requests  # and before any pair was asked
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = spec.replace(judge_env.base_url, f"http://127.0.0.1:{port}/v1")
    result = CliRunner().invoke(cli, ["compare", "--preset", "smoke", "--labeler", dead, "--seeds", "1",
                                      "--strategies", "random", "--out", str(out), "--quiet"])
    assert result.exit_code == 1 and f"cannot reach the server at http://127.0.0.1:{port}/v1" in result.output
    assert not out.exists()

V1_SCHEMA = """CREATE TABLE labels (key TEXT PRIMARY KEY, labeler TEXT NOT NULL, config TEXT NOT NULL,
    prompt TEXT NOT NULL, messages TEXT NOT NULL, text_a TEXT NOT NULL, text_b TEXT NOT NULL,
    p REAL NOT NULL CHECK (p >= 0 AND p <= 1), source TEXT NOT NULL, cost INTEGER NOT NULL, round INTEGER,
    created REAL NOT NULL)"""


def test_a_version_1_ledger_is_migrated_and_keeps_its_labels(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(V1_SCHEMA)
    db.execute("INSERT INTO labels VALUES ('k', 'gold', '{}', 'p', '[]', 'x', 'y', 1.0, 'gold', 1, 1, 5.0)")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Ledger(path) as ledger:
        (old,) = ledger.records()
        assert (old.p, old.cost, old.usd, old.meta) == (1.0, 1, 0.0, {})
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="has schema version 3; this acqkit reads version 2"):
        Ledger(path)


def spec(server, **options) -> str:
    options = {"base_url": server.base_url, "model": "judge-test", "api_key_env": KEY_ENV, "price_in": 1.0,
               "price_out": 2.0, **options}
    return "judge(" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")"


def small(server, **overrides):
    return preset("smoke", strategy="random", labeler=spec(server), rounds=2, budget=8, seed_labels=0,
                  eval_prompts=4, kl_samples=0, max_new_tokens=8, **overrides)


def test_a_run_reports_money_and_consistency_and_never_writes_the_key(judge_env, tmp_path, capfd):
    cfg = small(judge_env)
    reg = registry()
    session = Session.open(cfg, reg)
    results = run(cfg, session, out=tmp_path / "run", registry=reg)
    asked = len(judge_env.requests)
    assert asked == 2 * int(results["labels_spent"].iloc[-1]) > 0
    online = results[results["round"] > 0]
    assert (online["cost_usd_round"] > 0).all() and results["cost_usd_round"].iloc[0] == 0
    assert results["cost_usd_spent"].tolist() == pytest.approx(results["cost_usd_round"].cumsum().tolist())
    assert online["label_consistency"].between(0, 1).all()
    labels = [json.loads(line) for line in (tmp_path / "run" / "labels.jsonl").read_text().splitlines()]
    assert sum(r["cost_usd"] for r in labels) == pytest.approx(results["cost_usd_spent"].iloc[-1])
    with Ledger(tmp_path / "run" / "ledger.sqlite") as ledger:
        assert sum(r.usd for r in ledger.records()) == pytest.approx(results["cost_usd_spent"].iloc[-1])
    # A rerun into the same directory asks the server nothing and reports the same money.
    again = run(cfg, session, out=tmp_path / "run", registry=reg, resume=True)
    assert len(judge_env.requests) == asked
    pd.testing.assert_frame_equal(again, results)
    headers, rows = table_cells(summarize(pd.read_csv(tmp_path / "run" / "results.csv"), baseline=None), None)
    assert "cost\nUSD" in headers and "order\nconsistency" in headers
    report = CliRunner().invoke(cli, ["report", str(tmp_path / "run"), "--markdown"])
    assert report.exit_code == 0 and "cost USD" in report.output, report.output
    logs = capfd.readouterr()
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path
    assert SENTINEL not in logs.out + logs.err + report.output


def test_a_money_budget_ends_the_asking_for_the_rest_of_the_run(judge_env, tmp_path):
    cfg = small(judge_env)
    reg = registry()
    session = Session.open(cfg, reg)
    full = run(cfg, session, registry=reg)
    first_round = float(full["cost_usd_round"].iloc[1])
    judge_env.reset()
    # Enough for round 1 only: round 2 is left with nothing and asks nothing.
    capped = run(small(judge_env, budget_usd=first_round), session, registry=reg)
    assert capped["cost_usd_round"].tolist()[1:] == [pytest.approx(first_round), 0.0]
    assert capped["labels_round"].tolist()[1:] == [full["labels_round"].iloc[1], 0]
    assert len(judge_env.requests) == 2 * int(full["labels_round"].iloc[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_end_to_end_through_transformers_serve(tmp_path, monkeypatch, capfd):
    """Real HTTP through `transformers serve` and the openai client; the tiny model answers garbage."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from acqkit.models.tiny import ensure_tiny

    model_dir = ensure_tiny(tmp_path / "tiny")
    port = free_port()
    exe = Path(sys.executable).with_name("transformers")
    proc = subprocess.Popen([str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-2000:]
                time.sleep(0.2)
        monkeypatch.setenv(KEY_ENV, SENTINEL)
        labeler = (f"judge(base_url=http://127.0.0.1:{port}/v1, model={model_dir}, api_key_env={KEY_ENV}, "
                   "max_tokens=8, parse_retries=0, concurrency=2, price_in=1.0, price_out=1.0, timeout=120)")
        cfg = preset("smoke", strategy="random", labeler=labeler, rounds=1, budget=2, seed_labels=0,
                     eval_prompts=2, kl_samples=0, max_new_tokens=8)
        results = run(cfg, out=tmp_path / "run")
        err = capfd.readouterr().err
        row = results.iloc[-1]
        skipped = err.count("judge skipped pair")
        # Whatever the tiny model says: each pair is a label or a logged skip, and every token was billed.
        assert int(row["labels_round"]) + skipped == 2, err[-2000:]
        assert row["cost_usd_round"] > 0  # usage came back through the server and the client
        if skipped:
            assert "no verdict line" in err
    finally:
        proc.terminate()
        proc.wait(timeout=30)
