"""Runs GuideLLM (scripts/clients guidellm) against a running `profiler serve`: a short,
bounded load at a fixed concurrency and at a Poisson rate, with prompts cut from the
shipped corpus (models/corpus.txt) at varied token lengths, and prints, per load, what
GuideLLM measured as one JSON object for tests/serve_clients.rs to check.

Usage: guidellm_run.py BASE_URL TOKENIZER_DIR CORPUS OUT_DIR
  BASE_URL       http://127.0.0.1:PORT (loopback only)
  TOKENIZER_DIR  from `profiler export-tokenizer` (nothing is fetched from a hub)
  OUT_DIR        GuideLLM's JSON reports are written here (kept as fixtures)
"""
import json
import os
import random
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from transformers import AutoTokenizer  # noqa: E402

base, tok_dir, corpus, out = sys.argv[1:5]
assert base.startswith("http://127.0.0.1:"), "loopback only"
os.makedirs(out, exist_ok=True)
REQUESTS = 16

# Prompts of 32 to 160 tokens cut from the corpus, 8 to 32 output tokens each.
tok = AutoTokenizer.from_pretrained(tok_dir)
ids = tok(open(corpus, encoding="utf-8").read())["input_ids"]
rng = random.Random(7)
rows = []
for i in range(REQUESTS):
    n = rng.randint(32, 160)
    start = rng.randint(0, len(ids) - n - 1)
    rows.append({"prompt": tok.decode(ids[start:start + n]),
                 "output_tokens_count": rng.randint(8, 32)})
data = os.path.join(out, "prompts.jsonl")
with open(data, "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r) + "\n")

exe = os.path.join(os.path.dirname(sys.executable), "guidellm")
results = {}
for name, profile in [("concurrent", "kind=concurrent,streams=4"),
                      ("poisson", "kind=poisson,rate=2")]:
    report = os.path.join(out, f"guidellm-{name}.json")
    cmd = [exe, "run",
           "--backend", f"kind=openai_http,target={base},model=smollm2-135m,"
                        "request_format=/v1/completions,http2=false,timeout=300",
           "--profile", profile,
           "--constraint", f"kind=max_requests,count={REQUESTS}",
           "--tokenizer", f"kind=hf_auto,model={tok_dir}",
           "--data", f"kind=json_file,path={data}",
           "--seed", "kind=static,value=7",
           "--output", f"kind=json,path={report}",
           "--disable-console-interactive"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        sys.exit(f"guidellm {name} failed with exit status {p.returncode}")
    results[name] = report
print(json.dumps(results))
