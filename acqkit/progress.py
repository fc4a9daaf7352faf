"""Progress reporting for long stages: rich bars on a terminal, silence elsewhere.

Stages call :func:`track`; the CLI installs a rich reporter with :func:`use`.
A context variable (not a global object) keeps library use quiet by default.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_progress: contextvars.ContextVar = contextvars.ContextVar("acqkit_progress", default=None)


@contextlib.contextmanager
def use(progress) -> Iterator[None]:
    """Report stages to a started ``rich.progress.Progress`` (or None for silence)."""
    token = _progress.set(progress)
    try:
        yield
    finally:
        _progress.reset(token)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    progress = _progress.get()
    if progress is None:
        yield from items
        return
    task = progress.add_task(description, total=total)
    try:
        for item in items:
            yield item
            progress.advance(task)
    finally:
        progress.remove_task(task)
