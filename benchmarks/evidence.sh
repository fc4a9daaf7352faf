#!/usr/bin/env bash
# Reproduce docs/results.md: the comparisons in docs/results/*.toml, one after the other,
# with SmolLM2 on the sentiment task. Interrupted? Run it again: it resumes.
#
#     bash benchmarks/evidence.sh                  # all seven, an estimated eight hours on 2 CPU cores
#     bash benchmarks/evidence.sh one-round        # just one
#     bash benchmarks/evidence.sh --save [NAME...] # carry unfinished comparisons to another checkout
#     bash benchmarks/evidence.sh --status         # finished cells of each comparison, here or saved
#
# The TOMLs turn policy checkpoints off, so a comparison's directory is small files only.
# --save copies runs/evidence/NAME to docs/results/partial/NAME (commit it); a checkout that
# has no runs/evidence/NAME starts from that copy, and the finished cells are not run again.
set -euo pipefail
cd "$(dirname "$0")/.."
ACQKIT=${ACQKIT:-.venv/bin/acqkit}
OUT=${OUT:-runs/evidence}
PARTIAL=docs/results/partial
ALL=(one-round three-rounds decrease increase selfee-seeds-48 selfee-seeds-192 one-round-bf16)
mkdir -p "$OUT"
if [ "${1:-}" = "--status" ]; then
    for name in "${ALL[@]}"; do
        for dir in "$OUT/$name" "$PARTIAL/$name" "docs/results/$name"; do
            [ -f "$dir/config.toml" ] && break
        done
        if [ ! -f "$dir/config.toml" ]; then echo "$name: not started"; continue; fi
        "${ACQKIT%/acqkit}/python" - "$dir" "$name" <<'PY'
import sys
from pathlib import Path
import pandas as pd
from acqkit.compare import run_dir
from acqkit.config import load_compare
out, name = Path(sys.argv[1]), sys.argv[2]
runs = list(load_compare(out / "config.toml").runs())
def finished(cfg, rows):  # read only: a running comparison may be writing this directory
    return ((rows["strategy"] == cfg.strategy) & (rows["seed"] == cfg.seed) & (rows["round"] == cfg.rounds)).any()
def cell(cfg):
    path = run_dir(out, cfg) / "results.csv"
    return pd.read_csv(path) if path.is_file() else None
if (out / "runs").is_dir():
    done = [cfg for cfg in runs if (rows := cell(cfg)) is not None and finished(cfg, rows)]
else:  # a committed, finished comparison keeps only its results.csv
    rows = pd.read_csv(out / "results.csv")
    done = [cfg for cfg in runs if finished(cfg, rows)]
print(f"{name}: {len(done)} of {len(runs)} cells finished ({out})")
PY
    done
    exit 0
fi
if [ "${1:-}" = "--save" ]; then
    shift
    names=("$@")
    [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
    for name in "${names[@]}"; do
        [ -f "$OUT/$name/config.toml" ] || continue
        rm -rf "$PARTIAL/$name" && mkdir -p "$PARTIAL"
        cp -r "$OUT/$name" "$PARTIAL/$name"
        rm -f "$PARTIAL/$name/.acqkit.lock"
        # --resume keeps a cell only if its runs/STRATEGY/seed-N/results.csv is there: all of it must be committable
        ignored=$(cd "$PARTIAL/$name" && find . -type f -print0 | { git check-ignore -z --stdin || true; } | tr '\0' ' ')
        if [ -n "$ignored" ]; then
            echo "error: git ignores part of $PARTIAL/$name ($ignored); fix .gitignore or the saved cells are lost" >&2
            exit 1
        fi
        echo "saved $OUT/$name -> $PARTIAL/$name ($(du -sh "$PARTIAL/$name" | cut -f1))"
    done
    exit 0
fi
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
for name in "${names[@]}"; do
    dir=$OUT/$name
    start=$(date +%s)
    if [ ! -d "$dir" ] && [ -f "$PARTIAL/$name/config.toml" ]; then
        cp -r "$PARTIAL/$name" "$dir"  # an earlier checkout's unfinished work
    fi
    if [ -f "$dir/config.toml" ]; then
        "$ACQKIT" compare --resume "$dir" --quiet --show-rounds all
    else
        "$ACQKIT" compare --config "docs/results/$name.toml" --out "$dir" --quiet --show-rounds all
    fi
    echo "$name: $(( $(date +%s) - start )) s wall, $(nproc --all) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/wall.txt"
done
