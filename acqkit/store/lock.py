"""Exclusive inter-process locks on a file: one writer per run directory, one asker per shared ledger.

``flock`` locks belong to an open file, so the OS drops them when the process
dies (kill -9 included): a lock file left behind is never a stale lock, the
next process simply takes it. The holder writes its PID into the file so a
process that finds it taken can say who holds it.
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class Busy(Exception):
    """The lock is held by another process; ``pid`` is the holder's (None if it did not say)."""

    def __init__(self, path: Path, pid: int | None):
        super().__init__(f"{path} is held by PID {pid}")
        self.path, self.pid = path, pid


class FileLock:
    """An exclusive ``flock`` on ``path``; ``unlink=True`` removes the file on release.

    Removing a lock file is safe only if a taker checks, after locking, that the
    path still names the file it locked (another holder may have removed it
    meanwhile); :meth:`acquire` does, and starts over if not.
    """

    def __init__(self, path: str | Path, unlink: bool = False):
        self.path = Path(path)
        self.unlink = unlink
        self._fd: int | None = None

    def acquire(self, wait: bool = False, on_wait=None) -> "FileLock":
        """Take the lock, or raise :class:`Busy` (``wait=False``); ``on_wait(pid)`` is called before waiting."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    if not wait:
                        raise Busy(self.path, holder(fd)) from None
                    if on_wait:
                        on_wait(holder(fd))
                    fcntl.flock(fd, fcntl.LOCK_EX)
                if _same_file(fd, self.path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the holder before us removed the file: lock the one the path names now
        self._fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self.unlink:
                try:
                    self.path.unlink()  # while still locked: a waiter on this file sees it gone and retries
                except FileNotFoundError:
                    pass
        finally:
            os.close(fd)  # closing drops the lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(fd: int) -> int | None:
    """The PID a lock file's holder wrote into it (it may not have written it yet)."""
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
