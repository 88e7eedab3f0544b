"""Long-run check of `profiler serve` under overload: memory, descriptors and slots.

Usage: soak_serve.py PROFILER_BINARY DURATION_S BASELINE_S OUT_DIR

Starts `profiler serve` on the default model (4 slots, a queue of 8) on a free loopback
port and, for DURATION_S, drives it with 8 client threads (twice the slots), each sending
in turn: streamed completions read to the end, streamed completions abandoned after their
first event, requests abandoned before any answer, malformed or oversized bodies, and
requests too long for a slot. Every 5 s it records the server's RSS, open descriptors, busy
slots and queue depth (OUT_DIR/soak_serve.csv). At the end the load stops and it passes when:
RSS at the end is within 2 % of RSS at BASELINE_S (after warm-up); descriptors do not grow;
busy slots and queue return to 0; every malformed or too-long request got a 4xx with a JSON
`error`; every other answer is 200 or a 503 for a full queue; and the server stops on
SIGINT with exit 0. Standard library only; traffic to 127.0.0.1 only.
"""

import csv
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soak import free_port, rss_kib  # noqa: E402

SLOTS, QUEUE, SEQ_LEN, CLIENTS = 4, 8, 256, 8
MODEL = "llama"


def metrics(port):
    """Busy slots and queue depth from /metrics, or None when it does not answer."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
    except OSError:
        return None
    got = {}
    for line in text.splitlines():
        for name in ("profiler_busy_slots", "profiler_queue_depth"):
            if line.startswith(name + " ") or line.startswith(name + "{"):
                got[name] = float(line.rsplit(" ", 1)[1])
    return got.get("profiler_busy_slots"), got.get("profiler_queue_depth")


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.bad = []

    def add(self, key, problem=None):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            if problem:
                self.bad.append(problem)


def completion(prompt, max_tokens, stream=True):
    return json.dumps({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens,
                       "stream": stream, "ignore_eos": True}).encode()


def client(port, idx, stop, tally, prompts):
    """One client: cycles through the kinds of request until `stop` is set."""
    kinds = ["full", "full", "abandon_stream", "full", "malformed", "abandon_early",
             "full", "too_long", "nonstream"]
    i = idx
    while not stop.is_set():
        kind = kinds[i % len(kinds)]
        prompt = prompts[i % len(prompts)]
        i += 1
        try:
            if kind == "abandon_early":
                # The request goes out; the connection closes before any answer.
                body = completion(prompt, 16)
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                              b"application/json\r\nContent-Length: "
                              + str(len(body)).encode() + b"\r\n\r\n" + body)
                tally.add(kind)
                continue
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            if kind == "malformed":
                bodies = [b"{\"model\": ", b"[1, 2, 3]", b"{\"model\": \"llama\", \"prompt\": 7}",
                          b"\xff\xfe not json", b"{" + b"\"x\": 1," * 300000 + b"\"y\": 2}"]
                body = bodies[i % len(bodies)]
            elif kind == "too_long":
                body = completion(prompt, SEQ_LEN * 2, stream=False)
            elif kind == "nonstream":
                body = completion(prompt, 8, stream=False)
            else:
                body = completion(prompt, 24)
            c.request("POST", "/v1/completions", body=body,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            if kind in ("malformed", "too_long"):
                data = r.read()
                ok = 400 <= r.status < 500
                try:
                    ok = ok and "error" in json.loads(data)
                except ValueError:
                    ok = False
                tally.add(kind, None if ok else f"{kind}: {r.status} {data[:120]!r}")
            elif r.status == 503:
                r.read()
                tally.add("queue_full")
                time.sleep(0.2)  # a client told the queue is full waits a little
            elif r.status != 200:
                tally.add(kind, f"{kind}: unexpected {r.status} {r.read()[:120]!r}")
            elif kind == "abandon_stream":
                r.readline()  # the first event, then hang up mid-stream
                tally.add(kind)
            else:
                r.read()
                tally.add(kind)
            c.close()
        except OSError as e:
            tally.add("client_error", f"{kind}: {e}")
            time.sleep(0.5)


def main():
    binary, duration, baseline, out_dir = (sys.argv[1], float(sys.argv[2]),
                                           float(sys.argv[3]), sys.argv[4])
    os.makedirs(out_dir, exist_ok=True)
    port = free_port()
    samples = os.path.join(out_dir, "serve_samples.jsonl")
    if os.path.exists(samples):
        os.remove(samples)
    cmd = [binary, "serve", "--model", MODEL, "--run-on", "cpu", "--addr", f"127.0.0.1:{port}",
           "--max-num-seqs", str(SLOTS), "--seq-len", str(SEQ_LEN), "--max-queue", str(QUEUE),
           "--samples", samples, "-q"]
    if os.environ.get("SOAK_THREADS"):
        cmd += ["--threads", os.environ["SOAK_THREADS"]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while metrics(port) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            print("soak-serve: FAIL: the server did not come up", file=sys.stderr)
            proc.kill()
            return 1
        time.sleep(0.5)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models",
                           "corpus.txt")) as f:
        words = f.read().split()
    prompts = [" ".join(words[i * 7:i * 7 + 20 + i % 40]) for i in range(50)]
    stop, tally = threading.Event(), Tally()
    threads = [threading.Thread(target=client, args=(port, k, stop, tally, prompts), daemon=True)
               for k in range(CLIENTS)]
    for t in threads:
        t.start()
    rows, start = [], time.monotonic()
    try:
        while time.monotonic() - start < duration and proc.poll() is None:
            time.sleep(5)
            t = time.monotonic() - start
            rss = rss_kib(proc.pid)
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            m = metrics(port) or (None, None)
            rows.append((round(t, 1), rss, fds, m[0], m[1]))
        stop.set()
        for t in threads:
            t.join(timeout=150)
        # Abandoned requests finish or are dropped within a few steps: slots and queue empty.
        idle_deadline, idle = time.monotonic() + 60, None
        while time.monotonic() < idle_deadline:
            idle = metrics(port)
            if idle == (0.0, 0.0):
                break
            time.sleep(1)
        end_rss = rss_kib(proc.pid)
        end_fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    with open(os.path.join(out_dir, "soak_serve.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "rss_kib", "open_fds", "busy_slots", "queue_depth"])
        w.writerows(rows)
    after = [r for r in rows if r[0] >= baseline and r[1]]
    if not after:
        print(f"soak-serve: FAIL: no sample after {baseline:.0f} s", file=sys.stderr)
        return 1
    base = after[0][1]
    peak = max(r[1] for r in after)
    growth = (peak - base) / base * 100
    fds = sorted({r[2] for r in after})
    served = sum(v for k, v in tally.counts.items() if k in ("full", "nonstream"))
    print(f"soak-serve: {duration:.0f} s, {CLIENTS} clients on {SLOTS} slots; requests: "
          + ", ".join(f"{k} {v}" for k, v in sorted(tally.counts.items())))
    print(f"soak-serve: RSS {base} KiB at {after[0][0]:.0f} s, peak after it {peak} KiB: "
          f"{growth:+.2f}% (limit 2%); at the end {end_rss} KiB")
    print(f"soak-serve: open fds after warm-up {fds}, after the load {end_fds}; "
          f"busy slots and queue after the load {idle}; server exit {code}")
    for b in tally.bad[:10]:
        print(f"soak-serve: bad answer: {b}")
    passed = (code == 0 and growth < 2.0 and idle == (0.0, 0.0) and not tally.bad
              and fds[-1] - fds[0] <= 4 + CLIENTS and served > 0
              and tally.counts.get("malformed", 0) > 0)
    print("soak-serve: PASS" if passed else "soak-serve: FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
