//! Stability of `profiler serve` under a bounded loopback load: more concurrent clients
//! than slots, clients that abandon their connection mid-stream or before any answer,
//! and malformed JSON bodies. No panic; every malformed request a 4xx with a JSON error;
//! every request answered (200, or 503 from a full queue); busy slots and the queue back
//! to 0 afterwards; the server still serves, and stops cleanly on Ctrl-C.

#[path = "../common/mod.rs"]
mod common;

use common::http::{parse, request, Server};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const CLIENTS: usize = 8;
const ROUNDS: usize = 6;

/// Malformed bodies, each with the status it must get.
fn malformed(i: usize) -> (&'static str, Vec<u8>, u16) {
    let cases: [(&str, &[u8], u16); 8] = [
        ("/v1/completions", b"{\"prompt\": \"unterminated", 400),
        ("/v1/completions", b"", 400),
        ("/v1/completions", b"\xff\xfe not utf-8", 400),
        (
            "/v1/completions",
            b"{\"prompt\": {\"nested\": [[[]]]}}",
            400,
        ),
        (
            "/v1/chat/completions",
            b"{\"messages\": [{\"role\": 1}]}",
            400,
        ),
        ("/v1/chat/completions", b"null", 400),
        (
            "/v1/completions",
            b"{\"prompt\": \"x\", \"max_tokens\": -3}",
            400,
        ),
        (
            "/v1/completions",
            b"{\"prompt\": \"x\", \"model\": \"nope\"}",
            404,
        ),
    ];
    let (p, b, s) = cases[i % cases.len()];
    (p, b.to_vec(), s)
}

fn send_raw(addr: SocketAddr, path: &str, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s
}

/// One client's rounds; returns (answered, malformed checked, abandoned).
fn client(addr: SocketAddr, c: usize) -> (usize, usize, usize) {
    let (mut answered, mut bad, mut gone) = (0, 0, 0);
    for round in 0..ROUNDS {
        match (c + round) % 5 {
            0 => {
                let b = json!({"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0.7, "seed": c});
                let r = request(
                    addr,
                    "POST",
                    "/v1/completions",
                    Some(b.to_string().as_bytes()),
                );
                assert!(
                    r.status == 200 || r.status == 503,
                    "{}: {}",
                    r.status,
                    r.body
                );
                if r.status == 200 {
                    assert_eq!(r.json()["usage"]["completion_tokens"], 8);
                } else {
                    assert!(r.json()["error"]["message"].is_string());
                }
                answered += 1;
            }
            1 => {
                let b = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6,
                               "stream": true, "ignore_eos": true});
                let r = request(
                    addr,
                    "POST",
                    "/v1/chat/completions",
                    Some(b.to_string().as_bytes()),
                );
                assert!(
                    r.status == 200 || r.status == 503,
                    "{}: {}",
                    r.status,
                    r.body
                );
                if r.status == 200 {
                    assert_eq!(
                        r.events().last().map(String::as_str),
                        Some("[DONE]"),
                        "{}",
                        r.body
                    );
                }
                answered += 1;
            }
            2 => {
                // Streams, reads the first bytes, hangs up mid-generation.
                let b = json!({"prompt": "A long story:", "max_tokens": 200, "stream": true,
                               "ignore_eos": true});
                let mut s = send_raw(addr, "/v1/completions", b.to_string().as_bytes());
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                drop(s);
                gone += 1;
            }
            3 => {
                // Sends a request and hangs up before any answer.
                let b = json!({"prompt": "Never read:", "max_tokens": 50, "ignore_eos": true});
                drop(send_raw(addr, "/v1/completions", b.to_string().as_bytes()));
                gone += 1;
            }
            _ => {
                let (path, body, status) = malformed(c * ROUNDS + round);
                let mut s = send_raw(addr, path, &body);
                let mut raw = Vec::new();
                s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
                let _ = s.read_to_end(&mut raw);
                let r = parse(&raw);
                assert_eq!(
                    r.status,
                    status,
                    "{path} {:?}: {}",
                    String::from_utf8_lossy(&body),
                    r.body
                );
                assert!(r.json()["error"]["message"].is_string(), "{}", r.body);
                bad += 1;
            }
        }
    }
    (answered, bad, gone)
}

#[test]
fn overload_abandoned_connections_and_malformed_bodies() {
    let dir = common::tempdir();
    let samples = dir.path().join("load.jsonl");
    let s = Server::start(&[
        "--max-num-seqs",
        "2",
        "--max-queue",
        "4",
        "--seq-len",
        "256",
        "--samples",
        samples.to_str().unwrap(),
    ]);
    let addr = s.addr;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| std::thread::spawn(move || client(addr, c)))
        .collect();
    let (mut answered, mut bad, mut gone) = (0, 0, 0);
    for t in threads {
        let (a, b, g) = t.join().expect("a client thread failed");
        answered += a;
        bad += b;
        gone += g;
    }
    assert_eq!(answered + bad + gone, CLIENTS * ROUNDS);
    assert!(bad > 0 && gone > 0);
    // Abandoned requests free their slots; nothing stays queued.
    let mut settled = false;
    for _ in 0..1200 {
        if s.metric("profiler_busy_slots") == 0.0 && s.metric("profiler_queue_depth") == 0.0 {
            settled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(settled, "busy slots or the queue never went back to 0");
    // Still serving.
    let r = s.post(
        "/v1/completions",
        r#"{"prompt": "Still there?", "max_tokens": 2}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (code, _, err) = s.interrupt();
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Every request that reached the engine is in the samples, the abandoned ones as errors.
    let text = std::fs::read_to_string(&samples).unwrap();
    let errors = text
        .lines()
        .filter(|l| l.contains("\"status\":\"error\""))
        .count();
    assert!(errors > 0, "no abandoned request recorded:\n{text}");
    assert!(text.lines().last().unwrap().contains("\"kind\":\"end\""));
}
