"""`scripts/bench --serve`: `profiler serve` loaded by GuideLLM, against `profiler simulate`
of the same load on this machine's host profile.

1. `profiler run` (batch 1, the host self-check on) gives the host profile: the matmul rate
   and memory bandwidth measured by its start-up micro-benchmarks, and the prompt matmul
   efficiency, decode bandwidth efficiency and per-row decode cost derived from the model's
   own steps timed at fixed shapes (a 128-token prefill, decode steps of 1, 2, 3 and 4
   rows, which then price the simulated decode steps); nothing fitted to the loads.
2. GuideLLM at CONCURRENCY closed-loop streams measures the server's capacity (requests/s),
   then Poisson loads at fractions of it, from light to near saturation; each load on a
   fresh `profiler serve --max-num-seqs 4 --seq-len 256 --threads T --samples FILE`.
3. `profiler simulate --device host --host-check RUN.json --no-chunked-prefill
   --max-num-batched-tokens 1` (whole prompts, one per step, before the decode steps, as
   the server's prefill-first policy; the server packs its busy slots, so a decode step
   runs one row per decoding sequence, as simulated) of each load: the
   Poisson loads replay the server's samples file (the same arrival times and lengths), the
   closed loop runs the same lengths at the same concurrency.
4. A table of measured (GuideLLM's per-request values) against simulated: mean and p90 of
   TTFT and TPOT (per request, first token excluded: GuideLLM's inter_token_latency_ms), and
   output tokens/s (from the first request sent to the last token received).

Usage: bench_serve.py BIN_DIR OUT.json [--requests N] [--threads T]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONCURRENCY = 4
SEQ_LEN = 256
FRACTIONS = (0.25, 0.5, 0.8)


def cores():
    """The CPUs this process may use, split in two: the engine (the self-check's run and
    the server) on the first, the load generator and the simulator on the rest, so the
    client's own work does not slow the steps it measures. One CPU: no pinning."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


ENGINE_CPUS, CLIENT_CPUS = cores()


def pinned(cpus):
    """A preexec_fn that pins the child to `cpus` (None: leaves it alone)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def say(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def percentile(xs, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def mean(xs):
    return sum(xs) / len(xs)


class Server:
    def __init__(self, bin_dir, threads, samples):
        self.p = subprocess.Popen(
            [os.path.join(bin_dir, "profiler"), "serve", "--model", "llama", "--run-on", "cpu",
             "--addr", "127.0.0.1:0", "--max-num-seqs", str(CONCURRENCY),
             "--seq-len", str(SEQ_LEN), "--threads", str(threads), "--samples", samples],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=pinned(ENGINE_CPUS))
        seen = []
        for line in self.p.stderr:
            if "on http://" in line:
                self.base = "http://" + line.split("on http://")[1].split("/")[0]
                return
            seen.append(line)
        raise SystemExit(f"bench: profiler serve did not start: {''.join(seen)}")

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        self.p.communicate(timeout=120)
        if self.p.returncode != 0:
            raise SystemExit(f"bench: profiler serve exited with {self.p.returncode}")


def guidellm(base, tok, out, load, requests):
    py = os.path.join(ROOT, ".venv-clients/guidellm/bin/python")
    r = subprocess.run([py, os.path.join(ROOT, "tests/clients/guidellm_run.py"), base, tok,
                        os.path.join(ROOT, "models/corpus.txt"), out, load, str(requests)],
                       capture_output=True, text=True, timeout=1800,
                       preexec_fn=pinned(CLIENT_CPUS))
    if r.returncode != 0:
        raise SystemExit(f"bench: guidellm {load} failed: {r.stderr[-2000:]}")
    report = json.load(open(r.stdout.strip()))
    b = report["benchmarks"][0]
    reqs = b["requests"]
    bad = len(reqs.get("errored") or []) + len(reqs.get("incomplete") or [])
    if bad:
        raise SystemExit(f"bench: guidellm {load}: {bad} requests failed")
    ok = reqs["successful"]
    starts = [q["info"]["timings"]["request_start"] for q in ok]
    lasts = [q["info"]["timings"]["last_token_iteration"] for q in ok]
    ttft = [q["time_to_first_token_ms"] for q in ok]
    tpot = [q["inter_token_latency_ms"] for q in ok if q["output_tokens"] > 1]
    out_tokens = sum(q["output_tokens"] for q in ok)
    span = max(lasts) - min(starts)
    return {
        "requests": len(ok),
        "ttft_ms": {"mean": mean(ttft), "p90": percentile(ttft, 0.9)},
        "tpot_ms": {"mean": mean(tpot), "p90": percentile(tpot, 0.9)},
        "output_tokens_per_s": out_tokens / span,
        "requests_per_s": len(ok) / span,
    }


def simulate(bin_dir, host_report, extra):
    cmd = [os.path.join(bin_dir, "profiler"), "simulate", "--model", "llama", "--device", "host",
           "--host-check", host_report, "--instance", "host", "--weights-dtype", "fp32",
           "--max-num-seqs", str(CONCURRENCY), "--seq-len", str(SEQ_LEN),
           "--no-chunked-prefill", "--max-num-batched-tokens", "1", "--format", "json"] + extra
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    s = json.loads(r.stdout)
    return {
        "requests": s["requests"],
        "ttft_ms": {"mean": s["ttft_ms"]["mean"], "p90": s["ttft_ms"]["p90"]},
        "tpot_ms": {"mean": s["tpot_ms"]["mean"], "p90": s["tpot_ms"]["p90"]},
        "output_tokens_per_s": s["output_tokens_per_s"],
        "requests_per_s": s["requests_per_s"],
        "itl_p50_ms": s["itl_ms"]["p50"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_dir")
    ap.add_argument("out")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-serve.")
    try:
        bench(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(a, work):
    started = time.time()
    prof = os.path.join(a.bin_dir, "profiler")
    tok = os.path.join(work, "tokenizer")
    subprocess.run([prof, "export-tokenizer", "--model", "llama", "--out", tok], check=True,
                   capture_output=True)

    say("host profile: profiler run (batch 1, host self-check)")
    host = os.path.join(work, "run.json")
    subprocess.run([prof, "run", "--model", "llama", "--run-on", "cpu", "--threads",
                    str(a.threads), "--input-len", "96", "--output-len", "20", "--requests", "4",
                    "--warmup", "1", "--format", "json", "--out", host, "-q"],
                   check=True, stdout=subprocess.DEVNULL, preexec_fn=pinned(ENGINE_CPUS))
    hc = json.load(open(host))["host_check"]

    rows = []

    def load(name, guidellm_load, sim_extra_of):
        slug = guidellm_load.replace(":", "-")
        samples = os.path.join(work, f"{slug}.jsonl")
        srv = Server(a.bin_dir, a.threads, samples)
        say(f"GuideLLM {guidellm_load}, {a.requests} requests")
        try:
            measured = guidellm(srv.base, tok, os.path.join(work, slug), guidellm_load,
                                a.requests)
        finally:
            srv.stop()
        simulated = simulate(a.bin_dir, host, sim_extra_of(samples))
        rows.append({"load": name, "measured": measured, "simulated": simulated})
        return measured

    def lengths_of(samples):
        wl = os.path.join(work, "lengths.jsonl")
        with open(samples) as f, open(wl, "w") as w:
            for line in f:
                s = json.loads(line)
                if s.get("kind") == "sample":
                    w.write(json.dumps({"prompt_tokens": s["prompt_tokens"],
                                        "output_tokens": s["output_tokens"]}) + "\n")
        return ["--workload", wl, "--concurrency", str(CONCURRENCY)]

    cap = load(f"concurrency {CONCURRENCY}", f"concurrent:{CONCURRENCY}", lengths_of)
    capacity = cap["requests_per_s"]
    for frac in FRACTIONS:
        rate = round(capacity * frac, 3)
        load(f"Poisson {rate} req/s ({frac:.0%})", f"poisson:{rate}",
             lambda s: ["--samples", s])

    # The median gap between two tokens of a request in the closed loop: the typical
    # decode step with the slots full or refilling, served (the server's samples) and
    # simulated (the same load's simulation).
    steps = []
    with open(os.path.join(work, f"concurrent-{CONCURRENCY}.jsonl")) as f:
        for line in f:
            s = json.loads(line)
            if s.get("kind") == "sample":
                steps += s["decode_step_ms"]
    step_measured = percentile(steps, 0.5)
    step_sim = rows[0]["simulated"]["itl_p50_ms"]

    def err(m, s):
        return f"{100 * (s / m - 1):+.0f}%"

    def fmt(x, spec):
        return "n/a" if x is None else format(x, spec)

    lines = [
        f"serving on this machine: profiler serve ({CONCURRENCY} slots, {a.threads} thread(s)) "
        f"measured by GuideLLM, simulated on its host profile (matmul {hc['matmul_gflops']:.1f} "
        f"GFLOP/s, memory {hc['memory_gb_per_s']:.1f} GB/s, prompt matmul efficiency "
        f"{fmt(hc.get('prefill_compute_efficiency'), '.3f')}, decode bandwidth efficiency "
        f"{fmt(hc.get('bandwidth_efficiency'), '.3f')} and {fmt(hc.get('decode_seq_ms'), '.1f')} "
        f"ms per extra row); {a.requests} requests per load",
        f"measured on the model at fixed shapes: a {hc.get('prefill_tokens')}-token prefill "
        f"{fmt(hc.get('prefill_ms'), '.0f')} ms, a decode step of 1 row "
        f"{fmt(hc.get('decode_step_1_ms'), '.1f')} ms and of {hc.get('decode_rows')} rows "
        f"{fmt(hc.get('decode_step_rows_ms'), '.1f')} ms; each row count: "
        + (", ".join(f"{s['rows']} {s['ms']:.1f} ms" for s in hc.get("decode_steps") or [])
           or "not timed"),
        "",
        "| load | TTFT mean ms (sim, err) | TTFT p90 ms (sim, err) | TPOT mean ms (sim, err) "
        "| TPOT p90 ms (sim, err) | output tok/s (sim, err) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, s = r["measured"], r["simulated"]
        cells = []
        for k, q in (("ttft_ms", "mean"), ("ttft_ms", "p90"), ("tpot_ms", "mean"),
                     ("tpot_ms", "p90")):
            cells.append(f"{m[k][q]:.0f} ({s[k][q]:.0f}, {err(m[k][q], s[k][q])})")
        mt, st = m["output_tokens_per_s"], s["output_tokens_per_s"]
        cells.append(f"{mt:.1f} ({st:.1f}, {err(mt, st)})")
        lines.append(f"| {r['load']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"batch 1 (profiler run, host self-check, the two rates alone): TPOT measured "
        f"{hc['measured_tpot_ms']:.0f} ms, "
        f"projected {hc['projected_tpot_ms']:.0f} ms ({err(hc['measured_tpot_ms'], hc['projected_tpot_ms'])}); "
        f"TTFT measured {hc['measured_ttft_ms']:.0f} ms, projected {hc['projected_ttft_ms']:.0f} ms "
        f"({err(hc['measured_ttft_ms'], hc['projected_ttft_ms'])})")
    lines.append(
        f"median gap between two tokens of a request at {CONCURRENCY} streams: served "
        f"{step_measured:.0f} ms, simulated {step_sim:.0f} ms ({err(step_measured, step_sim)})")
    load_avg = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
    lines.append("")
    lines.append(f"({time.time() - started:.0f} s; load average {load_avg} at the end)")
    print("\n".join(lines))
    with open(a.out, "w") as f:
        json.dump({"host_check": hc, "threads": a.threads,
                   "closed_loop_itl_p50_ms": {"served": step_measured, "simulated": step_sim}, "slots": CONCURRENCY,
                   "requests_per_load": a.requests, "loads": rows}, f, indent=1)


if __name__ == "__main__":
    main()
