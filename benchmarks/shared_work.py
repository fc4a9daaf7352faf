"""What sharing saves: one `acqkit compare` of K strategies vs K separate `acqkit run`s.

A comparison loads the models once, evaluates the initial policy once, trains
the warm start once and samples/scores round 1 once per seed; separate runs
redo all of it. Both sides run as fresh processes, one after the other.
Issue target: compare <= 0.8 x the separate runs. It also sums, from each
run's timings.jsonl, the responses the reference scored in rounds >= 1 and the
ones answered from the reference cache (``--ref-cache exact``; warm start excluded).

    python benchmarks/shared_work.py --model smollm2 --strategies random,smallest-margin,always-smallest
"""
from __future__ import annotations

import argparse
import json
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


def reference_work(root: Path) -> tuple[int, int]:
    """``(ref_scored, ref_cached)`` summed over every timings.jsonl under ``root``."""
    scored = cached = 0
    for path in root.rglob("timings.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            scored += rec.get("ref_scored", 0)
            cached += rec.get("ref_cached", 0)
    return scored, cached


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--strategies", default="random,smallest-margin,always-smallest")
    ap.add_argument("--rounds", default="1")
    ap.add_argument("--ref-cache", default="off", choices=["off", "exact"])
    args = ap.parse_args()
    common = ["--preset", args.preset, "--model", args.model, "--rounds", args.rounds, "--ref-cache", args.ref_cache,
              "--quiet"]
    strategies = args.strategies.split(",")
    print(f"nproc={os.cpu_count()} load={os.getloadavg()[0]:.2f} model={args.model} K={len(strategies)}")
    with tempfile.TemporaryDirectory() as tmp:
        together = timed(ACQKIT + ["compare", *common, "--strategies", args.strategies, "--seeds", "1",
                                   "--out", str(Path(tmp) / "cmp")])
        separate = sum(timed(ACQKIT + ["run", *common, "--strategy", s, "--seed", "0",
                                       "--out", str(Path(tmp) / f"run{i}")]) for i, s in enumerate(strategies))
        work = {"compare": reference_work(Path(tmp) / "cmp"),
                "separate": [reference_work(Path(tmp) / f"run{i}") for i in range(len(strategies))]}
    print(f"compare of {len(strategies)} strategies: {together:.1f} s")
    print(f"{len(strategies)} separate runs:          {separate:.1f} s")
    print(f"ratio: {together / separate:.2f} (target <= 0.80)   load={os.getloadavg()[0]:.2f}")
    sep = [sum(x) for x in zip(*work["separate"])]
    print(f"reference, rounds >= 1 (ref_cache={args.ref_cache}): compare scored {work['compare'][0]}, "
          f"cache hits {work['compare'][1]}; separate runs scored {sep[0]}, cache hits {sep[1]}")


if __name__ == "__main__":
    main()
