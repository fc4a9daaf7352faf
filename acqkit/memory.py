"""Keep freed memory in the process: large tensors are reused instead of mapped and page-faulted afresh.

glibc serves every allocation above 32 MiB with a fresh ``mmap`` and unmaps it
on free, so memory the kernel must zero and fault in page by page. A DPO step
allocates such buffers every time (the embedding's gradient, the logits, a
round's AdamW state), and on SmolLM2 on a CPU the faults cost 8 % of a float32
and 40 % of a bf16 training step (docs/performance.md, "Memory allocator"). With
``mmap`` off and trimming off, freed blocks go back to malloc's heap and the
next step reuses them. Only where the memory goes changes, never a number:
tensors stay 64-byte aligned (PyTorch's allocator), and a round trains to the
same bits either way (checked). The cost: the process keeps its peak
footprint until it exits, which a training process reaches every step anyway.

Linux with glibc only; elsewhere a no-op. ``ACQKIT_MALLOC=system`` (or any
``MALLOC_*`` tuning variable of your own, or a preloaded jemalloc/tcmalloc)
leaves malloc as it is.
"""
from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
TUNING = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
          "GLIBC_TUNABLES")
_done = False


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (once per process); True if it now does."""
    global _done
    if _done:
        return True
    if (os.environ.get("ACQKIT_MALLOC", "").lower() == "system" or any(v in os.environ for v in TUNING)
            or any(a in os.environ.get("LD_PRELOAD", "") for a in ("jemalloc", "tcmalloc", "mimalloc"))):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # 1 is success. The trim threshold is an int: the largest one keeps every freed byte.
    _done = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
