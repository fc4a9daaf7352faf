"""What sharing saves: one `acqkit compare` of K strategies vs K separate `acqkit run`s.

A comparison loads the models once, evaluates the initial policy once, trains
the warm start once and samples/scores round 1 once per seed; separate runs
redo all of it. Both sides run as fresh processes, one after the other.
Issue target: compare <= 0.8 x the separate runs.

    python benchmarks/shared_work.py --model smollm2 --strategies random,smallest-margin,always-smallest
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ACQKIT = [sys.executable, "-m", "acqkit"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--strategies", default="random,smallest-margin,always-smallest")
    ap.add_argument("--rounds", default="1")
    args = ap.parse_args()
    common = ["--preset", args.preset, "--model", args.model, "--rounds", args.rounds, "--quiet"]
    strategies = args.strategies.split(",")
    print(f"nproc={os.cpu_count()} load={os.getloadavg()[0]:.2f} model={args.model} K={len(strategies)}")
    with tempfile.TemporaryDirectory() as tmp:
        together = timed(ACQKIT + ["compare", *common, "--strategies", args.strategies, "--seeds", "0",
                                   "--out", str(Path(tmp) / "cmp")])
        separate = sum(timed(ACQKIT + ["run", *common, "--strategy", s, "--seed", "0",
                                       "--out", str(Path(tmp) / f"run{i}")]) for i, s in enumerate(strategies))
    print(f"compare of {len(strategies)} strategies: {together:.1f} s")
    print(f"{len(strategies)} separate runs:          {separate:.1f} s")
    print(f"ratio: {together / separate:.2f} (target <= 0.80)   load={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
