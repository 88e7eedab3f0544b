"""Summary step of scripts/bench: reads the raw results, prints the table, writes bench.json.

Inputs, all in --work:
  * NAME.json             `profiler run --format json` reports of our runs;
  * NAME.samples.jsonl    their samples files (runs made with the profiler's
                          instrumentation on), from which each run's own numbers come;
  * NAME.scrapes          one line per successful scrape of that run's metrics endpoint;
  * transformers.json     from scripts/bench_transformers.py (runs, bandwidth, matmul rate).

A run is one batch: its TTFT, and its decode step time as the median of its steps (robust
to a step slowed by something else on the machine); decode tokens/s = batch / step time.
Each figure is the median over runs, with the min-max spread over runs. Ratios are
"higher is better": transformers' time over ours for TTFT, our tokens/s over theirs for
decode, floor time over our time for the floors.

Overhead compares the runs with samples file and scraped metrics endpoint ("on") against
the same runs without ("bare"), on decode tokens/s from each report's median decode step,
in four adjacent bare/on pairs (so a slow drift of the machine cancels within a pair): the
overhead is the mean of the pairs' 1 - on/bare, its noise twice the standard error of that
mean. The verdict is PASS when overhead + noise is below the target, MISS when overhead -
noise reaches it, NOISY in between (the runs cannot tell).
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

# Adjacent bare/on run pairs of the overhead measurement (scripts/bench runs as many).
PAIRS = 4

# Targets; a ratio passes when it is at least the target (overhead: when below it).
TARGETS = {
    "ttft_long": 1.2,  # our TTFT at most 1/1.2 of transformers'
    "decode_b1": 2.0,  # times transformers' tokens/s
    "decode_bN": 1.3,
    "bandwidth_floor": 0.80,  # floor step time / our step time
    "overhead_pct": 1.0,  # decode tokens/s lost with samples + metrics, percent
    "quant_decode_b1": 4.5,  # best of int8/int4 decode tokens/s, times transformers' f32
    "quant_prefill": 1.0,  # our f32 TTFT (long prompt) over the quantised one
}
# Greedy agreement target for quantised modes: over the first ACC_STEPS steps of every
# prompt, no step where the candidate picks another token than f32 although f32's top-2
# margin is at least ACC_MARGIN.
ACC_STEPS = 16
ACC_MARGIN = 0.1


def load_json(path):
    with open(path) as f:
        return json.load(f)


def sample_runs(path, batch):
    """Per-run (per-batch) numbers from a samples file: rows of a batch share their steps."""
    by_run = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            s = json.loads(line)
            if s.get("kind") != "sample" or s.get("status", "ok") != "ok":
                continue
            by_run.setdefault(s["index"] // batch, s)
    return [run_numbers(s["ttft_ms"], s["decode_step_ms"]) for _, s in sorted(by_run.items())]


def run_numbers(ttft_ms, steps):
    return {
        "ttft_ms": ttft_ms,
        "step_ms": statistics.median(steps) if steps else None,
        "mean_step_ms": statistics.fmean(steps) if steps else None,
        "steps": len(steps),
    }


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def tok_s(runs, batch):
    return summary([batch * 1000.0 / r["step_ms"] for r in runs if r["step_ms"]])


def ttft(runs):
    return summary([r["ttft_ms"] for r in runs])


def fmt(s, unit, digits=1):
    if s is None:
        return "-"
    return f"{s['median']:.{digits}f} {unit} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def verdict(value, target, below=False):
    if value is None or target is None:
        return "info"
    ok = value < target if below else value >= target
    return "PASS" if ok else "MISS"


def report_tok_s(rep):
    """Decode tokens/s of one `profiler run` report, from its median decode step."""
    step = (rep.get("decode_step_ms") or {}).get("p50")
    return rep["workload"]["batch"] * 1000.0 / step if step else None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, required=True, help="the second decode batch size")
    p.add_argument("--long-len", type=int, required=True, help="the second TTFT prompt length")
    p.add_argument("--setup-s", type=float, default=0.0)
    p.add_argument("--started", type=float, required=True, help="Unix time the bench started")
    p.add_argument("--load-before", type=float, default=None)
    p.add_argument("--dtypes", default="", help="other weights dtypes run (space-separated)")
    a = p.parse_args()
    w = lambda name: os.path.join(a.work, name)  # noqa: E731
    B, L = a.batch, a.long_len
    warnings = []

    hf = load_json(w("transformers.json"))
    names = [f"b1_{m}_{i}" for i in range(1, PAIRS + 1) for m in ("bare", "on")] + [f"b{B}", f"ttft_{L}"]
    ours = {}
    for n in names:
        rep = load_json(w(n + ".json"))
        entry = {"report": rep}
        if os.path.exists(w(n + ".samples.jsonl")):
            entry["runs"] = sample_runs(w(n + ".samples.jsonl"), rep["workload"]["batch"])
        if os.path.exists(w(n + ".scrapes")):
            with open(w(n + ".scrapes")) as f:
                entry["scrapes"] = sum(1 for _ in f)
            if entry["scrapes"] == 0:
                warnings.append(f"{n}: the metrics endpoint never answered a scrape")
        if rep.get("failed_requests") or rep.get("interrupted"):
            warnings.append(f"{n}: failed requests or interrupted run")
        warnings += [f"{n}: {x}" for x in rep.get("warnings", [])]  # in full in bench.json
        ours[n] = entry
    env = ours["b1_on_1"]["report"]["environment"]
    if env.get("weights_sha256") and env["weights_sha256"] != hf["model_sha256"]:
        warnings.append("ours and transformers did not load the same model file (sha256 differs)")
    if env.get("threads") != hf["threads"]:
        warnings.append(f"thread counts differ: ours {env.get('threads')}, transformers {hf['threads']}")

    hf_runs = {k: [run_numbers(r["ttft_ms"], r["decode_step_ms"]) for r in c["runs"]] for k, c in hf["cases"].items()}
    our_b1 = [r for i in range(1, PAIRS + 1) for r in ours[f"b1_on_{i}"]["runs"]]
    our_bN = ours[f"b{B}"]["runs"]
    our_long = ours[f"ttft_{L}"]["runs"]

    def row(label, o, t, ratio, target, unit, note=""):
        return {"label": label, "ours": o, "transformers": t, "ratio": ratio, "target": target, "unit": unit,
                "verdict": verdict(ratio, target), "note": note}

    def speedup(o, t, higher_better):
        if not o or not t:
            return None
        return o["median"] / t["median"] if higher_better else t["median"] / o["median"]

    rows = {}
    o, t = ttft(our_b1), ttft(hf_runs["decode_b1"])
    rows["ttft_128"] = row(f"TTFT, {hf['cases']['decode_b1']['input_len']}-token prompt", o, t,
                           speedup(o, t, False), None, "ms")
    o, t = ttft(our_long), ttft(hf_runs[f"ttft_{L}"])
    rows[f"ttft_{L}"] = row(f"TTFT, {L}-token prompt", o, t, speedup(o, t, False), TARGETS["ttft_long"], "ms")
    o, t = tok_s(our_b1, 1), tok_s(hf_runs["decode_b1"], 1)
    rows["decode_b1"] = row("decode tok/s, batch 1", o, t, speedup(o, t, True), TARGETS["decode_b1"], "tok/s")
    o, t = tok_s(our_bN, B), tok_s(hf_runs[f"decode_b{B}"], B)
    rows[f"decode_b{B}"] = row(f"decode tok/s, batch {B}", o, t, speedup(o, t, True), TARGETS["decode_bN"], "tok/s")

    # Floors.
    bw = hf["bandwidth"]["bytes_per_s"]
    floor_ms = hf["decode_read_bytes"] / bw * 1e3
    our_step = summary([r["step_ms"] for r in our_b1])
    hf_step = summary([r["step_ms"] for r in hf_runs["decode_b1"]])
    flops = 2.0 * hf["params"] * L
    compute_ms = flops / hf["matmul"]["flop_per_s"] * 1e3
    our_long_ttft = rows[f"ttft_{L}"]["ours"]
    floors = {
        "decode_read_bytes": hf["decode_read_bytes"],
        "bandwidth_bytes_per_s": bw,
        "decode_floor_ms": floor_ms,
        "decode_floor_tok_s": 1e3 / floor_ms,
        "ours_step_ms": our_step,
        "transformers_step_ms": hf_step,
        "ours_fraction": floor_ms / our_step["median"] if our_step else None,
        "transformers_fraction": floor_ms / hf_step["median"] if hf_step else None,
        "prefill_flops": flops,
        "matmul_flop_per_s": hf["matmul"]["flop_per_s"],
        "prefill_floor_ms": compute_ms,
        "ours_prefill_fraction": compute_ms / our_long_ttft["median"] if our_long_ttft else None,
    }

    # Overhead: one figure per adjacent bare/on pair, 1 - on/bare; their mean, and as noise
    # twice the standard error of that mean (about a 95 % half-width).
    bare = [report_tok_s(ours[f"b1_bare_{i}"]["report"]) for i in range(1, PAIRS + 1)]
    on = [report_tok_s(ours[f"b1_on_{i}"]["report"]) for i in range(1, PAIRS + 1)]
    overhead = {"bare_tok_s": bare, "on_tok_s": on, "pct": None, "noise_pct": None}
    if all(bare) and all(on):
        pairs = [(1 - o / b) * 100 for b, o in zip(bare, on)]
        overhead["pair_pct"] = pairs
        overhead["pct"] = statistics.fmean(pairs)
        overhead["noise_pct"] = 2 * statistics.stdev(pairs) / math.sqrt(len(pairs))
        overhead["output_tok_s_bare"] = [ours[f"b1_bare_{i}"]["report"].get("output_tokens_per_s") for i in range(1, PAIRS + 1)]
        overhead["output_tok_s_on"] = [ours[f"b1_on_{i}"]["report"].get("output_tokens_per_s") for i in range(1, PAIRS + 1)]
        overhead["scrapes"] = [ours[f"b1_on_{i}"]["scrapes"] for i in range(1, PAIRS + 1)]
    overhead["verdict"] = verdict(overhead["pct"], TARGETS["overhead_pct"], below=True)
    if overhead["pct"] is not None:
        pct, noise, target = overhead["pct"], overhead["noise_pct"], TARGETS["overhead_pct"]
        if pct + noise < target:
            overhead["verdict"] = "PASS"
        elif pct - noise >= target:
            overhead["verdict"] = "MISS"
        else:
            overhead["verdict"] = "NOISY"  # the pairs cannot tell which side of the target


    # Other weights dtypes: the same workloads, and accuracy against f32.
    dtypes = {}
    for dt in a.dtypes.split():
        d = {"runs": {}}
        for case, name in (("b1", f"q_{dt}_b1"), (f"b{B}", f"q_{dt}_b{B}"), (f"ttft_{L}", f"q_{dt}_ttft_{L}")):
            if not os.path.exists(w(name + ".json")):
                continue  # f32-high runs no batch-N decode: its one-token steps are f32's
            rep = load_json(w(name + ".json"))
            runs = sample_runs(w(name + ".samples.jsonl"), rep["workload"]["batch"])
            d["runs"][case] = {"report": rep, "runs": runs}
            warnings += [f"{name}: {x}" for x in rep.get("warnings", [])]
        b1r = d["runs"]["b1"]["runs"]
        d["ttft_short"] = ttft(b1r)
        d["ttft_long"] = ttft(d["runs"][f"ttft_{L}"]["runs"])
        d["decode_b1"] = tok_s(b1r, 1)
        d["decode_bN"] = tok_s(d["runs"][f"b{B}"]["runs"], B) if f"b{B}" in d["runs"] else None
        d["weights_bytes"] = d["runs"]["b1"]["report"]["environment"].get("weights_bytes")
        d["floor_ms"] = d["weights_bytes"] / bw * 1e3 if d["weights_bytes"] else None
        step = summary([r["step_ms"] for r in b1r])
        d["floor_fraction"] = d["floor_ms"] / step["median"] if d["floor_ms"] and step else None
        hf_b1 = rows["decode_b1"]["transformers"]
        d["decode_b1_vs_transformers"] = d["decode_b1"]["median"] / hf_b1["median"] if d["decode_b1"] and hf_b1 else None
        f32_long = rows[f"ttft_{L}"]["ours"]
        d["prefill_vs_f32"] = f32_long["median"] / d["ttft_long"]["median"] if d["ttft_long"] and f32_long else None
        acc = load_json(w(f"acc_{dt}.json"))
        s_ = acc["summary"]
        early = 0
        for pr in acc["prompts"]:
            for i, (r, c, m) in enumerate(zip(pr["reference_tokens"], pr["candidate_tokens"], pr["reference_margin"])):
                if i < ACC_STEPS and r != c and m >= ACC_MARGIN:
                    early += 1
        d["accuracy"] = {
            "steps": s_["steps"],
            "prompts": s_["prompts"],
            "agreeing_steps": s_["agreeing_steps"],
            "real_disagreements": s_["real_disagreements"],
            "real_disagreements_first_steps": early,
            "identical_continuations": s_["identical_continuations"],
            "mean_abs_logit_diff": s_["mean_abs_logit_diff"],
            "max_abs_logit_diff": s_["max_abs_logit_diff"],
            "raw": acc,
        }
        dtypes[dt] = d
    # f32 with --matmul-precision high against transformers with torch's "high" (which
    # leaves CPU matmuls IEEE f32): TTFT of the same prompts.
    if "f32-high" in dtypes:
        hi = dtypes["f32-high"]
        short = hf["cases"]["decode_b1"]["input_len"]
        for key, o, n, target in (("ttft_short_high", hi["ttft_short"], short, None),
                                  ("ttft_long_high", hi["ttft_long"], L, TARGETS["ttft_long"])):
            t = ttft(hf_runs.get(f"ttft_{n}_high", []))
            rows[key] = row(f"TTFT {n}, precision high", o, t, speedup(o, t, False), target, "ms")
    quant = [d for k, d in dtypes.items() if k in ("int8", "int4")]
    quant_targets = {}
    if quant:
        best = max((d["decode_b1_vs_transformers"] or 0) for d in quant)
        quant_targets["decode_b1"] = {"value": best, "target": TARGETS["quant_decode_b1"],
                                      "verdict": verdict(best, TARGETS["quant_decode_b1"])}
        worst = min((d["prefill_vs_f32"] or 0) for d in quant)
        quant_targets["prefill"] = {"value": worst, "target": TARGETS["quant_prefill"],
                                    "verdict": verdict(worst, TARGETS["quant_prefill"])}
        bad = sum(d["accuracy"]["real_disagreements_first_steps"] for d in quant)
        quant_targets["greedy"] = {"value": bad, "target": 0, "verdict": "PASS" if bad == 0 else "MISS"}

    took = time.time() - a.started
    machine = {
        "cpu_model": env.get("cpu_model") or hf["cpu_model"],
        "cores": env.get("cores") or hf["cores"],
        "threads": env.get("threads"),
        "run_on": env.get("run_on"),
        "device_name": env.get("device_name"),
        "torch": env.get("torch_version") or hf["torch_version"],
        "transformers": hf["transformers_version"],
        "load_average_before": a.load_before,
    }

    # The table.
    out = sys.stdout
    print(f"scripts/bench: {env.get('model')} (dequantised to f32); ours vs transformers "
          f"{hf['transformers_version']} ({hf['attn_implementation']} attention, {hf['dtype']})", file=out)
    dev = "" if machine["run_on"] == "cpu" else f", {machine['device_name']}"
    print(f"machine: {machine['cpu_model']}, {machine['cores']} cores, {machine['threads']} threads, "
          f"run on {machine['run_on']}{dev}; torch {machine['torch']}", file=out)
    print(f"each figure: median [min-max] over runs, after 1 warm-up run", file=out)
    print(file=out)
    hdr = f"{'':28} {'ours':>28} {'transformers':>28} {'ratio':>7} {'target':>8}  "
    print(hdr, file=out)
    order = ["ttft_128", "ttft_short_high", f"ttft_{L}", "ttft_long_high"]
    for r in [rows[k] for k in order if k in rows] + [v for k, v in rows.items() if k not in order]:
        unit = r["unit"]
        digits = 0 if unit == "ms" and r["ours"] and r["ours"]["median"] >= 100 else 1
        tgt = f">={r['target']:.2f}x" if r["target"] else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        print(f"{r['label']:28} {fmt(r['ours'], unit, digits):>28} {fmt(r['transformers'], unit, digits):>28} "
              f"{ratio:>7} {tgt:>8}  {r['verdict']}", file=out)
    f = floors
    frac = f"{f['ours_fraction']:.2f}" if f["ours_fraction"] else "-"
    print(f"{'decode b1 vs bandwidth floor':28} {fmt(f['ours_step_ms'], 'ms', 1):>28} "
          f"{'floor ' + format(f['decode_floor_ms'], '.1f') + ' ms':>28} {frac:>7} "
          f"{'>=' + format(TARGETS['bandwidth_floor'], '.2f'):>8}  {verdict(f['ours_fraction'], TARGETS['bandwidth_floor'])}",
          file=out)
    pfrac = f"{f['ours_prefill_fraction']:.2f}" if f["ours_prefill_fraction"] else "-"
    print(f"{f'prefill {L} vs compute floor':28} {fmt(our_long_ttft, 'ms', 0):>28} "
          f"{'floor ' + format(f['prefill_floor_ms'], '.0f') + ' ms':>28} {pfrac:>7} {'-':>8}  info", file=out)
    ov = overhead
    if ov["pct"] is not None:
        both = lambda xs: "/".join(f"{x:.0f}" for x in xs)  # noqa: E731
        print(f"{'overhead: samples + metrics':28} {'on ' + both(ov['on_tok_s']) + ' tok/s':>28} "
              f"{'bare ' + both(ov['bare_tok_s']) + ' tok/s':>28} {format(ov['pct'], '+.1f') + '%':>7} "
              f"{'<' + format(TARGETS['overhead_pct'], '.0f') + '%':>8}  {ov['verdict']} "
              f"(+-{ov['noise_pct']:.1f}%)", file=out)
    print(file=out)
    print(f"floor: {f['decode_read_bytes'] / 1e6:.0f} MB of f32 weights read per decode step "
          f"(tied LM head counted once) at {f['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s measured copy bandwidth "
          f"= {f['decode_floor_ms']:.1f} ms/token ({f['decode_floor_tok_s']:.1f} tok/s); transformers reaches "
          f"{f['transformers_fraction']:.2f} of it", file=out)
    print(f"compute: 2 x {hf['params'] / 1e6:.1f} M params x {L} tokens at "
          f"{f['matmul_flop_per_s'] / 1e9:.0f} GFLOP/s (f32 matmul, measured)", file=out)
    if dtypes:
        print(file=out)
        print(f"weights dtypes (ours; int8/int4 with bf16 activations; f32-high: f32 at --matmul-precision high; "
              f"'x HF' is decode b1 over transformers f32; "
              f"accuracy against our f32 on {next(iter(dtypes.values()))['accuracy']['prompts']} fixture prompts)", file=out)
        print(f"{'dtype':8} {'TTFT ' + str(hf['cases']['decode_b1']['input_len']):>11} {'TTFT ' + str(L):>11} "
              f"{'decode b1':>13} {'x HF':>6} {'decode b' + str(B):>13} {'weights':>9} {'floor':>6} "
              f"{'argmax =':>9} {'disagree':>9} {'mean|dl|':>9} {'max|dl|':>8}", file=out)
        f32_row = {"ttft_short": rows["ttft_128"]["ours"], "ttft_long": rows[f"ttft_{L}"]["ours"],
                   "decode_b1": rows["decode_b1"]["ours"], "decode_bN": rows[f"decode_b{B}"]["ours"],
                   "weights_bytes": env.get("weights_bytes"), "floor_fraction": floors["ours_fraction"],
                   "decode_b1_vs_transformers": rows["decode_b1"]["ratio"], "accuracy": None}
        # Fixed digits, or two significant ones for differences too small to show so.
        small = lambda x, d: format(x, f".{d}f") if x == 0 or x >= 10 ** -d else format(x, ".1e")  # noqa: E731
        med = lambda x, d=0: "-" if not x else format(x["median"], f".{d}f")  # noqa: E731
        for name, d in [("f32", f32_row)] + list(dtypes.items()):
            acc = d["accuracy"]
            print(f"{name:8} {med(d['ttft_short']) + ' ms':>11} {med(d['ttft_long']) + ' ms':>11} "
                  f"{med(d['decode_b1'], 1) + ' tok/s':>13} "
                  f"{(format(d['decode_b1_vs_transformers'], '.2f') + 'x') if d['decode_b1_vs_transformers'] else '-':>6} "
                  f"{med(d['decode_bN'], 1) + ' tok/s':>13} "
                  f"{(format(d['weights_bytes'] / 1e6, '.0f') + ' MB') if d['weights_bytes'] else '-':>9} "
                  f"{format(d['floor_fraction'], '.2f') if d['floor_fraction'] else '-':>6} "
                  f"{(str(acc['agreeing_steps']) + '/' + str(acc['steps'])) if acc else 'ref':>9} "
                  f"{str(acc['real_disagreements']) if acc else '-':>9} "
                  f"{small(acc['mean_abs_logit_diff'], 3) if acc else '-':>9} "
                  f"{small(acc['max_abs_logit_diff'], 2) if acc else '-':>8}", file=out)
        qt = quant_targets
        if qt:
            print(f"int8/int4 targets: best decode b1 {qt['decode_b1']['value']:.2f}x transformers f32 "
                  f"(>= {TARGETS['quant_decode_b1']}x) {qt['decode_b1']['verdict']}; "
                  f"slowest {L}-token prefill {qt['prefill']['value']:.2f}x our f32 speed (>= 1.00x) {qt['prefill']['verdict']}; "
                  f"greedy disagreements in the first {ACC_STEPS} steps at f32 margin >= {ACC_MARGIN}: "
                  f"{qt['greedy']['value']} {qt['greedy']['verdict']}", file=out)
        print("floor: share of the memory-bandwidth floor for that dtype's stored weight bytes; "
              "disagree: argmax differs where f32's top-2 margin >= 0.1 (over all steps); "
              "|dl|: logit difference over the whole vocabulary", file=out)
    for x in warnings:
        print(f"warning: {x.split('; ')[0].split('. ')[0]}", file=out)
    print(f"took {int(took // 60)}m{int(took % 60):02d}s (set-up {a.setup_s:.0f} s); raw numbers in "
          f"{os.path.relpath(a.out)}", file=out)

    result = {
        "schema_version": 1,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.started)),
        "took_s": took,
        "setup_s": a.setup_s,
        "machine": machine,
        "targets": TARGETS,
        "results": rows,
        "floors": floors,
        "overhead": overhead,
        "dtypes": dtypes,
        "quant_targets": quant_targets,
        "warnings": warnings,
        "raw": {"ours": ours, "transformers": hf},
    }
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
