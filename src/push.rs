//! Pushes the metrics to a Prometheus Pushgateway, for batch runs that end before a
//! Prometheus would scrape them: every N seconds from a background thread, and once more
//! when the run finishes.
//!
//! Each push replaces the group `job="profiler", model, run_on` (HTTP `PUT`), so the
//! gateway always holds the latest full snapshot of this run. The client is a minimal
//! HTTP/1.1 one over `std::net::TcpStream` (plain `http://` only). A failed push is
//! counted and reported as a warning, never an error of the run.

use anyhow::{anyhow, bail, Context, Result};
use prometheus::{Encoder, Registry, TextEncoder};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time allowed to connect to the gateway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one whole push once connected.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest gateway answer read.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// How many pushes went through and how many failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Pushes the gateway accepted.
    pub pushed: u64,
    /// Pushes that failed (unreachable gateway, refused push).
    pub failed: u64,
}

/// Pushes a registry to a Pushgateway in the background until [`Pusher::finish`].
pub struct Pusher {
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    url: String,
    gateway: Gateway,
    path: String,
    registry: Registry,
    pushed: AtomicU64,
    failed: AtomicU64,
    failing: AtomicBool,
}

impl Pusher {
    /// Checks `url` (`http://HOST[:PORT][/PREFIX]`) and starts pushing `registry` to the
    /// group `job="profiler", model, run_on` at once and then every `interval`.
    pub fn start(
        url: &str,
        registry: Registry,
        model: &str,
        run_on: &str,
        interval: Duration,
    ) -> Result<Pusher> {
        let gateway = Gateway::parse(url)?;
        let path = format!(
            "{}/metrics/job/profiler/{}/{}",
            gateway.prefix,
            group_segment("model", model),
            group_segment("run_on", run_on)
        );
        let shared = Arc::new(Shared {
            url: url.trim_end_matches('/').to_string(),
            gateway,
            path,
            registry,
            pushed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = {
            let shared = shared.clone();
            let interval = interval.max(Duration::from_millis(100));
            std::thread::Builder::new()
                .name("metrics-push".into())
                .spawn(move || loop {
                    shared.push_and_count();
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        _ => return,
                    }
                })
                .context("cannot start the Pushgateway thread")?
        };
        Ok(Pusher {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Pushes so far.
    pub fn stats(&self) -> PushStats {
        PushStats {
            pushed: self.shared.pushed.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops the background pushes and pushes the final values once more. A failure is a
    /// warning on stderr; the counts say how it went.
    pub fn finish(mut self) -> PushStats {
        self.stop_thread();
        if let Err(e) = self.shared.push() {
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "warning: the final push of metrics to {} failed: {e:#}",
                self.shared.url
            );
        } else {
            self.shared.pushed.fetch_add(1, Ordering::Relaxed);
        }
        let stats = self.stats();
        if stats.failed > 0 {
            eprintln!(
                "warning: {} of {} metric pushes to {} failed",
                stats.failed,
                stats.failed + stats.pushed,
                self.shared.url
            );
        }
        stats
    }

    fn stop_thread(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Pusher {
    /// Stops the background pushes without a final one (that is [`Pusher::finish`]).
    fn drop(&mut self) {
        self.stop_thread();
    }
}

impl Shared {
    /// Pushes once, counting the outcome and warning when pushes start or stop failing
    /// (not at every failure, so an absent gateway does not flood stderr).
    fn push_and_count(&self) {
        match self.push() {
            Ok(()) => {
                self.pushed.fetch_add(1, Ordering::Relaxed);
                if self.failing.swap(false, Ordering::Relaxed) {
                    eprintln!("note: pushing metrics to {} works again", self.url);
                }
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "warning: cannot push metrics to {}: {e:#} (the run goes on; retrying)",
                        self.url
                    );
                }
            }
        }
    }

    fn push(&self) -> Result<()> {
        let mut body = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut body)
            .map_err(|e| anyhow!("cannot encode the metrics: {e}"))?;
        let answer = self.gateway.send("PUT", &self.path, &body)?;
        if !(200..300).contains(&answer.status) {
            let why = answer
                .body
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!(
                "the Pushgateway answered {} ({}); expected 200 or 202",
                answer.status,
                why.trim()
            );
        }
        Ok(())
    }
}

/// The label segment of a grouping-key path: `name/value` when the value is plain,
/// otherwise `name@base64/...` (URL-safe base64), which the Pushgateway decodes; this
/// covers values with `/` such as `meta-llama/Llama-3.2-1B`, and empty ones.
fn group_segment(name: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if plain {
        format!("{name}/{value}")
    } else if value.is_empty() {
        format!("{name}@base64/=")
    } else {
        format!("{name}@base64/{}", base64url(value.as_bytes()))
    }
}

/// URL-safe base64 (RFC 4648 §5) with padding.
fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Where the gateway is: `http://HOST[:PORT][/PREFIX]`.
#[derive(Debug, PartialEq)]
struct Gateway {
    /// `HOST:PORT` as written (for the Host header), with the default port 80 added.
    authority: String,
    /// Path prefix without a trailing `/` (empty for none).
    prefix: String,
}

/// A gateway's answer.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: String,
}

impl Gateway {
    fn parse(url: &str) -> Result<Gateway> {
        let expected = "expected http://HOST:PORT, e.g. http://127.0.0.1:9091";
        let u = url.trim();
        let rest = if let Some(rest) = u.strip_prefix("http://") {
            rest
        } else if u.starts_with("https://") {
            bail!("pushgateway URL {u}: https is not supported; expected an http:// URL (put a TLS proxy in front if needed)");
        } else {
            bail!("pushgateway URL {u:?}: {expected}");
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains('@') || path.contains(['?', '#']) {
            bail!("pushgateway URL {u:?}: {expected}, without credentials, query or fragment");
        }
        let has_port = match authority.rfind(']') {
            Some(bracket) => authority[bracket..].contains(':'),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Gateway {
            authority,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// Sends one request with `Connection: close` and reads the whole answer.
    fn send(&self, method: &str, path: &str, body: &[u8]) -> Result<Answer> {
        let addrs: Vec<_> = self
            .authority
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", self.authority))?
            .collect();
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut stream = stream.ok_or_else(|| match last {
            Some(e) => anyhow!("cannot connect to {}: {e}", self.authority),
            None => anyhow!("{} resolves to no address", self.authority),
        })?;
        let deadline = Instant::now() + PUSH_TIMEOUT;
        stream.set_write_timeout(Some(PUSH_TIMEOUT))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: profiler/{}\r\nContent-Type: {}; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            env!("CARGO_PKG_VERSION"),
            prometheus::TEXT_FORMAT,
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .with_context(|| format!("cannot send to {}", self.authority))?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut limited = (&mut stream).take(MAX_ANSWER_BYTES);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{} did not answer within {} s",
                    self.authority,
                    PUSH_TIMEOUT.as_secs()
                );
            }
            limited.get_mut().set_read_timeout(Some(left))?;
            match limited.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if raw.is_empty() => {
                    return Err(anyhow!("no answer from {}: {e}", self.authority))
                }
                // The answer is complete enough to judge (e.g. a reset after it).
                Err(_) => break,
            }
        }
        parse_answer(&raw).ok_or_else(|| anyhow!("{} did not answer with HTTP", self.authority))
    }
}

/// Parses `HTTP/1.x STATUS ...` and the body (de-chunked if need be).
fn parse_answer(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut first = head.lines().next()?.split(' ');
    if !first.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = first.next()?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some(Answer { status, body })
}

/// Joins the chunks of a chunked body, stopping at the last chunk or at malformed input.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("").trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            out.push_str(rest.get(..n.min(rest.len())).unwrap_or(""));
            break;
        }
        out.push_str(rest.get(..n).unwrap_or(""));
        body = rest.get(n..).unwrap_or("").trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            Gateway::parse("http://127.0.0.1:9091").expect("url"),
            Gateway {
                authority: "127.0.0.1:9091".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Gateway::parse("http://gw.example/prefix/").expect("url"),
            Gateway {
                authority: "gw.example:80".into(),
                prefix: "/prefix".into()
            }
        );
        assert_eq!(
            Gateway::parse("http://[::1]").expect("url").authority,
            "[::1]:80"
        );
        assert_eq!(
            Gateway::parse("http://[::1]:9091").expect("url").authority,
            "[::1]:9091"
        );
        let https = format!(
            "{:#}",
            Gateway::parse("https://gw:9091").expect_err("https")
        );
        assert!(
            https.contains("https is not supported; expected an http:// URL"),
            "{https}"
        );
        for bad in [
            "gw:9091",
            "http://",
            "http://u:p@gw:9091",
            "http://gw:9091/?x=1",
            "ftp://gw",
        ] {
            let msg = format!("{:#}", Gateway::parse(bad).expect_err(bad));
            assert!(msg.contains("expected http://HOST:PORT"), "{bad}: {msg}");
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn group_values_with_slashes_are_base64_encoded() {
        assert_eq!(
            group_segment("model", "tiny-llama_1.1"),
            "model/tiny-llama_1.1"
        );
        assert_eq!(
            group_segment("model", "meta-llama/Llama-3.2-1B"),
            "model@base64/bWV0YS1sbGFtYS9MbGFtYS0zLjItMUI="
        );
        assert_eq!(group_segment("run_on", ""), "run_on@base64/=");
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg==");
        assert_eq!(base64url(b"fo"), "Zm8=");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8=");
    }

    #[test]
    fn answers_are_parsed_and_dechunked() {
        let a = parse_answer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\nbad\n")
            .expect("answer");
        assert_eq!(
            a,
            Answer {
                status: 400,
                body: "bad\n".into()
            }
        );
        let a = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("answer");
        assert_eq!(a.body, "abcde");
        assert_eq!(parse_answer(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_answer(b""), None);
    }

    /// A one-shot fake gateway: answers `status` to each request it receives and hands
    /// back the request heads and bodies it got.
    fn fake_gateway(
        status: u16,
        requests: usize,
    ) -> (String, std::thread::JoinHandle<Vec<(String, String)>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let t = std::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..requests {
                let (s, _) = listener.accept().expect("accept");
                let mut r = std::io::BufReader::new(s);
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).expect("read");
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().expect("length");
                    }
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0u8; len];
                r.read_exact(&mut body).expect("body");
                let mut s = r.into_inner();
                write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 5\r\n\r\nwhy\r\n")
                    .expect("answer");
                got.push((head, String::from_utf8(body).expect("utf-8")));
            }
            got
        });
        (url, t)
    }

    fn registry_with_counter(value: u64) -> Registry {
        let r = Registry::new();
        let c = prometheus::IntCounter::new("demo_total", "A demo counter.").expect("counter");
        c.inc_by(value);
        r.register(Box::new(c)).expect("register");
        r
    }

    #[test]
    fn pushes_put_the_registry_to_the_group_and_once_more_at_the_end() {
        let (url, gateway) = fake_gateway(202, 2);
        let pusher = Pusher::start(
            &url,
            registry_with_counter(7),
            "org/model",
            "cpu",
            Duration::from_secs(3600),
        )
        .expect("start");
        let stats = pusher.finish();
        assert_eq!(
            stats,
            PushStats {
                pushed: 2,
                failed: 0
            }
        );
        let got = gateway.join().expect("gateway");
        for (head, body) in &got {
            assert!(
                head.starts_with(
                    "PUT /metrics/job/profiler/model@base64/b3JnL21vZGVs/run_on/cpu HTTP/1.1\r\n"
                ),
                "{head}"
            );
            assert!(
                head.contains("Content-Type: text/plain; version=0.0.4"),
                "{head}"
            );
            assert!(body.contains("demo_total 7"), "{body}");
        }
    }

    #[test]
    fn refused_and_unreachable_pushes_are_counted_not_fatal() {
        let (url, gateway) = fake_gateway(400, 2);
        let pusher = Pusher::start(
            &url,
            registry_with_counter(1),
            "m",
            "cpu",
            Duration::from_secs(3600),
        )
        .expect("start");
        assert_eq!(
            pusher.finish(),
            PushStats {
                pushed: 0,
                failed: 2
            }
        );
        gateway.join().expect("gateway");

        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", free.local_addr().expect("addr"));
        drop(free);
        let pusher = Pusher::start(
            &url,
            registry_with_counter(1),
            "m",
            "cpu",
            Duration::from_secs(3600),
        )
        .expect("start");
        assert_eq!(
            pusher.finish(),
            PushStats {
                pushed: 0,
                failed: 2
            }
        );
    }

    #[test]
    fn a_refusal_names_the_status_and_the_reason() {
        let (url, gateway) = fake_gateway(400, 1);
        let g = Gateway::parse(&url).expect("url");
        let shared = Shared {
            url: url.clone(),
            gateway: g,
            path: "/metrics/job/profiler".into(),
            registry: registry_with_counter(1),
            pushed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        };
        let msg = format!("{:#}", shared.push().expect_err("refused"));
        assert_eq!(
            msg,
            "the Pushgateway answered 400 (why); expected 200 or 202"
        );
        gateway.join().expect("gateway");
    }
}
