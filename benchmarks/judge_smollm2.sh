#!/usr/bin/env bash
# The measured judge comparison of issue #16: SmolLM2-135M-Instruct served by `transformers serve` as the judge.
set -u
cd "$(dirname "$0")/.."
JUDGE=$(.venv/bin/python -c "from acqkit.models import cache_dir; from acqkit.models.smollm2 import ensure_smollm2; print(ensure_smollm2(cache_dir() / 'smollm2'))")
HF_HUB_OFFLINE=1 .venv/bin/transformers serve "$JUDGE" --host 127.0.0.1 --port 8765 --device cpu > "${TMPDIR:-/tmp}/acqkit-judge-serve.log" 2>&1 &
SERVE_PID=$!
for i in $(seq 60); do curl -s http://127.0.0.1:8765/v1/models >/dev/null && break; sleep 1; done
start=$(date +%s)
.venv/bin/acqkit compare --preset default --strategies random,smallest-margin --seeds 3 \
  --labeler "judge(base_url=http://127.0.0.1:8765/v1, model=$JUDGE, api_key_env=, concurrency=2, max_tokens=16, price_in=0.15, price_out=0.6)" \
  --out "${OUT:-runs/judge-smollm2}" --quiet
echo "exit $? wall $(( $(date +%s) - start ))s"
kill $SERVE_PID
