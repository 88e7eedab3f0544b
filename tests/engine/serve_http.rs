//! `profiler serve` through real HTTP on loopback, on the default model: the OpenAI
//! endpoints with the official `openai` Python client (installed by scripts/clients, which
//! scripts/test runs), every error a JSON body with the right status, the metrics, the
//! samples file that `profiler report` reads, and a stop on Ctrl-C with a summary.

#[path = "../common/mod.rs"]
mod common;

use common::http::{request, Server};
use serde_json::{json, Value};
use std::process::Command;

/// The greedy text `profiler generate` gives for `prompt` (chat or not), `n` tokens.
fn generate_text(prompt: &str, chat: bool, n: usize) -> Value {
    let n = n.to_string();
    let mut args = vec![
        "generate",
        "--model",
        "llama",
        "--run-on",
        "cpu",
        "--prompt",
        prompt,
        "--max-new-tokens",
        &n,
        "--temperature",
        "0",
        "--format",
        "json",
    ];
    if chat {
        args.push("--chat");
    }
    serde_json::from_str(&common::run_ok(&args)).unwrap()
}

fn client_python(name: &str) -> std::path::PathBuf {
    let p = common::home().join(format!(".venv-clients/{name}/bin/python"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/clients {name} (scripts/test does)",
        p.display()
    );
    p
}

/// The `openai` client, streaming and not, completions and chat, against the server; its
/// texts must be `profiler generate`'s greedy texts and its usage our token counts.
#[test]
fn openai_client_streams_and_completes_like_generate() {
    let py = client_python("openai");
    let server = Server::start(&["--max-num-seqs", "2", "--seq-len", "256"]);
    let out = Command::new(py)
        .arg(common::home().join("tests/clients/openai_check.py"))
        .arg(server.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openai_check.py failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let plain = generate_text("The capital of France is", false, 12);
    let chat = generate_text("Name a colour.", true, 12);
    let count = |v: &Value, k: &str| v[k].as_array().unwrap().len();
    // `generate` keeps special tokens in its text; the API leaves the end-of-sequence
    // token out of the text (and counts it in the usage, as vLLM does).
    let text = |v: &Value| {
        v["text"]
            .as_str()
            .unwrap()
            .trim_end_matches("<|im_end|>")
            .to_string()
    };
    for key in ["completion", "completion_stream"] {
        assert_eq!(r[key]["text"], text(&plain), "{key}");
        assert_eq!(r[key]["usage"]["completion_tokens"], 12, "{key}");
        assert_eq!(
            r[key]["usage"]["prompt_tokens"],
            count(&plain, "prompt_tokens"),
            "{key}"
        );
    }
    assert_eq!(r["completion"]["finish_reason"], "length");
    assert_eq!(r["completion_stream"]["finish_reason"], "length");
    let chat_reason = if count(&chat, "generated_tokens") < 12 {
        "stop"
    } else {
        "length"
    };
    for key in ["chat", "chat_stream"] {
        assert_eq!(r[key]["text"], text(&chat), "{key}");
        assert_eq!(r[key]["role"], "assistant", "{key}");
        assert_eq!(r[key]["finish_reason"], chat_reason, "{key}");
        assert_eq!(
            r[key]["usage"]["completion_tokens"],
            count(&chat, "generated_tokens"),
            "{key}"
        );
        assert_eq!(
            r[key]["usage"]["prompt_tokens"],
            count(&chat, "prompt_tokens"),
            "{key}"
        );
    }
    assert!(r["models"]
        .as_array()
        .unwrap()
        .contains(&json!("smollm2-135m")));
    // A stop string cuts the text before it, in both modes.
    assert_eq!(r["stop"]["finish_reason"], "stop");
    assert_eq!(r["stop"]["text"], r["stop_stream"]["text"]);
    let full = text(&plain);
    let cut = r["stop"]["text"].as_str().unwrap();
    assert!(
        full.starts_with(cut) && cut.len() < full.len(),
        "{cut:?} of {full:?}"
    );
    // The 404 for an unknown model reaches the client as its NotFoundError.
    assert_eq!(r["unknown_model"]["status"], 404);
    let (code, _, err) = server.interrupt();
    assert_eq!(code, Some(0), "{err}");
}

/// Errors: each a JSON body naming what is wrong, with the right status.
#[test]
fn bad_requests_get_json_errors() {
    let s = Server::start(&["--max-num-seqs", "1", "--seq-len", "64"]);
    let cases: &[(&str, &str, u16, &str)] = &[
        ("/v1/completions", "{", 400, "not valid JSON"),
        ("/v1/completions", "[]", 400, "expected a JSON object"),
        (
            "/v1/completions",
            r#"{"prompt":"hi","model":"gpt-4"}"#,
            404,
            "`gpt-4` does not exist",
        ),
        (
            "/v1/completions",
            r#"{"prompt":"hi","max_tokens":100}"#,
            400,
            "max_tokens is 100: 101 positions, more than this server's --seq-len of 64",
        ),
        (
            "/v1/completions",
            r#"{"prompt":"hi","temperature":"hot"}"#,
            400,
            "`temperature`",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages":[]}"#,
            400,
            "`messages` is empty",
        ),
        (
            "/v1/chat/completions",
            r#"{"prompt":"x"}"#,
            400,
            "`messages` is missing",
        ),
        ("/v1/nothing", "{}", 404, "no route POST /v1/nothing"),
    ];
    for (path, body, status, needle) in cases {
        let r = s.post(path, body);
        assert_eq!(r.status, *status, "{path} {body}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{needle:?} in {msg:?}");
        assert_eq!(r.json()["error"]["code"], *status);
    }
    let r = s.get("/v1/completions");
    assert_eq!(r.status, 405);
    assert!(r.json()["error"]["message"].is_string());
    // Bodies over 1 MiB are refused with 413, before they are read whole.
    let big = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(2 << 20));
    let r = s.post("/v1/completions", &big);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("larger than"));
    // Still serving after all that.
    let r = s.post(
        "/v1/completions",
        r#"{"model":"llama","prompt":"Hello","max_tokens":3,"temperature":0}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["usage"]["completion_tokens"], 3);
    let (code, _, err) = s.interrupt();
    assert_eq!(code, Some(0));
    assert!(!err.contains("panicked"), "{err}");
}

/// Health, models, metrics; the samples file `profiler report` summarises; Ctrl-C prints
/// the summary.
#[test]
fn metrics_samples_and_summary() {
    let dir = common::tempdir();
    let samples = dir.path().join("served.jsonl");
    let s = Server::start(&[
        "--max-num-seqs",
        "2",
        "--seq-len",
        "128",
        "--samples",
        samples.to_str().unwrap(),
    ]);
    assert_eq!(s.get("/health").status, 200);
    let m = s.get("/v1/models").json();
    assert_eq!(m["data"][0]["id"], "smollm2-135m");
    assert_eq!(m["data"][0]["max_model_len"], 128);
    let body = json!({"model": "smollm2-135m", "prompt": "One two three", "max_tokens": 5,
                      "temperature": 0, "ignore_eos": true});
    let addr = s.addr;
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let b = body.to_string();
            std::thread::spawn(move || request(addr, "POST", "/v1/completions", Some(b.as_bytes())))
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["usage"]["completion_tokens"], 5);
    }
    assert_eq!(s.metric("profiler_busy_slots"), 0.0);
    assert_eq!(s.metric("profiler_queue_depth"), 0.0);
    assert_eq!(s.metric("profiler_slots"), 2.0);
    assert_eq!(s.metric("profiler_generated_tokens_total"), 15.0);
    assert_eq!(s.metric("profiler_ttft_seconds_count"), 3.0);
    let (code, out, err) = s.interrupt();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("served 3 requests (3 ok, 0 failed)"), "{err}");
    assert!(out.contains("TTFT"), "summary: {out}");
    let report = common::run_ok(&[
        "report",
        "--samples",
        samples.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let r: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(r["requests"], 3, "{r}");
    assert_eq!(r["failed_requests"], 0, "{r}");
    assert_eq!(r["output_tokens"], 15, "{r}");
}

/// A full queue answers 503 with a message, at once.
#[test]
fn a_full_queue_is_refused_with_503() {
    let s = Server::start(&[
        "--max-num-seqs",
        "1",
        "--max-queue",
        "1",
        "--seq-len",
        "128",
    ]);
    let addr = s.addr;
    let long = json!({"prompt": "Count:", "max_tokens": 60, "ignore_eos": true, "temperature": 0})
        .to_string();
    // One takes the slot, one waits in the queue; the next is refused.
    let wait_for = |name: &str| {
        for _ in 0..600 {
            if s.metric(name) >= 1.0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{name} never reached 1");
    };
    let send = || {
        let b = long.clone();
        std::thread::spawn(move || request(addr, "POST", "/v1/completions", Some(b.as_bytes())))
    };
    let first = send();
    wait_for("profiler_busy_slots");
    let second = send();
    wait_for("profiler_queue_depth");
    let busy = [first, second];
    let r = s.post("/v1/completions", &long);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--max-queue 1"));
    assert_eq!(r.header("retry-after"), Some("1"));
    for t in busy {
        assert_eq!(t.join().unwrap().status, 200);
    }
}
