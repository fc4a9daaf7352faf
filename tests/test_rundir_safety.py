"""A run directory is written by one process, never over earlier results by accident, and a full or
read-only disk is a clear error that keeps what was written (acqkit.store.claim)."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from acqkit.cli import cli
from kill_helpers import assert_nothing_half_written, compared_files

SMALL = ["--preset", "smoke", "--strategies", "random", "--seeds", "1", "--rounds", "1", "--budget", "4",
         "--seed-labels", "2", "--eval-prompts", "4", "--max-new-tokens", "8", "--quiet"]
RUN = ["run", "--preset", "smoke", "--rounds", "1", "--budget", "4", "--seed-labels", "2", "--eval-prompts", "4",
       "--max-new-tokens", "8", "--quiet"]
HOLD = """import sys, time
from acqkit.store.claim import claim
with claim(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [x for x in result.output.splitlines() if x.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished comparison (1 strategy, 1 seed, 1 round, tiny model)."""
    out = tmp_path_factory.mktemp("done") / "cmp"
    result = invoke("compare", *SMALL, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def previous(finished, tmp_path):
    out = tmp_path / "cmp"
    shutil.copytree(finished, out)
    return out


def test_a_directory_holding_a_comparison_is_refused_and_left_as_it_was(previous, monkeypatch):
    before = snapshot(previous)
    from acqkit.round.session import Session

    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Session, "open", classmethod(no_model))  # refused before any model loads
    line = one_line_error(invoke("compare", *SMALL, "--out", previous))
    assert line == (f"Error: {previous} already holds a comparison (strategies random; seeds 0; 1 of 1 rounds "
                    f"finished); continue it with --resume {previous}, or start over with --overwrite (moves it "
                    f"to cmp.old-TIMESTAMP)")
    line = one_line_error(invoke(*RUN, "--out", previous))  # a single run into it: the same
    assert "already holds a comparison" in line
    assert snapshot(previous) == before


def test_a_directory_holding_a_run_says_what_it_holds_and_resume_continues_it(tmp_path):
    out = tmp_path / "r"
    assert invoke(*RUN, "--out", out).exit_code == 0
    before = snapshot(out)
    line = one_line_error(invoke(*RUN, "--out", out))
    assert f"{out} already holds a run (strategy random, seed 0; 1 of 1 rounds finished)" in line
    assert f"--resume {out}" in line and "--overwrite" in line
    again = invoke("run", "--resume", out, "--quiet")  # finished: read back, nothing recomputed
    assert again.exit_code == 0, again.output
    assert snapshot(out) == before


def test_overwrite_moves_the_old_directory_aside_and_says_so(previous):
    before = snapshot(previous)
    result = invoke("compare", *SMALL, "--out", previous, "--overwrite")
    assert result.exit_code == 0, result.output
    aside = [p for p in previous.parent.iterdir() if p.name.startswith("cmp.old-")]
    assert len(aside) == 1 and snapshot(aside[0]) == before  # every old file kept, byte for byte
    assert f"--overwrite: moved the previous contents of {previous} to {aside[0]}" in result.stderr
    assert (previous / "results.csv").exists() and not (previous / ".acqkit.lock").exists()


def test_an_empty_directory_or_one_without_acqkit_files_is_used(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / ".acqkit.lock").write_text("99999\n")  # left by a killed process: not a lock
    result = invoke("compare", *SMALL, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "my notes" and (out / "results.csv").exists()


def test_bad_input_leaves_no_directory_behind(tmp_path):
    result = invoke("compare", *SMALL, "--out", tmp_path / "x", "--task", "file:" + str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 1 and not (tmp_path / "x").exists()


@pytest.fixture
def holder(tmp_path):
    """Another process holding a run directory (through the same claim a comparison takes)."""
    out = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout.readline().strip() == "held"
    yield out, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_process_fails_at_once_naming_the_holder(holder, previous, monkeypatch):
    out, proc = holder
    from acqkit.round.session import Session

    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Session, "open", classmethod(no_model))
    line = one_line_error(invoke("compare", *SMALL, "--out", out))
    assert line == (f"Error: {out}: in use by another acqkit process (PID {proc.pid}); wait for it to finish or "
                    "stop it (a stopped or killed process frees the directory at once)")
    # --resume too: a comparison whose directory another process holds
    shutil.copytree(previous, out, dirs_exist_ok=True)
    line = one_line_error(invoke("compare", "--resume", out, "--quiet"))
    assert f"(PID {proc.pid})" in line
    assert f"(PID {proc.pid})" in one_line_error(invoke(*RUN, "--out", out, "--overwrite"))
    assert proc.poll() is None


def test_a_killed_holder_leaves_no_stale_lock(holder):
    out, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / ".acqkit.lock").read_text().strip() == str(proc.pid)  # its file stays; its lock does not
    result = invoke("compare", *SMALL, "--out", out)
    assert result.exit_code == 0, result.output
    assert not (out / ".acqkit.lock").exists()


def test_out_naming_a_file_or_a_path_under_a_file(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    line = one_line_error(invoke("compare", *SMALL, "--out", f))
    assert line == (f"Error: {f}: is a file, not a directory; give --out a directory (new or empty) or --resume "
                    "a run directory")
    line = one_line_error(invoke("compare", *SMALL, "--out", f / "sub"))
    assert line == f"Error: {f / 'sub'}: cannot create the run directory: {f} is a file"
    assert f.read_text() == "keep me"


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A tmpfs mounted at ``path`` (root only); yields False where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


def test_an_unwritable_directory_is_a_clear_error(tmp_path):
    # Root ignores permission bits, so "unwritable" is a read-only tmpfs mount.
    ro = tmp_path / "ro"
    with tmpfs(ro, "size=64k,ro") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (not root?)")
        line = one_line_error(invoke("compare", *SMALL, "--out", ro))
        assert line == (f"Error: {ro}: cannot write to the run directory (Read-only file system); give --out a "
                        "writable directory")
        line = one_line_error(invoke("compare", *SMALL, "--out", ro / "new"))
        assert line == f"Error: {ro / 'new'}: cannot create the run directory (Read-only file system)"


def enospc_after(monkeypatch, out: Path, n: int) -> None:
    """Where no tmpfs can be mounted: every fsync of a file under ``out`` after the n-th fails with ENOSPC."""
    real, count = os.fsync, [0]

    def fsync(fd):
        if str(Path(os.readlink(f"/proc/self/fd/{fd}"))).startswith(str(out)):
            count[0] += 1
            if count[0] > n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_is_a_clear_error_keeps_every_file_whole_and_resume_finishes(finished, tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    out = disk / "cmp"
    # 400 KiB holds the config, ledgers and logs of round 1 but not its 800 KiB checkpoint.
    with tmpfs(disk, "size=400k") as mounted:
        if not mounted:
            enospc_after(monkeypatch, out, 12)
        result = invoke("compare", *SMALL, "--out", out)
        line = one_line_error(result)
        assert line.startswith(f"Error: {out}: cannot write ") and "(No space left on device)" in line, line
        assert line.endswith(f"the files written before it are intact: free space or fix the mount, then "
                             f"continue with --resume {out}")
        assert_nothing_half_written(out)  # every results file, config, ledger and log line is whole
        assert not list(out.rglob("*.tmp")) and not (out / ".acqkit.lock").exists()
        assert len(pd.read_csv(out / "runs" / "random" / "seed-0" / "results.csv")) >= 1  # round 0 kept
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        else:
            monkeypatch.undo()
        again = invoke("compare", "--resume", out, "--quiet")
        assert again.exit_code == 0, again.output
        assert compared_files(out) == compared_files(finished)
        for name in compared_files(finished):  # the same comparison as one that never ran out of space
            assert (out / name).read_bytes() == (finished / name).read_bytes(), name
