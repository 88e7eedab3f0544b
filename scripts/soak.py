"""Long-run check of `profiler run`: memory, file descriptors and scrape latency over time.

Usage: soak.py PROFILER_BINARY DURATION_S BASELINE_S OUT_DIR

Starts `profiler run --duration DURATION_S --metrics-addr 127.0.0.1:PORT` on the default
model, scrapes /metrics every 5 s while it runs, and records the process's RSS, open file
descriptors and the scrape latency into OUT_DIR/soak.csv. At the end it compares RSS at the
end with RSS at BASELINE_S (after warm-up): growth must stay under 2 %, every scrape must
succeed, and the run must exit 0. Exit status 0 when all hold.
"""

import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def main():
    binary, duration, baseline, out_dir = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    os.makedirs(out_dir, exist_ok=True)
    port = free_port()
    report = os.path.join(out_dir, "report.json")
    cmd = [binary, "run", "--model", "llama", "--run-on", "cpu", "--duration", f"{int(duration)}s",
           "--input-len", "128", "--output-len", "32", "--metrics-addr", f"127.0.0.1:{port}",
           "--no-host-check", "-q", "--format", "json", "--out", report,
           "--samples", os.path.join(out_dir, "samples.jsonl")]
    if os.environ.get("SOAK_THREADS"):
        cmd += ["--threads", os.environ["SOAK_THREADS"]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    rows, failures = [], 0
    start = time.monotonic()
    try:
        while proc.poll() is None:
            time.sleep(5)
            t = time.monotonic() - start
            if t >= duration:
                # The run is finishing (report, server shutdown): memory and descriptors
                # are being released and the endpoint closes, which is not what is judged.
                continue
            try:
                rss = rss_kib(proc.pid)
                fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            except (FileNotFoundError, ProcessLookupError):
                break
            if rss is None:
                break  # exiting (a zombie has no VmRSS)
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    ok = r.status == 200 and b"profiler_generated_tokens_total" in r.read()
            except OSError:
                ok = False  # before the endpoint is up (model loading) or a failure
            scrape_ms = (time.monotonic() - t0) * 1000
            if not ok and t > 20 and proc.poll() is None:
                failures += 1
            rows.append((round(t, 1), rss, fds, round(scrape_ms, 2), int(ok)))
    finally:
        if proc.poll() is None:
            proc.terminate()
        code = proc.wait()
    with open(os.path.join(out_dir, "soak.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "rss_kib", "open_fds", "scrape_ms", "scrape_ok"])
        w.writerows(rows)
    after = [r for r in rows if r[0] >= baseline and r[1]]
    if len(after) < 2:
        print(f"soak: too few samples after {baseline:.0f} s to judge", file=sys.stderr)
        return 1
    base, end = after[0][1], after[-1][1]
    growth = (end - base) / base * 100
    fds = sorted({r[2] for r in after})
    lat = sorted(r[3] for r in rows if r[4])
    try:
        with open(report) as f:
            requests = json.load(f)["requests"]
    except (OSError, ValueError, KeyError) as e:
        print(f"soak: FAIL: no report from the run (exit {code}): {e}", file=sys.stderr)
        return 1
    p = lambda q: lat[min(len(lat) - 1, int(q * (len(lat) - 1)))] if lat else float("nan")
    print(f"soak: {duration:.0f} s run, {requests} requests, {len(rows)} samples, exit {code}")
    print(f"soak: RSS {base} KiB at {after[0][0]:.0f} s -> {end} KiB at {after[-1][0]:.0f} s: {growth:+.2f}% (limit 2%)")
    print(f"soak: open fds seen after warm-up: {fds}")
    print(f"soak: scrape latency ms p50 {p(0.5):.2f} p99 {p(0.99):.2f} max {max(lat) if lat else float('nan'):.2f}; failed scrapes {failures}")
    passed = code == 0 and growth < 2.0 and failures == 0 and fds[-1] - fds[0] <= 4
    print("soak: PASS" if passed else "soak: FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
