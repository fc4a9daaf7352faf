"""Several processes (``accelerate launch``, torchrun): they share a round's work, one of them pays and writes.

Sampling, scoring and evaluation are cut into work units that do not depend on
the number of processes (a generation chunk, a scoring batch); each process
computes every ``world``-th unit and all of them receive every result
(:func:`spread`), so a table is the same, bit for bit, whatever the process
count. Labels are money, so only the main process asks a labeler (through the
ledger) and sends the answers to the others (:func:`from_main`); only the main
process writes the run directory. In a single process every function here is
a plain call.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Callable, Sequence, TypeVar

from acqkit.errors import AcqkitError
from acqkit.progress import track, use

T, R = TypeVar("T"), TypeVar("R")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def state():
    """accelerate's process state: joins the process group under a launcher, picks the device."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def device():
    """Where models live: ``cuda:<local rank>`` under a GPU launcher, else the CPU."""
    import torch

    return state().device if torch.cuda.is_available() else torch.device("cpu")


def _boxed(fn, *args):
    """``(("ok", value), None)``, or the error as the other processes will say it, and the error itself."""
    try:
        return ("ok", fn(*args)), None
    except Exception as exc:  # the others must not wait forever for a result that never comes
        if isinstance(exc, AcqkitError):
            return ("user-error", str(exc)), exc
        return ("error", f"{type(exc).__name__}: {exc}"), exc


def _unbox(box, where: str):
    """The value of a box another process filled, or its error raised here."""
    kind, value = box
    if kind == "user-error":
        raise AcqkitError(f"(from {where}) {value}")
    if kind == "error":
        raise RuntimeError(f"{where} failed: {value}")
    return value


def from_main(fn):
    """``fn()`` on the main process only; every process gets its result (or its error)."""
    if world_size() == 1:
        return fn()
    import torch.distributed as dist

    state()
    box, error = [None], None
    if is_main():
        box[0], error = _boxed(fn)
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    return _unbox(box[0], "the main process")


def chunks(n: int, size: int) -> list[range]:
    """``range(n)`` cut into consecutive work units of ``size`` (the last may be shorter)."""
    size = max(1, size)
    return [range(s, min(s + size, n)) for s in range(0, n, size)]


def spread(units: Sequence[T], fn: Callable[[T], R], label: str | None = None) -> list[R]:
    """``[fn(u) for u in units]``, computed by the processes together.

    Process ``r`` computes units ``r, r + world, ...`` and every process gets
    every result, in the order of ``units``. Each unit is computed exactly as
    one process would compute it, so the results do not depend on the process
    count as long as the units do not. Every process must call this with the
    same units (it is a collective); ``label`` names the progress bar. A unit
    that fails stops its process's share, and every process raises the error
    (the failing one its own), so none waits for results that never come.
    """
    world, me = world_size(), rank()
    mine = list(range(me, len(units), world))
    ours, error = [], None
    for i in (track(mine, label, total=len(mine)) if label else mine):
        with use(None) if label else contextlib.nullcontext():  # one bar: the units' own stay quiet
            if world == 1:
                ours.append(fn(units[i]))
                continue
            box, error = _boxed(fn, units[i])
        ours.append(box)
        if error is not None:
            break
    if world == 1:
        return ours
    import torch.distributed as dist

    state()
    gathered: list = [None] * world
    dist.all_gather_object(gathered, ours)
    if error is not None:
        raise error
    for r, boxes in enumerate(gathered):
        for box in boxes:
            if box[0] != "ok":
                _unbox(box, f"process {r}")
    out: list = [None] * len(units)
    for r, boxes in enumerate(gathered):
        out[r::world] = [value for _, value in boxes]
    return out


def gather(items: list) -> list:
    """Every process's ``items``, concatenated in rank order (each process gets all of them)."""
    if world_size() == 1:
        return list(items)
    import torch.distributed as dist

    state()
    gathered: list = [None] * world_size()
    dist.all_gather_object(gathered, list(items))
    return [x for part in gathered for x in part]


def main_only(write):
    """Decorate a run-directory writer: other processes skip it."""
    @functools.wraps(write)
    def wrapper(*args, **kwargs):
        return write(*args, **kwargs) if is_main() else None
    return wrapper
