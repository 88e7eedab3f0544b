"""Runs GuideLLM (scripts/clients guidellm) against a running `profiler serve`: one short,
bounded load of streaming completions, with prompts cut from the shipped corpus
(corpus_prompts.py: distinct prompt lengths, output lengths requested with ignore_eos).
GuideLLM writes its own JSON report, which tests/engine/serve_clients.rs reads and keeps.

Usage: guidellm_run.py BASE_URL TOKENIZER_DIR CORPUS OUT_DIR LOAD REQUESTS
  BASE_URL       http://127.0.0.1:PORT (loopback only)
  TOKENIZER_DIR  from `profiler export-tokenizer` (nothing is fetched from a hub)
  OUT_DIR        requests.jsonl (what was asked) and guidellm-LOAD.json (GuideLLM's report)
  LOAD           concurrent:STREAMS (closed loop) or poisson:RATE (requests per second)
  REQUESTS       how many requests (the prompts; the load stops after them)
"""
import json
import os
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# One worker process. GuideLLM 0.8.1 seeds the Poisson generator of every worker process
# with the same seed and adds each draw to one shared clock (AsyncPoissonStrategy.
# next_request_time, guidellm/scheduler/strategies.py), so with N workers every gap comes N
# times in a row: 10 workers turned rate 0.5 into gaps of 0.78 s ten times, then 0.33 s.
# One process draws every gap from one generator, and leaves the CPU to the server.
os.environ["GUIDELLM__MAX_WORKER_PROCESSES"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus_prompts  # noqa: E402

base, tok_dir, corpus, out, load, requests = sys.argv[1:7]
assert base.startswith("http://127.0.0.1:"), "loopback only"
requests = int(requests)
kind, value = load.split(":")
profile = {"concurrent": f"kind=concurrent,streams={value}",
           "poisson": f"kind=poisson,rate={value}"}[kind]

rows = corpus_prompts.write(tok_dir, corpus, requests, 7, out)
data = os.path.join(out, "guidellm-prompts.jsonl")
with open(data, "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps({"prompt": r["prompt"], "output_tokens_count": r["max_tokens"]}) + "\n")

exe = os.path.join(os.path.dirname(sys.executable), "guidellm")
report = os.path.join(out, f"guidellm-{kind}.json")
cmd = [exe, "run",
       "--backend", f"kind=openai_http,target={base},model=smollm2-135m,"
                    "request_format=/v1/completions,http2=false,timeout=300",
       "--profile", profile,
       "--constraint", f"kind=max_requests,count={requests}",
       "--tokenizer", f"kind=hf_auto,model={tok_dir}",
       "--data", f"kind=json_file,path={data}",
       "--seed", "kind=static,value=7",
       "--output", f"kind=json,path={report}",
       "--disable-console-interactive"]
p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
if p.returncode != 0:
    sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
    sys.exit(f"guidellm failed with exit status {p.returncode}")
print(report)
