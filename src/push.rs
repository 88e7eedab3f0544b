//! Pushes the metrics to a Prometheus Pushgateway, for batch runs that end before a
//! Prometheus would scrape them: every N seconds from a background thread, and once more
//! when the run finishes.
//!
//! Each push replaces the group `job="profiler", model, run_on` (HTTP `PUT`), so the
//! gateway always holds the latest full snapshot of this run. The HTTP client is `ureq`
//! (plain `http://` only, a new connection per push). A failed push is counted and
//! reported as a warning, never an error of the run.

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use prometheus::Registry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Time allowed to connect to the gateway.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one whole push, connecting included.
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
    /// The URL as given, for messages.
    url: String,
    /// Where each push goes: the gateway, its prefix and the group's path.
    target: String,
    agent: ureq::Agent,
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
        let shared = Arc::new(Shared {
            url: url.trim().trim_end_matches('/').to_string(),
            target: gateway.group_url(model, run_on),
            agent: agent(),
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
        let body = crate::metrics::encode_text(&self.registry)?;
        let mut answer = self
            .agent
            .put(self.target.as_str())
            .content_type(format!("{}; charset=utf-8", prometheus::TEXT_FORMAT))
            .send(&body[..])
            .map_err(|e| anyhow!("cannot push to {}: {e}", self.url))?;
        let status = answer.status().as_u16();
        if !(200..300).contains(&status) {
            let text = answer
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .lossy_utf8(true)
                .read_to_string()
                .unwrap_or_default();
            let why = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            bail!(
                "the Pushgateway answered {status} ({}); expected 200 or 202",
                why.trim()
            );
        }
        Ok(())
    }
}

/// The HTTP client of the pushes: bounded in time, answers of any status handed back
/// (the status is judged above), and no idle connection kept between pushes.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(PUSH_TIMEOUT))
        .http_status_as_error(false)
        .max_idle_connections(0)
        .user_agent(format!("profiler/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
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
        format!("{name}@base64/{}", URL_SAFE.encode(value))
    }
}

/// Where the gateway is: `http://HOST[:PORT][/PREFIX]`.
#[derive(Debug, PartialEq)]
struct Gateway {
    /// `HOST:PORT`, with the default port 80 added.
    authority: String,
    /// Path prefix without a trailing `/` (empty for none).
    prefix: String,
}

impl Gateway {
    fn parse(url: &str) -> Result<Gateway> {
        let expected = "expected http://HOST:PORT, e.g. http://127.0.0.1:9091";
        let u = url.trim();
        if u.starts_with("https://") {
            bail!("pushgateway URL {u}: https is not supported; expected an http:// URL (put a TLS proxy in front if needed)");
        }
        let bad =
            || anyhow!("pushgateway URL {u:?}: {expected}, without credentials, query or fragment");
        let uri: http::Uri = u.parse().map_err(|_| bad())?;
        let authority = uri.authority().ok_or_else(bad)?;
        if uri.scheme_str() != Some("http")
            || authority.as_str().contains('@')
            || uri.query().is_some()
            || u.contains('#')
        {
            return Err(bad());
        }
        Ok(Gateway {
            authority: format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(80)
            ),
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The URL of the group `job="profiler", model, run_on` on this gateway.
    fn group_url(&self, model: &str, run_on: &str) -> String {
        format!(
            "http://{}{}/metrics/job/profiler/{}/{}",
            self.authority,
            self.prefix,
            group_segment("model", model),
            group_segment("run_on", run_on)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Read, Write};

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
        // The URL-safe alphabet (`_` for `/`), padded as the Pushgateway expects.
        assert_eq!(group_segment("run_on", "???"), "run_on@base64/Pz8_");
        assert_eq!(group_segment("run_on", "c p"), "run_on@base64/YyBw");
        assert_eq!(group_segment("run_on", "cp u"), "run_on@base64/Y3AgdQ==");
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
            // Header names are case-insensitive (RFC 9110 §5.1).
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-type: text/plain; version=0.0.4"),
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
        let shared = Shared {
            url: url.clone(),
            target: format!("{url}/metrics/job/profiler"),
            agent: agent(),
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
