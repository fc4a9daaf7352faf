"""The kill-resume harness: launch comparisons in child processes, kill them, inspect what they left.

The fault plugin (tests/faults/acqkit_faults.py) reaches the children the way
any third-party acqkit plugin does: a dist-info with an ``acqkit`` entry point
on PYTHONPATH. Children are forked from a zygote that imported acqkit once
(tests/faults/zygote.py), so a dozen kills stay affordable on two cores.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from acqkit import hookimpl
from acqkit.config import load_compare, read_toml
from acqkit.store.ledger import Ledger
from acqkit.round.loop import RESULT_COLUMNS
from acqkit.store.rundir import checkpoint_round, load_checkpoint

FAULTS = Path(__file__).parent / "faults"

# 2 strategies x 1 seed x 2 rounds on the tiny model; every label goes through the counting oracle.
CONFIG = """\
strategies = ["smallest-margin", "apl-certainty(og=2)"]
seeds = [0]

[base]
model = "tiny"
labeler = "counting-gold"
seed_labeler = "counting-gold"
rounds = 2
budget = 8
seed_labels = 4
n_responses = 4
max_new_tokens = 8
eval_prompts = 4
lr = 0.003
"""
# The judge labeler behind tests/judge_server.py; one request at a time, so a kill right after an answer
# is stored leaves nothing in flight, and the server's log shows every question asked. The same grid
# otherwise, with one strategy and the gold warm start.
JUDGE_CONFIG = (CONFIG.replace('["smallest-margin", "apl-certainty(og=2)"]', '["smallest-margin"]')
                .replace('labeler = "counting-gold"\nseed_labeler = "counting-gold"',
                         'labeler = "judge(base_url={base_url}, model=judge-test, api_key_env={key_env}, '
                         'concurrency=1, price_in=1.5, price_out=3)"\nseed_labeler = "gold"'))
# Files that differ between two runs by design: wall times, PNG bytes, SQLite's side files.
UNCOMPARED = ("timings.jsonl", ".png", "-wal", "-shm", "ledger.sqlite", "results.parquet")


def install_plugin(root: Path) -> str:
    """A dist-info declaring the ``acqkit`` entry point; returns the PYTHONPATH that finds it."""
    info = root / "acqkit_faults-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acqkit-faults\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[acqkit]\nfaults = acqkit_faults\n")
    return os.pathsep.join([str(root), str(FAULTS)])


def child_env(pythonpath: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACQKIT_KILL")}
    env.update(PYTHONPATH=pythonpath, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


class Zygote:
    """One process that imported acqkit; each job is a child forked from it."""

    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, str(FAULTS / "zygote.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"the zygote died (exit {self.proc.poll()})"
        return json.loads(line)

    def start(self, args: list[str], env: dict, log: Path) -> int:
        self.proc.stdin.write(json.dumps({"args": args, "env": env, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        return self._read()["pid"]

    def wait(self) -> int:
        """The child's exit code; -9 when SIGKILL ended it."""
        return self._read()["code"]

    def run(self, args: list[str], env: dict, log: Path) -> int:
        self.start(args, env, log)
        return self.wait()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def compare_args(out: Path, config: Path) -> list[str]:
    """Resume when the comparison got as far as saving its config, else start it."""
    if (out / "config.toml").exists():
        return ["compare", "--resume", str(out), "--quiet"]
    return ["compare", "--config", str(config), "--out", str(out), "--quiet"]


def job_env(calls: Path, kill_at: str | None) -> dict:
    return {"ACQKIT_FAULTS_CALLS": str(calls), "ACQKIT_KILL_AT": kill_at or "", "ACQKIT_NO_PICKLE": "1"}


def tail(log: Path, n: int = 1500) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else "(no log)"


def assert_nothing_half_written(out: Path) -> None:
    """What any kill may leave: every file a resume reads is whole, or absent."""
    if (out / "config.toml").exists():
        load_compare(out / "config.toml")
    for path in out.rglob("config.toml"):
        read_toml(path)
    for path in out.rglob("results.csv"):
        assert list(pd.read_csv(path).columns) == RESULT_COLUMNS, path
    for path in out.rglob("checkpoint"):
        assert checkpoint_round(path) is not None, f"{path} has no round marker"
        load_checkpoint(path.parent)
    for path in out.rglob("ledger.sqlite"):
        with Ledger(path):
            pass
    for path in out.rglob("*.jsonl"):
        whole = path.read_bytes()
        for line in whole[: whole.rfind(b"\n") + 1].splitlines():
            json.loads(line)  # only a last line without its newline may be torn


def compared_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and not any(p.name.endswith(u) for u in UNCOMPARED)}


def ledger_rows(root: Path) -> set[tuple]:
    """Every label in every ledger under ``root``, by ledger location (``created`` left out)."""
    rows = set()
    for path in root.rglob("ledger.sqlite"):
        with Ledger(path) as ledger:
            rows |= {(str(path.relative_to(root)), r.key, r.text_a, r.text_b, r.p, r.source, r.cost, r.round)
                     for r in ledger.records()}
    return rows


def oracle_calls(calls: Path, root: Path) -> Counter:
    """How often the oracle was asked about each (ledger, pair key)."""
    if not calls.exists():
        return Counter()
    out = Counter()
    for line in calls.read_text().splitlines():
        ledger, key = json.loads(line)
        out[(str(Path(ledger).relative_to(root)), key)] += 1
    return out


def assert_same_as_reference(out: Path, calls: Path, ref: Path, ref_calls: Path) -> Counter:
    """Same files, byte for byte; same ledger labels; returns how often each pair was asked."""
    files, ref_files = compared_files(out), compared_files(ref)
    assert files == ref_files, f"left over: {sorted(files - ref_files)}, missing: {sorted(ref_files - files)}"
    for name in sorted(compared_files(ref)):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), pd.read_parquet(ref / "results.parquet"))
    assert ledger_rows(out) == ledger_rows(ref)  # no label lost, none extra
    asked, ref_asked = oracle_calls(calls, out), oracle_calls(ref_calls, ref)
    assert set(asked) == {(r[0], r[1]) for r in ledger_rows(out)}  # every answer was kept
    assert set(ref_asked) == set(asked) and set(ref_asked.values()) == {1}
    return asked


class StopAfterRound:
    """Simulates a crash right after a round is persisted."""

    def __init__(self, round):
        self.round = round

    @hookimpl
    def acqkit_round_end(self, round):
        if round == self.round:
            raise KeyboardInterrupt
