#!/usr/bin/env bash
# Reproduce docs/results.md: the comparisons in docs/results/*.toml, one after the other,
# with SmolLM2 on the sentiment task. Interrupted? Run it again: it resumes.
#
#     bash benchmarks/evidence.sh                  # all six, an estimated seven hours on 2 CPU cores
#     bash benchmarks/evidence.sh one-round        # just one
set -euo pipefail
cd "$(dirname "$0")/.."
ACQKIT=${ACQKIT:-.venv/bin/acqkit}
OUT=${OUT:-runs/evidence}
mkdir -p "$OUT"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(one-round three-rounds decrease increase selfee-seeds-48 selfee-seeds-192)
for name in "${names[@]}"; do
    dir=$OUT/$name
    start=$(date +%s)
    if [ -f "$dir/config.toml" ]; then
        "$ACQKIT" compare --resume "$dir" --quiet --show-rounds all
    else
        "$ACQKIT" compare --config "docs/results/$name.toml" --out "$dir" --quiet --show-rounds all
    fi
    echo "$name: $(( $(date +%s) - start )) s wall, $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/wall.txt"
done
