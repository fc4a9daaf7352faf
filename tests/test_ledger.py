"""The label ledger: durable, never asks twice (in either order), import/export in TRL's layouts."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from acqkit.cli import cli
from acqkit.round.label import ask_once
from acqkit.store.ledger import Ledger, LedgerError, Record, pair_key
from acqkit.store.ledger_io import export_jsonl, import_jsonl
from labeling_helpers import CountingLabeler, context, pairs, table, view


def test_a_known_pair_is_never_asked_again_in_either_order(tmp_path):
    labeler = CountingLabeler()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        first = ask_once(view(ledger, labeler, "counting"), labeler, "counting", pairs((0, 1), (5, 6)), table(),
                         context())
        assert labeler.asked == [(0, 1), (5, 6)]
        assert first["cost"].tolist() == [1, 1] and first["p"].tolist() == [0.9, 0.1]
        again = ask_once(view(ledger, labeler, "counting", 2), labeler, "counting",
                         pairs((1, 0), (6, 5), (0, 2)), table(), context(2))
        assert labeler.asked[2:] == [(0, 2)]
        assert again["p"].tolist() == pytest.approx([0.1, 0.9, 0.1])  # (b, a) reuses (a, b) flipped
        assert again["cost"].tolist() == [0, 0, 1]
        assert again["source"].tolist() == ["counting"] * 3
        assert len(ledger) == 3


def test_same_texts_in_one_batch_are_asked_once(tmp_path):
    labeler = CountingLabeler()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        # responses 1 and 4 have the same text, so (0, 1) and (4, 0) are one question
        out = ask_once(view(ledger, labeler, "counting"), labeler, "counting", pairs((0, 1), (4, 0)), table(),
                       context())
    assert labeler.asked == [(0, 1)]
    assert out["cost"].tolist() == [1, 0] and out["p"].tolist() == pytest.approx([0.9, 0.1])


def test_labels_are_filed_per_labeler_config(tmp_path):
    labeler = CountingLabeler()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        for spec in ("counting", "counting(strict=true)", "counting"):
            ask_once(view(ledger, labeler, spec), labeler, spec, pairs((0, 1)), table(), context())
    assert labeler.asked == [(0, 1), (0, 1)]


def test_skipped_pairs_are_dropped_and_not_stored(tmp_path):
    class Skipper(CountingLabeler):
        def label(self, pairs, table, context):
            out = super().label(pairs, table, context)
            return out.assign(p=[np.nan] + list(out["p"][1:]), cost=[0] + list(out["cost"][1:]))  # a skip is free

    labeler = Skipper()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        out = ask_once(view(ledger, labeler, "s"), labeler, "s", pairs((0, 1), (5, 6)), table(), context())
        assert out[["a", "b"]].values.tolist() == [[5, 6]] and len(ledger) == 1


def test_labels_a_labeler_puts_itself_are_kept_even_if_it_then_fails(tmp_path):
    class Crashing(CountingLabeler):
        def label(self, pairs, table, context):
            context.extras["ledger"].put(int(pairs["a"][0]), int(pairs["b"][0]), 1.0, "human")
            raise KeyboardInterrupt

    path = tmp_path / "l.sqlite"
    with Ledger(path) as ledger, pytest.raises(KeyboardInterrupt):
        ask_once(view(ledger, Crashing(), "c"), Crashing(), "c", pairs((0, 1), (5, 6)), table(), context())
    labeler = CountingLabeler()
    with Ledger(path) as ledger:
        out = ask_once(view(ledger, labeler, "c"), labeler, "c", pairs((0, 1), (5, 6)), table(), context())
    assert labeler.asked == [(5, 6)] and out["p"].tolist() == [1.0, 0.1]


WRITER = textwrap.dedent("""
    import sys, time
    from acqkit.store.ledger import Ledger, Record, pair_key
    ledger = Ledger(sys.argv[1])
    for i in range(100000):
        key = pair_key("gold", "{}", "prompt", f"a{i}", f"b{i}")
        ledger.put(Record(key, "gold", "{}", "prompt", [], f"a{i}", f"b{i}", 1.0, "gold", 1, 1))
        print(key, flush=True)  # printed only after the commit returned
        if i >= 20:
            time.sleep(0.01)
""")


def test_every_committed_label_survives_sigkill(tmp_path):
    path = tmp_path / "ledger.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    keys = []
    try:
        while len(keys) < 40:
            line = proc.stdout.readline()
            assert line, "the writer died before writing 40 labels"
            keys.append(line.strip())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Ledger(path) as ledger:
        assert all(ledger.get(k) is not None for k in keys)
        assert len(ledger) >= len(keys)


def test_a_corrupted_ledger_is_a_clear_error_naming_the_file(tmp_path):
    bad = tmp_path / "ledger.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match=str(bad)):
        Ledger(bad)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(LedgerError, match="not an acqkit label ledger"):
        Ledger(other)
    result = CliRunner().invoke(cli, ["labels", "export", str(bad), str(tmp_path / "out.jsonl")])
    assert result.exit_code != 0 and str(bad) in result.output


def _record(p, a="good", b="bad", prompt="Review Vertigo."):
    return Record(pair_key("gold", "{}", prompt, a, b), "gold", "{}", prompt,
                  [{"role": "user", "content": prompt}], a, b, p, "gold", 1, 1)


@pytest.mark.parametrize("fmt", ["plain", "conversational"])
def test_export_import_round_trip(tmp_path, fmt):
    with Ledger(tmp_path / "a.sqlite") as ledger:
        for rec in (_record(1.0, "x1", "y1"), _record(0.0, "x2", "y2"), _record(0.8, "x3", "y3"),
                    _record(0.25, "x4", "y4"), _record(0.5, "x5", "y5")):
            ledger.put(rec)
        counts = export_jsonl(ledger, tmp_path / "a.jsonl", fmt)
    assert (counts.written, counts.skipped) == (4, 1)
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    chosen = [r["chosen"] if fmt == "plain" else r["chosen"][0]["content"] for r in rows]
    assert chosen == ["x1", "y2", "x3", "y4"]
    assert [r.get("p_chosen") for r in rows] == [None, None, 0.8, 0.75]
    if fmt == "conversational":
        assert rows[0]["prompt"] == [{"role": "user", "content": "Review Vertigo."}]
        assert rows[0]["rejected"] == [{"role": "assistant", "content": "y1"}]
    else:
        assert rows[0] == {"prompt": "Review Vertigo.", "chosen": "x1", "rejected": "y1"}

    with Ledger(tmp_path / "b.sqlite") as ledger:
        assert import_jsonl(tmp_path / "a.jsonl", ledger, "gold").written == 4
        assert import_jsonl(tmp_path / "a.jsonl", ledger, "gold").skipped == 4  # idempotent
        assert ledger.get(_record(1.0, "y2", "x2").key).p_for("y2") == 1.0  # same key as the original
        export_jsonl(ledger, tmp_path / "b.jsonl", fmt)
    assert (tmp_path / "b.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()


def test_labels_cli_round_trip_and_import_feeds_a_run(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": [{"role": "user", "content": "Review Vertigo."}],
                               "chosen": [{"role": "assistant", "content": "Too slow."}],
                               "rejected": [{"role": "assistant", "content": "Hypnotic."}]}) + "\n"
                   + json.dumps({"prompt": "Review Vertigo.", "chosen": "Hypnotic.", "rejected": "Too slow.",
                                 "p_chosen": 0.7}) + "\n")
    runner = CliRunner()
    imp = runner.invoke(cli, ["labels", "import", str(src), str(tmp_path / "l.sqlite"), "--labeler", "counting"])
    assert imp.exit_code == 0, imp.output
    assert "imported 1 pair(s)" in imp.output and "1 already there" in imp.output
    exp = runner.invoke(cli, ["labels", "export", str(tmp_path / "l.sqlite"), str(tmp_path / "out.jsonl"),
                              "--format", "conversational"])
    assert exp.exit_code == 0 and "exported 1 pair(s)" in exp.output and "skipped 0 tie(s)" in exp.output
    # a run with the same labeler spec reuses the imported label instead of asking
    labeler = CountingLabeler()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        out = ask_once(view(ledger, labeler, "counting"), labeler, "counting", pairs((5, 8)), table(), context())
    assert labeler.asked == [] and out["p"].tolist() == [0.0] and out["cost"].tolist() == [0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "chosen": "y"}\n')
    err = runner.invoke(cli, ["labels", "import", str(bad), str(tmp_path / "l.sqlite"), "--labeler", "gold"])
    assert err.exit_code != 0 and f"{bad}:1" in err.output and "rejected" in err.output


def test_two_processes_sharing_a_ledger_pay_for_each_pair_once(tmp_path):
    """Two comparisons at once on one `ledger = PATH`, with a slow counting oracle (tests/faults)."""
    import pandas as pd

    from kill_helpers import CONFIG, child_env, install_plugin, oracle_calls

    shared = tmp_path / "shared" / "labels.sqlite"
    config = tmp_path / "grid.toml"  # both ask about the same pairs: same config, same seeds
    config.write_text(CONFIG.replace('strategies = ["smallest-margin", "apl-certainty(og=2)"]',
                                     'strategies = ["smallest-margin"]')
                      .replace("[base]\n", f"[base]\nledger = {json.dumps(str(shared))}\n"))
    calls = tmp_path / "calls.jsonl"
    env = {**child_env(install_plugin(tmp_path / "site")), "ACQKIT_FAULTS_CALLS": str(calls),
           "ACQKIT_FAULTS_SLOW": "1"}  # a 1 s oracle: both processes are at the label stage together
    procs = [subprocess.Popen([sys.executable, "-m", "acqkit", "compare", "--config", str(config), "--out",
                               str(tmp_path / name), "--quiet"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for name in ("a", "b")]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    asked = oracle_calls(calls, tmp_path)
    with Ledger(shared) as ledger:
        stored = {("shared/labels.sqlite", r.key) for r in ledger.records()}
    assert asked and set(asked.values()) == {1}, [k for k, n in asked.items() if n > 1]  # never paid twice
    assert set(asked) == stored  # every answer kept
    spent = sum(pd.read_csv(tmp_path / name / "runs" / "smallest-margin" / "seed-0" / "results.csv")
                ["labels_round"].sum() for name in ("a", "b"))
    assert spent == len(stored)  # what the two comparisons charged is what was bought
    assert any("waiting for PID" in out for out in outputs)  # the race was real: one waited for the other
