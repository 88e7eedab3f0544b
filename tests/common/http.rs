//! A running `profiler serve` on the default model, on a free loopback port, and a plain
//! HTTP/1.1 client over std's TcpStream (one request per connection) for talking to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::Duration;

/// A `profiler serve` child process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// stderr lines after the start-up line, read by a thread.
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Server {
    /// Starts `profiler serve --model llama --addr 127.0.0.1:0 EXTRA...` and waits for its
    /// start-up line (which names the port it got).
    pub fn start(extra: &[&str]) -> Server {
        super::default_weights();
        let mut child = super::profiler()
            .args([
                "serve",
                "--model",
                "llama",
                "--run-on",
                "cpu",
                "--addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start profiler serve");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(300))
                .unwrap_or_else(|_| panic!("profiler serve did not start; stderr: {seen:?}"));
            if let Some(rest) = line.split("on http://").nth(1) {
                let a = rest.split('/').next().unwrap();
                break a.parse().expect("address in the start-up line");
            }
            seen.push(line);
        };
        Server {
            child,
            addr,
            stderr: rx,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        request(self.addr, "POST", path, Some(body.as_bytes()))
    }

    /// A metric's value from `/metrics` (the first sample of that name).
    pub fn metric(&self, name: &str) -> f64 {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200);
        r.body
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in /metrics"))
    }

    /// Sends SIGINT and waits: exit status, stdout, remaining stderr.
    pub fn interrupt(mut self) -> (Option<i32>, String, String) {
        // SAFETY: kill(2) with a pid of our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let status = self.child.wait().unwrap();
        let mut err = Vec::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            err.push(l);
        }
        (status.code(), out, err.join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status, headers (lower-case names) and body (de-chunked).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of a server-sent-events body.
    pub fn events(&self) -> Vec<String> {
        self.body
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A body the server refuses early may find the connection closed: that is its answer.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

/// Parses a raw HTTP/1.1 response.
pub fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {text:?}"));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
