"""Start-up and speed of the commands that run no inference (scripts/bench, first section).

Each command runs `--runs` times after one warm-up; the figure is the median wall time
with the min-max spread. `profiler-engine --version` (the same command line linked with
libtorch, which loads it and its CUDA libraries at start) is measured in the same run as
the reference: the ratio says what handing inference to it saves the other commands.
Targets: `profiler --version` under 50 ms, `profiler compare --device all` (no plot) under
100 ms, `simulate` of 10,000 requests under 100 ms, `plan` over every instance of every
profile under 2 s (whole processes: start-up included).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def timed(cmd, runs):
    """Median, min and max wall seconds of `runs` runs of `cmd` after one warm-up."""
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    prof = os.path.join(a.bin_dir, "profiler")
    engine = os.path.join(a.bin_dir, "profiler-engine")
    cases = [
        ("profiler --version", [prof, "--version"], 0.050),
        ("profiler devices", [prof, "devices"], None),
        ("profiler models", [prof, "models"], None),
        (
            "profiler project (llama-3.1-8b, all profiles)",
            [prof, "project", "--model", "llama-3.1-8b", "--device", "all", "--format", "json"],
            None,
        ),
        (
            "profiler compare --device all (llama-3.1-70b, no plot)",
            [prof, "compare", "--model", "llama-3.1-70b", "--device", "all", "--format", "json"],
            0.100,
        ),
        (
            "profiler simulate, 10,000 requests (inf2.48xlarge, 3 x TP 8, 8 slots)",
            [prof, "simulate", "--model", "llama-3.1-8b", "--device", "inf2-profile",
             "--instance", "inf2.48xlarge", "--tp", "8", "--dp", "3", "--max-num-seqs", "8",
             "--seq-len", "2048", "--input-len", "1500", "--output-len", "250", "--rate", "5",
             "--requests", "10000", "--format", "json"],
            0.100,
        ),
        (
            "profiler plan --device all (Llama-3.1-8B, 5 req/s, p99 TTFT < 2 s)",
            [prof, "plan", "--model", "llama-3.1-8b", "--device", "all", "--rate", "5",
             "--input-len", "1500", "--output-len", "250", "--slo-ttft-ms", "2000",
             "--slo-percentile", "99", "--format", "json"],
            2.0,
        ),
    ]
    rows = []
    ref = timed([engine, "--version"], a.runs) if os.path.exists(engine) else None
    for name, cmd, target in cases:
        runs = a.runs if target is None or target < 1 else max(3, a.runs // 4)
        med, lo, hi = timed(cmd, runs)
        rows.append({"command": name, "median_s": med, "min_s": lo, "max_s": hi, "target_s": target})
    print(f"Commands without inference: median wall time of {a.runs} runs (min-max)")
    print(f"{'command':58} {'median':>9} {'min-max':>17}  target")
    for r in rows:
        verdict = ""
        if r["target_s"] is not None:
            ok = r["median_s"] < r["target_s"]
            verdict = f"< {r['target_s'] * 1e3:.0f} ms {'PASS' if ok else 'MISS'}"
        print(
            f"{r['command']:58} {r['median_s'] * 1e3:7.1f}ms "
            f"{r['min_s'] * 1e3:7.1f}-{r['max_s'] * 1e3:.1f}ms  {verdict}"
        )
    if ref:
        print(
            f"{'reference: profiler-engine --version (loads libtorch)':58} {ref[0] * 1e3:7.1f}ms "
            f"{ref[1] * 1e3:7.1f}-{ref[2] * 1e3:.1f}ms  "
            f"({ref[0] / rows[0]['median_s']:.0f}x profiler --version)"
        )
    with open(a.out, "w") as f:
        json.dump(
            {
                "runs": a.runs,
                "commands": rows,
                "reference_engine_version": None
                if ref is None
                else {"median_s": ref[0], "min_s": ref[1], "max_s": ref[2]},
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    sys.exit(main())
