//! `profiler serve` measured by real load generators, GuideLLM and AIPerf (installed pinned
//! by `scripts/clients guidellm aiperf`, which scripts/test runs), each on loopback for a
//! short bounded load of streaming completions with prompts cut from the shipped corpus:
//! every request succeeds; the client's token counts equal ours and what was asked; and the
//! client's TTFT and inter-token latency, taken by the client's own documented definition,
//! agree with the server's samples file for the same requests.
//!
//! Pairing: the prompts have distinct token lengths (tests/clients/corpus_prompts.py), so a
//! request of the client's report and a line of our samples file are the same request when
//! their prompt lengths are equal.
//!
//! Tolerances (not speed thresholds: both sides time the same requests):
//! - per request, the client's TTFT and latency are at least ours (less 1 ms of clock
//!   rounding): the client starts its clock before it sends the request, which the server
//!   has whole only later, and sees a token only after the server sampled it;
//! - mean TTFT: the client's exceeds ours by at most 10% of ours plus one mean decode step
//!   (sending and parsing the request before the server's clock starts, and framing and
//!   delivering one server-sent event after the token; measured 0.1-1.6% here);
//! - mean inter-token latency: within 5% of ours. Per request the two differ by the
//!   difference of the delivery delays of the first and last tokens spread over the n - 1
//!   gaps, not by any per-token cost (measured within 0.3% here).
//!
//! `PROFILER_CLIENTS_OUT=DIR` keeps each client's output files and our samples there (how
//! tests/fixtures/clients/ was made).

#[path = "../common/mod.rs"]
mod common;

use common::http::Server;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Requests per load: some tens in all, bounded.
const REQUESTS: usize = 16;
/// Closed-loop streams, as many as the server's slots.
const CONCURRENCY: usize = 4;
/// Open-loop Poisson rate (requests per second): below this CPU's capacity at 4 slots.
const RATE: f64 = 0.5;

/// The clients are run one at a time: each shares the CPU with its server.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn client_bin(venv: &str, bin: &str) -> PathBuf {
    let p = common::home().join(format!(".venv-clients/{venv}/bin/{bin}"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/clients {venv} (scripts/test does)",
        p.display()
    );
    p
}

/// `profiler serve` on the default model with a samples file, 4 slots of 256 positions.
/// One libtorch thread: the client's processes share the CPU, and OpenMP workers spinning
/// against them slowed decode steps tenfold on a busy 2-core machine.
fn server(samples: &Path) -> Server {
    Server::start(&[
        "--max-num-seqs",
        &CONCURRENCY.to_string(),
        "--seq-len",
        "256",
        "--threads",
        "1",
        "--samples",
        &common::path_str(samples),
    ])
}

/// The model's tokenizer as a Hugging Face folder, for the clients (no hub).
fn export_tokenizer(dir: &Path) -> PathBuf {
    let out = dir.join("tokenizer");
    common::run_ok(&[
        "export-tokenizer",
        "--model",
        "llama",
        "--out",
        &common::path_str(&out),
    ]);
    out
}

fn run_driver(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// The request lines of our samples file, in the order they ended.
fn our_samples(p: &Path) -> Vec<Value> {
    read_jsonl(p)
        .into_iter()
        .filter(|v| v["kind"] == "sample")
        .collect()
}

fn f(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

fn u(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} is not a count: {v}"))
}

/// One request as the client measured it, in the client's own terms.
#[derive(Debug)]
struct Measured {
    prompt_tokens: u64,
    /// Output tokens as the client counts them (its tokenizer, or the server's usage).
    output_tokens: u64,
    /// `usage.completion_tokens` the client received, where it reports it.
    usage_output_tokens: Option<u64>,
    ttft_ms: f64,
    /// From the client's clock start to the last token.
    latency_ms: f64,
    itl_ms: f64,
}

/// One of our sample lines.
#[derive(Debug)]
struct Ours {
    prompt_tokens: u64,
    output_tokens: u64,
    ttft_ms: f64,
    e2e_ms: f64,
}

impl Ours {
    fn of(s: &Value) -> Ours {
        assert_eq!(s["status"], "ok", "a request failed on the server: {s}");
        Ours {
            prompt_tokens: u(&s["prompt_tokens"], "prompt_tokens"),
            output_tokens: u(&s["output_tokens"], "output_tokens"),
            ttft_ms: f(&s["ttft_ms"], "ttft_ms"),
            e2e_ms: f(&s["e2e_ms"], "e2e_ms"),
        }
    }
    /// Time per output token after the first (vLLM's TPOT, `profiler report`'s).
    fn tpot_ms(&self) -> f64 {
        (self.e2e_ms - self.ttft_ms) / (self.output_tokens - 1) as f64
    }
}

/// What was asked: requests.jsonl from tests/clients/corpus_prompts.py.
struct Asked {
    prompt_tokens: u64,
    max_tokens: u64,
}

fn asked(dir: &Path) -> Vec<Asked> {
    read_jsonl(&dir.join("requests.jsonl"))
        .iter()
        .map(|r| Asked {
            prompt_tokens: u(&r["prompt_tokens"], "prompt_tokens"),
            max_tokens: u(&r["max_tokens"], "max_tokens"),
        })
        .collect()
}

/// Pairs every measured request with our sample and the asked row of the same prompt
/// length, checking the token counts exactly on the way.
fn pair<'a>(
    client: &str,
    measured: &'a [Measured],
    ours: &'a [Ours],
    asked: &[Asked],
) -> Vec<(&'a Measured, &'a Ours, u64)> {
    assert_eq!(measured.len(), REQUESTS, "{client}: requests measured");
    assert_eq!(ours.len(), REQUESTS, "{client}: requests in our samples");
    let mut pairs = Vec::new();
    for m in measured {
        let o = ours
            .iter()
            .find(|o| o.prompt_tokens == m.prompt_tokens)
            .unwrap_or_else(|| {
                panic!(
                    "{client}: no request of ours has the client's {} prompt tokens: {m:?}",
                    m.prompt_tokens
                )
            });
        let a = asked
            .iter()
            .find(|a| a.prompt_tokens == m.prompt_tokens)
            .unwrap_or_else(|| {
                panic!(
                    "{client}: no prompt of {} tokens was asked (the client counts prompts unlike the tokenizer)",
                    m.prompt_tokens
                )
            });
        // ignore_eos: every request runs to its max_tokens.
        assert_eq!(o.output_tokens, a.max_tokens, "{client}: our output tokens");
        if let Some(n) = m.usage_output_tokens {
            assert_eq!(n, o.output_tokens, "{client}: usage.completion_tokens");
        }
        // Causality: the client's interval holds the server's.
        assert!(
            m.ttft_ms >= o.ttft_ms - 1.0,
            "{client}: client TTFT {} ms below the server's {} ms",
            m.ttft_ms,
            o.ttft_ms
        );
        assert!(
            m.latency_ms >= o.e2e_ms - 1.0,
            "{client}: client latency {} ms below the server's e2e {} ms",
            m.latency_ms,
            o.e2e_ms
        );
        pairs.push((m, o, a.max_tokens));
    }
    let mut seen: Vec<u64> = pairs.iter().map(|(m, _, _)| m.prompt_tokens).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), REQUESTS, "{client}: a request measured twice");
    pairs
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

/// The agreement of the means, with the tolerances of the module's comment. `client_*` are
/// the client's own aggregates; `ours_*` the same statistics of our samples.
fn agree(client: &str, client_ttft: f64, ours_ttft: f64, client_itl: f64, ours_itl: f64) {
    let d_ttft = client_ttft - ours_ttft;
    eprintln!(
        "{client}: mean TTFT {client_ttft:.2} ms (ours {ours_ttft:.2}, {:+.2} ms, {:+.2}%); mean ITL {client_itl:.3} ms (ours {ours_itl:.3}, {:+.3}%)",
        d_ttft,
        100.0 * d_ttft / ours_ttft,
        100.0 * (client_itl / ours_itl - 1.0)
    );
    assert!(
        d_ttft >= -1.0 && d_ttft <= 0.10 * ours_ttft + ours_itl,
        "{client}: mean TTFT {client_ttft} ms against our {ours_ttft} ms"
    );
    assert!(
        (client_itl / ours_itl - 1.0).abs() <= 0.05,
        "{client}: mean inter-token latency {client_itl} ms against our {ours_itl} ms"
    );
}

fn keep(files: &[&Path], sub: &str) {
    let Some(dir) = std::env::var_os("PROFILER_CLIENTS_OUT") else {
        return;
    };
    let dir = PathBuf::from(dir).join(sub);
    std::fs::create_dir_all(&dir).unwrap();
    for f in files {
        std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
    }
}

/// GuideLLM's report: one benchmark; per request (`requests.successful`)
/// `time_to_first_token_ms` = first token seen − request sent, `inter_token_latency_ms` =
/// (last token − first token) / (output tokens − 1), `time_per_output_token_ms` = (last
/// token − request sent) / output tokens (guidellm/schemas/base/request_stats.py); the means
/// in `metrics` weight ITL by output tokens − 1 and TPOT by output tokens
/// (guidellm/benchmark/schemas/metrics.py). Output tokens are the server's usage.
fn guidellm_load(base: &str, tok: &Path, dir: &Path, samples: &Path, load: &str, before: usize) {
    let out = dir.join(load.split(':').next().unwrap());
    let mut cmd = Command::new(client_bin("guidellm", "python"));
    cmd.arg(common::home().join("tests/clients/guidellm_run.py"))
        .arg(base)
        .arg(tok)
        .arg(common::home().join("models/corpus.txt"))
        .arg(&out)
        .arg(load)
        .arg(REQUESTS.to_string());
    let report_path = PathBuf::from(run_driver(cmd, "guidellm_run.py").trim());
    let report = read_json(&report_path);
    let b = &report["benchmarks"][0];
    let reqs = &b["requests"];
    for k in ["errored", "incomplete"] {
        assert_eq!(
            reqs[k].as_array().map_or(0, Vec::len),
            0,
            "GuideLLM {load}: {k} requests: {}",
            reqs[k]
        );
    }
    let measured: Vec<Measured> = reqs["successful"]
        .as_array()
        .expect("requests.successful")
        .iter()
        .map(|r| {
            let t = &r["info"]["timings"];
            let start = f(&t["request_start"], "request_start");
            let last = f(&t["last_token_iteration"], "last_token_iteration");
            Measured {
                prompt_tokens: u(&r["prompt_tokens"], "prompt_tokens"),
                output_tokens: u(&r["output_tokens"], "output_tokens"),
                usage_output_tokens: Some(u(&r["output_tokens"], "output_tokens")),
                ttft_ms: f(&r["time_to_first_token_ms"], "time_to_first_token_ms"),
                latency_ms: 1000.0 * (last - start),
                itl_ms: f(&r["inter_token_latency_ms"], "inter_token_latency_ms"),
            }
        })
        .collect();
    let all = our_samples(samples);
    assert!(all.len() >= before + REQUESTS, "our samples: {}", all.len());
    let ours: Vec<Ours> = all[before..before + REQUESTS]
        .iter()
        .map(Ours::of)
        .collect();
    let asked = asked(&out);
    let pairs = pair(&format!("GuideLLM {load}"), &measured, &ours, &asked);
    for (m, _, want) in &pairs {
        assert_eq!(m.output_tokens, *want, "GuideLLM {load}: output tokens");
    }

    let metric = |k: &str| f(&b["metrics"][k]["successful"]["mean"], k);
    // Our reading of GuideLLM's definitions, checked on its own numbers first.
    let gaps = |n: u64| (n - 1) as f64;
    let itl_weighted = pairs
        .iter()
        .map(|(m, _, _)| m.itl_ms * gaps(m.output_tokens))
        .sum::<f64>()
        / pairs
            .iter()
            .map(|(m, _, _)| gaps(m.output_tokens))
            .sum::<f64>();
    let client_itl = metric("inter_token_latency_ms");
    assert!(
        (itl_weighted / client_itl - 1.0).abs() < 1e-6,
        "GuideLLM's mean ITL {client_itl} is not its requests' ITL weighted by output tokens - 1 ({itl_weighted})"
    );
    let client_ttft = metric("time_to_first_token_ms");
    let ttft_mean = mean(pairs.iter().map(|(m, _, _)| m.ttft_ms));
    assert!(
        (ttft_mean / client_ttft - 1.0).abs() < 1e-6,
        "GuideLLM mean TTFT"
    );

    let ours_ttft = mean(pairs.iter().map(|(_, o, _)| o.ttft_ms));
    let ours_itl = pairs
        .iter()
        .map(|(_, o, _)| o.tpot_ms() * gaps(o.output_tokens))
        .sum::<f64>()
        / pairs
            .iter()
            .map(|(_, o, _)| gaps(o.output_tokens))
            .sum::<f64>();
    agree(
        &format!("GuideLLM {load}"),
        client_ttft,
        ours_ttft,
        client_itl,
        ours_itl,
    );
    // GuideLLM's TPOT counts the first token: last token − request sent, over all tokens.
    let client_tpot = metric("time_per_output_token_ms");
    let ours_tpot = pairs.iter().map(|(_, o, _)| o.e2e_ms).sum::<f64>()
        / pairs
            .iter()
            .map(|(_, o, _)| o.output_tokens as f64)
            .sum::<f64>();
    eprintln!(
        "GuideLLM {load}: mean TPOT with the first token {client_tpot:.3} ms (ours {ours_tpot:.3}, {:+.3}%)",
        100.0 * (client_tpot / ours_tpot - 1.0)
    );
    assert!(
        client_tpot >= ours_tpot * (1.0 - 1e-3) && client_tpot <= ours_tpot * 1.05,
        "GuideLLM {load}: TPOT {client_tpot} ms against our {ours_tpot} ms"
    );
    keep(&[&report_path, &out.join("requests.jsonl")], "guidellm");
}

#[test]
#[cfg_attr(
    not(feature = "client-tests"),
    ignore = "needs GuideLLM and AIPerf (PyPI; scripts/test installs them with scripts/clients and turns on client-tests)"
)]
fn guidellm_agrees_with_our_samples() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    client_bin("guidellm", "guidellm");
    let dir = common::tempdir();
    let tok = export_tokenizer(dir.path());
    let samples = dir.path().join("served.jsonl");
    let s = server(&samples);
    let base = format!("http://{}", s.addr);
    let loads = [
        format!("concurrent:{CONCURRENCY}"),
        format!("poisson:{RATE}"),
    ];
    for (i, load) in loads.iter().enumerate() {
        guidellm_load(&base, &tok, dir.path(), &samples, load, i * REQUESTS);
    }
    let (code, _, err) = s.interrupt();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "served {} requests ({} ok, 0 failed)",
            2 * REQUESTS,
            2 * REQUESTS
        )),
        "{err}"
    );
    keep(&[&samples], "guidellm");
}

/// AIPerf's records (profile_export.jsonl): `time_to_first_token` = first content response −
/// request start, `request_latency` = last content response − request start,
/// `inter_token_latency` = (request_latency − TTFT) / (output_sequence_length − 1)
/// (aiperf/metrics/types/{ttft,request_latency,inter_token_latency}_metric.py), where
/// `output_sequence_length` is AIPerf's own count: the streamed text encoded again with the
/// tokenizer. The summary's `avg` is the plain mean over requests.
#[test]
#[cfg_attr(
    not(feature = "client-tests"),
    ignore = "needs GuideLLM and AIPerf (PyPI; scripts/test installs them with scripts/clients and turns on client-tests)"
)]
fn aiperf_agrees_with_our_samples() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let aiperf = client_bin("aiperf", "aiperf");
    let dir = common::tempdir();
    let tok = export_tokenizer(dir.path());
    let samples = dir.path().join("served.jsonl");
    let s = server(&samples);
    let out = dir.path().join("aiperf");
    let mut cmd = Command::new("bash");
    cmd.arg(common::home().join("tests/clients/aiperf_run.sh"))
        .arg(format!("http://{}", s.addr))
        .arg(&tok)
        .arg(common::home().join("models/corpus.txt"))
        .arg(&out)
        .arg(CONCURRENCY.to_string())
        .arg(REQUESTS.to_string());
    assert!(aiperf.is_file());
    run_driver(cmd, "aiperf_run.sh");
    let (code, _, err) = s.interrupt();
    assert_eq!(code, Some(0), "{err}");

    let summary = read_json(&out.join("profile_export_aiperf.json"));
    assert_eq!(
        summary["request_count"]["avg"], REQUESTS as f64,
        "AIPerf request count"
    );
    let error_rate = summary["request_error_rate"]["avg"].as_f64().unwrap_or(0.0);
    assert_eq!(
        error_rate, 0.0,
        "AIPerf errors: {}",
        summary["error_summary"]
    );
    let records = read_jsonl(&out.join("profile_export.jsonl"));
    let value = |r: &Value, k: &str| f(&r["metrics"][k]["value"], k);
    let measured: Vec<Measured> = records
        .iter()
        .map(|r| {
            // AIPerf's prompt count (its tokenizer) must be the server's usage.
            assert_eq!(
                value(r, "input_sequence_length"),
                value(r, "usage_prompt_tokens"),
                "AIPerf: prompt tokens by its tokenizer and by our usage"
            );
            Measured {
                prompt_tokens: value(r, "input_sequence_length") as u64,
                output_tokens: value(r, "output_sequence_length") as u64,
                usage_output_tokens: Some(value(r, "usage_completion_tokens") as u64),
                ttft_ms: value(r, "time_to_first_token"),
                latency_ms: value(r, "request_latency"),
                itl_ms: value(r, "inter_token_latency"),
            }
        })
        .collect();
    let ours: Vec<Ours> = our_samples(&samples).iter().map(Ours::of).collect();
    let pairs = pair("AIPerf", &measured, &ours, &asked(&out));

    // AIPerf counts output tokens by encoding the streamed text again. Sampled tokens need
    // not be the tokenizer's own encoding of their text (" Pai" + "nter" encodes back as
    // " Painter"), so its count may fall short of ours; within 10% in all (AIPerf's own
    // discrepancy threshold, AIPERF_METRICS_USAGE_PCT_DIFF_THRESHOLD).
    let theirs: u64 = pairs.iter().map(|(m, _, _)| m.output_tokens).sum();
    let total: u64 = pairs.iter().map(|(_, o, _)| o.output_tokens).sum();
    let differ = pairs
        .iter()
        .filter(|(m, o, _)| m.output_tokens != o.output_tokens)
        .count();
    eprintln!("AIPerf: {theirs} output tokens by its count, {total} by ours; {differ} of {REQUESTS} requests differ");
    assert!(
        theirs.abs_diff(total) * 10 <= total,
        "AIPerf counts {theirs} output tokens, we generated {total}"
    );

    // Its means, by its definition: our samples' ITL over AIPerf's own count of gaps.
    let avg = |k: &str| f(&summary[k]["avg"], k);
    let client_ttft = avg("time_to_first_token");
    let client_itl = avg("inter_token_latency");
    assert!((mean(pairs.iter().map(|(m, _, _)| m.ttft_ms)) / client_ttft - 1.0).abs() < 1e-6);
    assert!((mean(pairs.iter().map(|(m, _, _)| m.itl_ms)) / client_itl - 1.0).abs() < 1e-6);
    let ours_ttft = mean(pairs.iter().map(|(_, o, _)| o.ttft_ms));
    let ours_itl = mean(
        pairs
            .iter()
            .map(|(m, o, _)| (o.e2e_ms - o.ttft_ms) / (m.output_tokens - 1) as f64),
    );
    agree("AIPerf", client_ttft, ours_ttft, client_itl, ours_itl);
    keep(
        &[
            &out.join("profile_export.jsonl"),
            &out.join("profile_export_aiperf.json"),
            &out.join("requests.jsonl"),
            &samples,
        ],
        "aiperf",
    );
}
