"""Several processes (``accelerate launch``, torchrun): all of them train, one of them pays and writes.

Every process samples, scores and evaluates the same seeded data, which keeps
the DDP replicas in step at the price of redundant compute. Labels are money,
so only the main process asks a labeler (through the ledger) and sends the
answers to the others; only the main process writes the run directory.
In a single process every function here is a no-op.
"""
from __future__ import annotations

import functools
import os

from acqkit.errors import AcqkitError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def state():
    """accelerate's process state: joins the process group under a launcher, picks the device."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def device():
    """Where models live: ``cuda:<local rank>`` under a GPU launcher, else the CPU."""
    import torch

    return state().device if torch.cuda.is_available() else torch.device("cpu")


def from_main(fn):
    """``fn()`` on the main process only; every process gets its result (or its error)."""
    if world_size() == 1:
        return fn()
    import torch.distributed as dist

    state()
    box, error = [None], None
    if is_main():
        try:
            box = [("ok", fn())]
        except Exception as exc:  # the others must not wait forever for a result that never comes
            kind = "user-error" if isinstance(exc, AcqkitError) else "error"  # the others say it the same way
            box, error = [(kind, f"{type(exc).__name__}: {exc}" if kind == "error" else str(exc))], exc
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if error is not None:
        raise error
    if kind == "user-error":
        raise AcqkitError(f"(from the main process) {value}")
    if kind == "error":
        raise RuntimeError(f"the main process failed: {value}")
    return value


def main_only(write):
    """Decorate a run-directory writer: other processes skip it."""
    @functools.wraps(write)
    def wrapper(*args, **kwargs):
        return write(*args, **kwargs) if is_main() else None
    return wrapper
