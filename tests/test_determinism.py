"""One config and seed in two fresh processes: byte-identical files. Another seed: other samples.

Fresh processes matter: each gets its own PYTHONHASHSEED (set and dict order of
strings), its own import order and allocator state, none of which a
same-process rerun (tests/test_round.py) can vary.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

pytestmark = pytest.mark.integration  # fresh acqkit processes

ARGS = ["run", "--preset", "smoke", "--strategy", "smallest-margin", "--rounds", "2", "--budget", "8",
        "--seed-labels", "4", "--max-new-tokens", "8", "--eval-prompts", "4", "--quiet"]


def test_fresh_processes_give_identical_files_and_other_seeds_other_samples(tmp_path):
    runs = {"a": (0, "1"), "b": (0, "2"), "c": (1, "3")}  # name: (seed, PYTHONHASHSEED)
    procs = {}
    for name, (seed, hashseed) in runs.items():
        env = {**os.environ, "PYTHONHASHSEED": hashseed, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs[name] = subprocess.Popen([sys.executable, "-m", "acqkit", *ARGS, "--seed", str(seed),
                                        "--out", str(tmp_path / name)], env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
    for name, proc in procs.items():
        output = proc.communicate(timeout=900)[0]
        assert proc.returncode == 0, f"{name}: {output[-2000:]}"

    for name in ("results.csv", "labels.jsonl", "examples.jsonl", "checkpoint/model.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    def samples(run: str) -> dict[int, list[str]]:
        out = {}
        for line in (tmp_path / run / "labels.jsonl").read_text().splitlines():
            rec = json.loads(line)
            out.setdefault(rec["round"], []).append(rec["text_a"] + "\x00" + rec["text_b"])
        return out

    a, c = samples("a"), samples("c")
    assert a[0] == c[0]  # the warm start is shared by every seed (warm_start_seed = 0)
    assert all(a[r] != c[r] for r in (1, 2))  # every online round samples anew
    ra, rc = pd.read_csv(tmp_path / "a" / "results.csv"), pd.read_csv(tmp_path / "c" / "results.csv")
    assert (ra["seed"] == 0).all() and (rc["seed"] == 1).all()
    assert not ra["train_loss"].iloc[1:].equals(rc["train_loss"].iloc[1:])
