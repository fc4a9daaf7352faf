"""Who may write a run directory: one process at a time, and never over earlier results by accident.

``claim(out)`` is held for the life of a comparison (or a single run). It
refuses a path that is a file or cannot be written, refuses a directory that
already holds acqkit results unless asked to ``resume`` it or to ``overwrite``
it (which moves the old one aside, never deletes it), and takes an exclusive
OS lock (``out/.acqkit.lock``) before any model loads, so a second process on
the same directory fails at once with the holder's PID. A disk that fills up
or turns read-only mid-run becomes a one-line :class:`RunDirError`; the atomic
writers of :mod:`acqkit.store.rundir` leave the files written before intact.
Under a launcher only the main process claims; the others learn its outcome.
"""
from __future__ import annotations

import contextlib
import errno
import sys
import time
from pathlib import Path

from acqkit.distributed import from_main, is_main
from acqkit.errors import RunDirError
from acqkit.store.lock import Busy, FileLock

LOCK_FILE = ".acqkit.lock"
# Names acqkit writes into a run directory; a directory with none of them is free to use.
ACQKIT_NAMES = ("config.toml", "results.csv", "results.parquet", "ledger.sqlite", "runs", "checkpoint",
                "labels.jsonl", "examples.jsonl", "timings.jsonl")
FULL_OR_READ_ONLY = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # a write failed, wherever it was
REFUSED = {errno.EACCES, errno.EPERM, errno.EIO}  # a write failed if the file is in the run directory


@contextlib.contextmanager
def claim(out: str | Path, resume: bool = False, overwrite: bool = False):
    """Own ``out`` for the ``with`` block (see the module docstring); ``resume``: continue what it holds."""
    out = Path(out)
    if resume and overwrite:
        raise RunDirError(f"{out}: --resume continues the run directory and --overwrite moves it aside; "
                          "give one of them")
    held: list[Owner] = []
    try:
        from_main(lambda: held.append(_take(out, resume, overwrite)))
    except RuntimeError as exc:  # another process's claim failed: say it the same way
        if is_main():
            raise
        raise RunDirError(f"{out}: {exc}") from exc
    try:
        yield out
    except OSError as exc:
        if not _write_error(exc, out):
            raise
        raise RunDirError(f"{out}: cannot write {exc.filename or 'the run directory'} ({exc.strerror}); the "
                          f"files written before it are intact: free space or fix the mount, then continue "
                          f"with --resume {out}") from exc
    finally:
        for owner in held:
            owner.release()


def _write_error(exc: OSError, out: Path) -> bool:
    if exc.errno in FULL_OR_READ_ONLY:
        return True
    inside = exc.filename is not None and Path(exc.filename).resolve().is_relative_to(out.resolve())
    return exc.errno in REFUSED and inside


class Owner:
    """The lock on a run directory, and whether this claim created the directory (then it goes if left empty)."""

    def __init__(self, out: Path, lock: FileLock, created: bool):
        self.out, self.lock, self.created = out, lock, created

    def release(self) -> None:
        self.lock.release()
        if self.created:
            with contextlib.suppress(OSError):
                self.out.rmdir()  # only if empty: a run that failed before writing leaves nothing behind


def _take(out: Path, resume: bool, overwrite: bool) -> Owner:
    created = _make(out)
    lock = _lock(out)
    try:
        found = acqkit_files(out)
        if found and not resume:
            if not overwrite:
                raise RunDirError(f"{out} already holds {describe(out, found)}; continue it with "
                                  f"--resume {out}, or start over with --overwrite (moves it to "
                                  f"{out.name}.old-TIMESTAMP)")
            aside = _move_aside(out)
            lock.path = aside / LOCK_FILE  # the old lock moved with its directory
            try:
                _make(out)
                new = _lock(out)
            finally:
                lock.release()
            lock = new
            print(f"--overwrite: moved the previous contents of {out} to {aside}", file=sys.stderr)
    except BaseException:
        Owner(out, lock, created).release()
        raise
    return Owner(out, lock, created)


def _make(out: Path) -> bool:
    """Create ``out`` if needed; True if this call created it."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: is a file, not a directory; give --out a directory (new or empty) or "
                          "--resume a run directory")
    if out.is_dir():
        return False
    try:
        out.mkdir(parents=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), out)
        raise RunDirError(f"{out}: cannot create the run directory: {blocker} is a file") from exc
    except OSError as exc:
        raise RunDirError(f"{out}: cannot create the run directory ({exc.strerror})") from exc
    return True


def _lock(out: Path) -> FileLock:
    lock = FileLock(out / LOCK_FILE, unlink=True)
    try:
        return lock.acquire()
    except Busy as busy:
        raise RunDirError(f"{out}: in use by another acqkit process (PID {busy.pid}); wait for it to finish or "
                          "stop it (a stopped or killed process frees the directory at once)") from None
    except OSError as exc:
        raise RunDirError(f"{out}: cannot write to the run directory ({exc.strerror}); give --out a "
                          "writable directory") from exc


def _move_aside(out: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = out.with_name(f"{out.name}.old-{stamp}")
    n = 1
    while aside.exists():
        aside, n = out.with_name(f"{out.name}.old-{stamp}-{n}"), n + 1
    try:
        out.rename(aside)
    except OSError as exc:
        raise RunDirError(f"{out}: --overwrite cannot move it aside to {aside} ({exc.strerror}); move or "
                          "delete it yourself") from exc
    return aside


def acqkit_files(out: Path) -> list[str]:
    """The acqkit names present in ``out`` (empty for a new, empty or foreign directory)."""
    return [name for name in ACQKIT_NAMES if (out / name).exists()]


def describe(out: Path, found: list[str]) -> str:
    """What a run directory holds, in words: its strategies, seeds and rounds finished."""
    from acqkit.config import read_toml

    try:
        data = read_toml(out / "config.toml")
    except (OSError, ValueError):
        return f"acqkit files ({', '.join(found)}) but no readable config.toml"
    if "base" in data or "strategies" in data:
        base = data.get("base", data)
        strategies, seeds = list(data.get("strategies", [])), data.get("seeds", [])
        seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
        rounds = _rounds(base)
        done = sum(_rounds_done(p) for p in out.glob("runs/*/*/results.csv"))
        return (f"a comparison (strategies {', '.join(map(str, strategies))}; seeds "
                f"{', '.join(map(str, seeds))}; {done} of {len(strategies) * len(seeds) * rounds} rounds finished)")
    return (f"a run (strategy {data.get('strategy', 'random')}, seed {data.get('seed', 0)}; "
            f"{_rounds_done(out / 'results.csv')} of {_rounds(data)} rounds finished)")


def _rounds(cfg: dict) -> int:
    from acqkit.config import RunConfig

    try:
        return int(cfg.get("rounds", RunConfig.rounds))
    except (TypeError, ValueError):
        return 0


def _rounds_done(results: Path) -> int:
    """Online rounds (1..) with a row in a run's results.csv; 0 if it is missing or unreadable."""
    import pandas as pd

    try:
        return int((pd.read_csv(results, usecols=["round"])["round"] >= 1).sum())
    except (OSError, ValueError, pd.errors.ParserError):
        return 0
