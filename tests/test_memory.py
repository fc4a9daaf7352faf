"""acqkit.memory: freed large buffers stay in the process for reuse (glibc), and the settings people choose win."""
import platform
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="mallopt is glibc's")

FREE_AND_MEASURE = r"""
import os, sys
import torch
from acqkit.memory import keep_freed_memory

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

kept = keep_freed_memory()
x = torch.ones(64 * 2**20)  # 256 MiB, far above glibc's 32 MiB mmap threshold
before = rss()
del x
print(kept, (before - rss()) // 2**20)
"""


def run(env_extra: dict) -> tuple[bool, int]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "ACQKIT_MALLOC"))}
    out = subprocess.run([sys.executable, "-c", FREE_AND_MEASURE], env={**env, **env_extra}, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@glibc
def test_a_freed_large_tensor_stays_in_the_process_for_reuse():
    kept, returned_mib = run({})
    assert kept and returned_mib < 16  # the 256 MiB stay mapped: the next step reuses them without page faults


@glibc
def test_acqkit_malloc_system_and_the_users_own_malloc_settings_leave_glibc_alone():
    for env in ({"ACQKIT_MALLOC": "system"}, {"MALLOC_TRIM_THRESHOLD_": "1000000"}):
        kept, returned_mib = run(env)
        assert not kept and returned_mib > 200, env  # glibc's default: a large block is unmapped on free
