"""The light on-demand benchmarks still run, on the tiny model and a few inputs.

Benchmarks run rarely and by hand, so a change in acqkit's internals can break
one unnoticed until someone needs its numbers (it happened: ``dpo_vs_trl.py``
still read ``shard_batches`` as flat batches after they became micro-batches).
This runs four of them end to end at a size that takes seconds (the others load
SmolLM2 or start several processes by default, so they would lengthen the suite).
It checks that they run and print their result lines, never a speed: targets
live in the benchmarks themselves.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

# script, arguments for a few-second run, a line its report must print
RUNS = [
    ("dpo_vs_trl.py", ["--model", "tiny", "--pairs", "16", "--repeats", "1"], "acqkit / TRL pairs/s"),
    ("dpo_vs_trl.py", ["--model", "tiny", "--pairs", "16", "--repeats", "1", "--precision", "bf16"],
     "acqkit / TRL pairs/s"),
    ("scoring.py", ["--model", "tiny", "--n", "32", "--repeats", "1"], "tokens/s"),
    ("selection.py", ["--prompts", "200", "--responses", "4", "--budget", "50", "--repeat", "1"], "smallest-margin"),
    ("dataset_load.py", ["--rows", "300"], "first load"),
]


@pytest.mark.integration
@pytest.mark.parametrize("script, args, expect", RUNS, ids=[f"{s} {' '.join(a)}" for s, a, _ in RUNS])
def test_a_benchmark_runs_end_to_end_on_a_small_input(tmp_path, script, args, expect):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert expect in out.stdout, out.stdout[-3000:]
