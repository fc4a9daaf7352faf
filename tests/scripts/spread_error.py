"""Worker for tests/test_distributed.py: a unit fails on one process; every process must raise, none hang.

Usage: accelerate launch --multi_gpu --num_processes 2 spread_error.py   (CPU: gloo)
"""
from acqkit.distributed import rank, spread
from acqkit.errors import PromptError


def square(u: int) -> int:
    if u == 3:  # unit 3 is process 1's (units 1, 3, 5 of 6)
        raise PromptError(f"unit {u} is bad")
    return u * u


if __name__ == "__main__":
    assert spread(list(range(6)), lambda u: u * u) == [0, 1, 4, 9, 16, 25]  # every process gets every result
    try:
        spread(list(range(6)), square)
    except Exception as exc:
        print(f"rank {rank()}: {type(exc).__name__}: {exc}", flush=True)
        raise SystemExit(3)
    raise SystemExit(f"rank {rank()}: no error")
