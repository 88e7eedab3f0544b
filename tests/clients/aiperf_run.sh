#!/usr/bin/env bash
# Runs AIPerf (scripts/clients aiperf) against a running `profiler serve`: one short, bounded
# load of streaming completions at a fixed concurrency, with prompts cut from the shipped
# corpus (corpus_prompts.py: distinct prompt lengths, output lengths requested with
# ignore_eos). AIPerf counts tokens itself, with the exported tokenizer (no hub); its
# per-request records (profile_export.jsonl) and summary (profile_export_aiperf.json) are
# what tests/engine/serve_clients.rs reads and keeps.
# Usage: aiperf_run.sh BASE_URL TOKENIZER_DIR CORPUS OUT_DIR CONCURRENCY REQUESTS
#   (BASE_URL: http://127.0.0.1:PORT; OUT_DIR also gets requests.jsonl, what was asked)
set -euo pipefail
base=$1 tok=$2 corpus=$3 out=$4 concurrency=$5 requests=$6
case $base in http://127.0.0.1:*) ;; *) echo "aiperf_run.sh: loopback only" >&2; exit 2 ;; esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/../../.venv-clients/aiperf"
mkdir -p "$out"
# Nothing may come from a model hub. AIPerf 0.13.0 in offline mode (HF_HUB_OFFLINE) looks a
# local tokenizer folder up as a hub cache entry and fails, so instead the hub's address is
# a closed loopback port: any attempt to reach it fails at once, and the tokenizer is
# loaded from the folder (aiperf/common/tokenizer.py takes a path as local).
unset HF_HUB_OFFLINE TRANSFORMERS_OFFLINE
export HF_ENDPOINT=http://127.0.0.1:9 HF_HUB_DISABLE_TELEMETRY=1 HF_DATASETS_OFFLINE=1
export HF_HOME="$out/.hf-home"

CLIENTS_DIR="$here" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$venv/bin/python" -c '
import json, os, sys
sys.path.insert(0, os.environ["CLIENTS_DIR"])
import corpus_prompts
tok, corpus, n, out = sys.argv[1:5]
with open(os.path.join(out, "aiperf-prompts.jsonl"), "w", encoding="utf-8") as f:
    for r in corpus_prompts.write(tok, corpus, int(n), 7, out):
        f.write(json.dumps({"text": r["prompt"], "output_length": r["max_tokens"]}) + "\n")
' "$tok" "$corpus" "$requests" "$out"

timeout 900 "$venv/bin/aiperf" profile \
  --model smollm2-135m --url "$base" --endpoint-type completions --streaming \
  --tokenizer "$tok" \
  --input-file "$out/aiperf-prompts.jsonl" --custom-dataset-type single_turn \
  --dataset-sampling-strategy sequential \
  --concurrency "$concurrency" --request-count "$requests" \
  --extra-inputs ignore_eos:true \
  --random-seed 7 --ui-type none --no-server-metrics --no-gpu-telemetry \
  --artifact-dir "$out"
