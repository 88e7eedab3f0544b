#!/usr/bin/env bash
# Runs AIPerf (scripts/clients aiperf) against a running `profiler serve`: a short, bounded
# load at a fixed concurrency, streaming completions with synthetic prompts from AIPerf's
# own shipped corpus, token counts by the exported tokenizer (no hub).
# Usage: aiperf_run.sh BASE_URL TOKENIZER_DIR OUT_DIR   (BASE_URL: http://127.0.0.1:PORT)
set -euo pipefail
base=$1 tok=$2 out=$3
case $base in http://127.0.0.1:*) ;; *) echo "aiperf_run.sh: loopback only" >&2; exit 2 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
mkdir -p "$out"
timeout 900 "$root/.venv-clients/aiperf/bin/aiperf" profile \
  --model smollm2-135m --url "$base" --endpoint-type completions --streaming \
  --tokenizer "$tok" \
  --concurrency 4 --request-count 16 --warmup-request-count 0 \
  --synthetic-input-tokens-mean 64 --synthetic-input-tokens-stddev 16 \
  --output-tokens-mean 16 --output-tokens-stddev 4 \
  --extra-inputs ignore_eos:true \
  --random-seed 7 --ui-type none --no-server-metrics --no-gpu-telemetry \
  --artifact-dir "$out"
