"""Reference side of scripts/bench: Hugging Face transformers on the same model, plus floors.

Loads the GGUF model with transformers (dequantised to float32, eager attention), sets
torch's thread count, and measures with `model.generate` (greedy, end-of-sequence
ignored), in one process:

  * TTFT (prefill + first token) and decode step time for batch 1 and batch 8 after
    prompts of --input-len tokens, and TTFT for each --ttft-len prompt;
  * memory bandwidth: a large tensor copy, read + write bytes counted, best of several;
  * matmul rate: a 2048 x 2048 float32 matmul, best of several;
  * from those, the decode floor (every weight read once per step, the tied LM head
    included) and the prefill compute floor (2 x parameters x tokens FLOPs).

Prompts are cut from the same text corpus as `profiler run --input-len`: the corpus is
tokenised without special tokens and request r takes L ids from the same seeded offset
(SplitMix64 of (seed, r)), wrapping round the corpus. Each configuration runs once as
warm-up, then --runs times; every run's numbers are written, summaries are left to
scripts/bench_report.py. Writes one JSON object to --out.
"""

import argparse
import hashlib
import json
import os
import platform
import time

import torch

MASK64 = (1 << 64) - 1


def corpus_offset(seed, request, n):
    """The start offset `profiler run` uses for request `request` (SplitMix64)."""
    z = ((seed * 0x9E3779B97F4A7C15) + request + 1) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return (z ^ (z >> 31)) % n


def corpus_prompt(corpus, length, request, seed=0):
    start = corpus_offset(seed, request, len(corpus))
    return [corpus[(start + i) % len(corpus)] for i in range(length)]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """A logits processor that only records when each new token's logits are ready."""

    def __init__(self, device):
        self.device = device
        self.times = []

    def __call__(self, input_ids, scores):
        sync(self.device)
        self.times.append(time.perf_counter())
        return scores


def timed_generate(model, ids, new_tokens, device):
    """One greedy generation; returns (ttft_ms, [decode step ms])."""
    from transformers import LogitsProcessorList

    clock = StepClock(device)
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,  # ignore end-of-sequence, like --output-len
            do_sample=False,
            logits_processor=LogitsProcessorList([clock]),
        )
    t = clock.times
    assert len(t) == new_tokens, f"expected {new_tokens} steps, got {len(t)}"
    return (t[0] - t0) * 1e3, [(b - a) * 1e3 for a, b in zip(t, t[1:])]


def measure(model, corpus, device, input_len, batch, new_tokens, warmup, runs):
    ids = torch.tensor(
        [corpus_prompt(corpus, input_len, r) for r in range(batch)], dtype=torch.long, device=device
    )
    for _ in range(warmup):
        timed_generate(model, ids, new_tokens, device)
    out = []
    for _ in range(runs):
        ttft, steps = timed_generate(model, ids, new_tokens, device)
        tpot = sum(steps) / len(steps) if steps else None
        out.append({"ttft_ms": ttft, "tpot_ms": tpot, "decode_step_ms": steps})
    return {"input_len": input_len, "batch": batch, "output_len": new_tokens, "runs": out}


def bandwidth(device, mib=512, reps=10):
    """Best copy rate of a `mib`-MiB float32 tensor, bytes read + bytes written per second."""
    n = mib * 1024 * 1024 // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return {"bytes_per_s": 2 * n * 4 / best, "tensor_mib": mib, "best_s": best, "reps": reps}


def matmul_rate(device, n=2048, reps=5):
    """Best float32 rate of an n x n matmul, FLOP/s (2 n^3 per product)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    c = a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        torch.matmul(a, b, out=c)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return {"flop_per_s": 2 * n**3 / best, "n": n, "best_s": best, "reps": reps}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gguf", required=True, help="the model file (.gguf)")
    p.add_argument("--corpus", required=True, help="text the prompts are cut from")
    p.add_argument("--run-on", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--ttft-lens", default="512")
    p.add_argument("--high-ttft-lens", default="",
                   help='TTFT again for these prompt lengths with torch.set_float32_matmul_precision("high")')
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(a.threads)
    device = torch.device(a.run_on)

    folder, name = os.path.split(os.path.abspath(a.gguf))
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    ).to(device)
    model.eval()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    load_s = time.perf_counter() - t
    with open(a.corpus, encoding="utf-8") as f:
        corpus = tok(f.read(), add_special_tokens=False).input_ids

    # Unique parameters: a tied LM head shares the embedding matrix and is counted once.
    params = sum(p.numel() for p in model.parameters())
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    emb = model.get_input_embeddings().weight
    # A decode step reads every weight once, except that an untied embedding is only
    # gathered (one row per token), not read whole.
    step_params = params if tied else params - emb.numel() + emb.shape[1]
    bytes_per_param = torch.finfo(torch.float32).bits // 8

    bw = bandwidth(device)
    mm = matmul_rate(device)

    cases = {}
    for b in [int(x) for x in a.batches.split(",") if x]:
        cases[f"decode_b{b}"] = measure(
            model, corpus, device, a.input_len, b, a.output_len, a.warmup, a.runs
        )
    for n in [int(x) for x in a.ttft_lens.split(",") if x]:
        cases[f"ttft_{n}"] = measure(model, corpus, device, n, 1, 1, a.warmup, a.runs)
    # The same prompts with float32 products allowed to be faster and less exact (TF32 on
    # recent GPUs; PyTorch's CPU matmuls stay IEEE f32), to compare with our "high".
    torch.set_float32_matmul_precision("high")
    for n in [int(x) for x in a.high_ttft_lens.split(",") if x]:
        cases[f"ttft_{n}_high"] = measure(model, corpus, device, n, 1, 1, a.warmup, a.runs)
    torch.set_float32_matmul_precision("highest")

    result = {
        "engine": "transformers",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "attn_implementation": model.config._attn_implementation,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "run_on": a.run_on,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "model_file": name,
        "model_sha256": sha256(a.gguf),
        "load_s": load_s,
        "corpus_tokens": len(corpus),
        "first_prompt_ids": corpus_prompt(corpus, 16, 0),
        "params": params,
        "tied_lm_head": tied,
        "decode_read_bytes": step_params * bytes_per_param,
        "bandwidth": bw,
        "matmul": mm,
        "cases": cases,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
