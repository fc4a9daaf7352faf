"""SIGKILL a comparison at every stage, resume it, and get the uninterrupted comparison back.

Each chain starts a comparison (2 strategies, 2 rounds, tiny model) in a child
process, kills it with SIGKILL at a chosen event, checks that nothing it left
is half written, resumes it with ``acqkit compare --resume`` (killing that too,
at the next event), and finally lets it finish. The finished directory must
equal an uninterrupted run's byte for byte, keep every ledger label, and the
counting oracle (a plugin installed through the ``acqkit`` entry-point group)
must have been asked exactly once per distinct pair.
"""
from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from kill_helpers import (CONFIG, JUDGE_CONFIG, Zygote, assert_nothing_half_written, assert_same_as_reference,
                          child_env, compare_args, compared_files, install_plugin, job_env, ledger_rows, oracle_calls,
                          tail)

pytestmark = pytest.mark.integration  # child processes killed and resumed


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    config = root / "compare.toml"
    config.write_text(CONFIG)
    zygote = Zygote(child_env(install_plugin(root / "site")))
    yield zygote, config, root
    zygote.close()


@pytest.fixture(scope="module")
def reference(harness):
    """The uninterrupted comparison, and how long it took (to place random kills)."""
    zygote, config, root = harness
    out, calls, log = root / "reference", root / "reference-calls.jsonl", root / "reference.log"
    t0 = time.monotonic()
    assert zygote.run(compare_args(out, config), job_env(calls, None), log) == 0, tail(log)
    return out, calls, time.monotonic() - t0


def landed(kill: str, out: Path) -> bool:
    """Did the kill leave the state it was aimed at? (proves the fault hit the window it names)"""
    stage = kill.rsplit(":", 1)[0]
    if stage == "append":
        return any(p.read_bytes() and not p.read_bytes().endswith(b"\n") for p in out.rglob("*.jsonl"))
    if stage.startswith("replace:"):
        return any(out.rglob(stage.split(":", 1)[1] + ".tmp"))
    if stage == "save":
        return any(not (d / "ACQKIT_ROUND").exists() for d in out.rglob("checkpoint.tmp"))
    if stage == "swap":
        return any(not (d.parent / "checkpoint").exists() for d in out.rglob("checkpoint.old"))
    return True  # generate, score, label, stored, train, plots: the exit code says it


def run_chain(harness, work: Path, kills: list[str]):
    """Kill at each point in turn (each in a new process, resuming the last), then finish."""
    zygote, config, _ = harness
    out, calls = work / "cmp", work / "calls.jsonl"
    swapped = {}  # complete new checkpoints a swap kill left in checkpoint.tmp: path -> inode of its weights
    for i, kill in enumerate(kills + [None]):
        log = work / f"{i}-{kill or 'final'}.log".replace(":", "_")
        code = zygote.run(compare_args(out, config), job_env(calls, kill), log)
        if kill is None:
            assert code == 0, tail(log)
            break
        assert code == -signal.SIGKILL, f"kill point {kill} was never reached (exit {code}):\n{tail(log)}"
        assert landed(kill, out), f"{kill}: the kill did not leave the state it aims at"
        assert_nothing_half_written(out)
        swapped.update({d.parent / "checkpoint": (d / "model.safetensors").stat().st_ino
                        for d in out.rglob("checkpoint.tmp") if (d / "ACQKIT_ROUND").exists()})
    return out, calls, swapped


def test_kills_in_every_stage_of_a_round_lose_nothing(harness, reference, tmp_path):
    # A fresh start killed while sampling round 2 of the first run; then each resume is killed at the next
    # stage: scoring, the oracle call itself, right after the oracle's answers are committed, a training step.
    kills = ["generate:8", "score:6", "label:1", "stored:2", "train:3"]
    out, calls, _ = run_chain(harness, tmp_path, kills)
    asked = assert_same_as_reference(out, calls, *reference[:2])
    assert set(asked.values()) == {1}  # the oracle was asked once per distinct pair, across every kill


def test_kills_while_writing_files_lose_nothing(harness, reference, tmp_path):
    # A torn log line, a checkpoint without its marker, a kill between the two renames of a checkpoint
    # swap, results and config temp files never renamed, and a kill while the report is drawn.
    kills = ["append:2", "save:1", "swap:1", "replace:results.csv:2", "replace:config.toml:1", "plots:1"]
    out, calls, swapped = run_chain(harness, tmp_path, kills)
    asked = assert_same_as_reference(out, calls, *reference[:2])
    assert set(asked.values()) == {1}  # the oracle was asked once per distinct pair, across every kill
    # The checkpoint a swap kill left complete was put in place, not recomputed and written again.
    assert swapped and all((d / "model.safetensors").stat().st_ino == ino for d, ino in swapped.items())


def test_kills_at_random_times_lose_nothing(harness, reference, tmp_path):
    zygote, config, _ = harness
    seed = int(os.environ.get("ACQKIT_KILL_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    out, calls = tmp_path / "cmp", tmp_path / "calls.jsonl"
    codes = []
    for i in range(3):
        log = tmp_path / f"{i}.log"
        pid = zygote.start(compare_args(out, config), job_env(calls, None), log)
        # The reference ran first in the zygote, with its one-time costs: a later run can take under 60% of
        # its time (seed 785004 drew 0.58 and the run had finished), so kills land in the first 40%.
        time.sleep(rng.uniform(0.05, 0.4) * reference[2])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it already finished (a resume can be quick)
        codes.append(zygote.wait())
        assert codes[-1] in (0, -signal.SIGKILL), f"seed {seed}: exit {codes[-1]}\n{tail(log)}"
        assert_nothing_half_written(out)
    assert codes[0] == -signal.SIGKILL, f"seed {seed}: the first kill came after the run finished"
    log = tmp_path / "final.log"
    assert zygote.run(compare_args(out, config), job_env(calls, None), log) == 0, tail(log)
    asked = assert_same_as_reference(out, calls, *reference[:2])
    assert set(asked.values()) == {1}


def test_a_batch_answered_but_not_yet_stored_is_asked_again_with_the_same_answers(harness, reference, tmp_path):
    """The one window no batch labeler can close: answers in memory, not on disk. It is one batch, and
    because a batch is stored all-or-nothing and asked again with the same seed, the results still match."""
    zygote, config, _ = harness
    out, calls = tmp_path / "cmp", tmp_path / "calls.jsonl"
    log = tmp_path / "killed.log"
    assert zygote.run(compare_args(out, config), job_env(calls, "answered:2"), log) == -signal.SIGKILL, tail(log)
    stored = {(r[0], r[1]) for r in ledger_rows(out)}
    unstored = set(oracle_calls(calls, out)) - stored
    assert stored and unstored  # the first batch is on disk, the second was answered and lost
    log = tmp_path / "final.log"
    assert zygote.run(compare_args(out, config), job_env(calls, None), log) == 0, tail(log)
    asked = assert_same_as_reference(out, calls, *reference[:2])
    assert {k for k, n in asked.items() if n > 1} == unstored and max(asked.values()) == 2


def test_a_judge_killed_between_answers_re_asks_nothing_already_answered(harness, tmp_path):
    """The judge stores each answer as it arrives: kills right after a stored answer (mid-round), then
    --resume, ask the judge server exactly the questions an uninterrupted comparison asks, once each."""
    from collections import Counter

    import pandas as pd
    from judge_server import JudgeServer

    zygote = harness[0]
    key = "sk-kill-SENTINEL-77aa"
    server = JudgeServer()
    try:
        config = tmp_path / "judge.toml"
        config.write_text(JUDGE_CONFIG.format(base_url=server.base_url, key_env="ACQKIT_JUDGE_KILL_KEY"))
        env = lambda calls, kill: {**job_env(calls, kill), "ACQKIT_JUDGE_KILL_KEY": key}  # noqa: E731
        ref, out = tmp_path / "ref", tmp_path / "cmp"
        log = tmp_path / "ref.log"
        assert zygote.run(compare_args(ref, config), env(tmp_path / "ref-calls.jsonl", None), log) == 0, tail(log)
        asked_ref = Counter((r["a"], r["b"]) for r in server.requests)
        server.reset()
        # Round 1 asks 4 pairs: killed after its 3rd stored answer; the resume finishes round 1 (1 answer)
        # and is killed after the 2nd answer of round 2; the last resume finishes.
        for i, kill in enumerate(["put:3", "put:3", None]):
            log = tmp_path / f"{i}.log"
            code = zygote.run(compare_args(out, config), env(tmp_path / "calls.jsonl", kill), log)
            assert code == (0 if kill is None else -signal.SIGKILL), tail(log)
            assert_nothing_half_written(out)
        asked = Counter((r["a"], r["b"]) for r in server.requests)
    finally:
        server.close()
    assert asked == asked_ref and sum(asked.values()) == 2 * 8  # both orders of 8 pairs, never twice
    assert compared_files(out) == compared_files(ref)
    for name in sorted(compared_files(ref)):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert ledger_rows(out) == ledger_rows(ref)
    results = pd.read_csv(out / "results.csv")
    assert results["cost_usd_spent"].iloc[-1] > 0 and results["cost_usd_round"].iloc[0] == 0
    for path in list(out.rglob("*")) + list(tmp_path.glob("*.log")):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
