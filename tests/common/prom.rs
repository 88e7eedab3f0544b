//! Helpers of the real-server Prometheus tests: a real Prometheus (Debian package
//! `prometheus`) or Pushgateway (`prometheus-pushgateway`) on a free loopback port with its
//! files in a temporary directory, killed whatever happens; a minimal HTTP client; and a
//! parser of the text exposition format.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PROMETHEUS: &str = "prometheus";
pub const PUSHGATEWAY: &str = "prometheus-pushgateway";
pub const PROMTOOL: &str = "promtool";
/// Longest wait for a server to come up or for samples to arrive.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A server process, killed when dropped; its output goes to `log` for diagnostics.
pub struct Server {
    child: Child,
    log: PathBuf,
    pub addr: String,
}

impl Server {
    pub fn start(program: &str, args: &[String], addr: String, dir: &Path) -> Server {
        let log = dir.join(format!("{program}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let server = Server { child, log, addr };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let ready =
            wait_for(|| matches!(get(&self.addr, "/-/ready"), Some((200, _))).then_some(()));
        assert!(
            ready.is_some(),
            "{} never became ready; log:\n{}",
            self.addr,
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks Prometheus for an instant vector; `Some(values)` once the query succeeds.
    pub fn query(&self, promql: &str) -> Option<Vec<f64>> {
        let (status, body) = get(
            &self.addr,
            &format!("/api/v1/query?query={}", percent_encode(promql)),
        )?;
        // A query Prometheus cannot parse will never succeed: fail at once.
        assert_ne!(status, 400, "Prometheus refused {promql}: {body}");
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        Some(
            result
                .iter()
                .filter_map(|r| r["value"][1].as_str()?.parse().ok())
                .collect(),
        )
    }

    /// Waits until `promql` returns at least one sample, giving the values or the log.
    pub fn wait_for_samples(&self, promql: &str) -> Vec<f64> {
        wait_for(|| self.query(promql).filter(|v| !v.is_empty())).unwrap_or_else(|| {
            panic!(
                "Prometheus never returned samples for {promql}; log:\n{}",
                self.log_text()
            )
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus scraping `target` every second.
pub fn prometheus(dir: &Path, target: &str, honor_labels: bool) -> Server {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: profiler\n    honor_labels: {honor_labels}\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("config");
    let addr = format!("127.0.0.1:{}", free_port());
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address={addr}"),
        "--log.level=warn".to_string(),
    ];
    Server::start(PROMETHEUS, &args, addr, dir)
}

/// Starts a Pushgateway on a free loopback port.
pub fn pushgateway(dir: &Path) -> Server {
    let addr = format!("127.0.0.1:{}", free_port());
    Server::start(
        PUSHGATEWAY,
        &[format!("--web.listen-address={addr}")],
        addr,
        dir,
    )
}

/// A free loopback port (taken and released at once).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Polls `f` twice a second until it gives a value or [`PATIENCE`] runs out.
pub fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `GET path` over HTTP/1.0 (so the answer is never chunked); `None` if unreachable.
pub fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    Some((head.get(9..12)?.parse().ok()?, body.to_string()))
}

pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The program `name` found on `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Fails the test when `program` is missing from `PATH`: a real-server test never
/// passes without its server.
pub fn require(program: &str) {
    assert!(
        on_path(program).is_some(),
        "{program} is not on PATH: install Debian's prometheus and prometheus-pushgateway (scripts/test does)"
    );
}

/// Parses a text exposition into `series -> value` (series as written, e.g.
/// `name{a="b"}`), panicking on a sample line that is not `NAME[{LABELS}] VALUE`, on a
/// value that is not a number, or on a series given twice.
pub fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if words.first() == Some(&"TYPE") {
                assert!(
                    words.len() == 3
                        && ["counter", "gauge", "histogram", "summary", "untyped"]
                            .contains(&words[2]),
                    "bad TYPE line {line:?}"
                );
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample line without a value: {line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        assert!(
            series == name || (series.starts_with(&format!("{name}{{")) && series.ends_with('}')),
            "bad labels in {line:?}"
        );
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value is not a number in {line:?}"));
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "series given twice: {line:?}"
        );
    }
    samples
}

/// The value of the one series of metric `name` carrying every label of `labels`.
pub fn value_of(samples: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(series, _)| {
            series.split('{').next() == Some(name)
                && labels.iter().all(|(k, v)| {
                    let pair = format!("{k}=\"{v}\"");
                    series.contains(&format!("{{{pair}")) || series.contains(&format!(",{pair}"))
                })
        })
        .map(|(_, &v)| v)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one series {name} with {labels:?}, got {found:?} among {:?}",
        samples.keys().collect::<Vec<_>>()
    );
    found[0]
}
