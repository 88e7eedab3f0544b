//! The Prometheus scrape endpoint: `GET /metrics` (text exposition format) and
//! `GET /healthz`, served by axum on hyper from a tokio runtime of its own thread, apart
//! from inference.
//!
//! Hostile input stays bounded: hyper refuses a request head over
//! [`MAX_REQUEST_HEAD_BYTES`] (431) and drops a client that does not finish its head within
//! [`READ_TIMEOUT`] (answered 408 here); tower's concurrency limit serves at most
//! [`MAX_CONNECTIONS`] connections at once (further ones wait in the listen backlog) and
//! its timeout ends any connection after [`CONNECTION_TIMEOUT`]. One request per connection
//! (`Connection: close`). Every connection is its own task, so a slow client never holds
//! up another scrape, and a scrape only reads atomics, so it never holds up a decode step.

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::Registry;
use std::convert::Infallible;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Largest request head (request line and headers) accepted; larger ones get 431. Also the
/// smallest read buffer hyper allows.
pub const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send its whole request head; slower ones get 408.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection is kept, whatever it does.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Longest a shutdown waits for the connections being served to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to a client too slow with its request head. hyper closes such a connection
/// without a word; this tells the client why.
const REQUEST_TIMEOUT_ANSWER: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 34\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nrequest head not received in time\n";

/// Binds the metrics listener. `addr` is `PORT`, `:PORT` (both on 127.0.0.1, so nothing
/// is exposed unless asked) or `HOST:PORT`. A port in use is a one-line error, meant to
/// be reported before the model loads.
pub fn bind(addr: &str) -> Result<TcpListener> {
    let spec = normalize_addr(addr)?;
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|e| anyhow!("invalid metrics address {addr:?} ({e}); expected PORT, :PORT or HOST:PORT, e.g. 127.0.0.1:9464"))?
        .collect();
    TcpListener::bind(&addrs[..]).map_err(|e| match e.kind() {
        ErrorKind::AddrInUse => {
            anyhow!("cannot listen on {spec}: address already in use; expected a free port")
        }
        ErrorKind::AddrNotAvailable => anyhow!(
            "cannot listen on {spec}: address not available; expected an address of this machine"
        ),
        ErrorKind::PermissionDenied => {
            anyhow!("cannot listen on {spec}: permission denied; expected a port above 1023")
        }
        _ => anyhow!("cannot listen on {spec}: {e}"),
    })
}

/// Turns `PORT` and `:PORT` into `127.0.0.1:PORT`; leaves `HOST:PORT` alone.
fn normalize_addr(addr: &str) -> Result<String> {
    let a = addr.trim();
    let port = a.strip_prefix(':').unwrap_or(a);
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = port.parse().map_err(|_| {
            anyhow!("invalid metrics address {addr:?}: expected a port from 0 to 65535")
        })?;
        return Ok(format!("127.0.0.1:{port}"));
    }
    if a.is_empty() {
        bail!("invalid metrics address {addr:?}: expected PORT, :PORT or HOST:PORT, e.g. 127.0.0.1:9464");
    }
    Ok(a.to_string())
}

/// A running metrics server; dropping it stops it too.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops open connections and waits for the server thread to end.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Serves `registry` on `listener` from a new thread running a single-threaded tokio
/// runtime, until [`ServerHandle::shutdown`].
pub fn serve(listener: TcpListener, registry: Registry) -> Result<ServerHandle> {
    let addr = listener
        .local_addr()
        .context("cannot read the metrics listener's address")?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("cannot make the metrics listener on {addr} non-blocking"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the metrics server's tokio runtime")?;
    let listener = {
        let _guard = rt.enter();
        tokio::net::TcpListener::from_std(listener)
            .with_context(|| format!("cannot serve metrics on {addr}"))?
    };
    let (stop, stopped) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            rt.block_on(accept_loop(listener, router(registry), stopped));
            rt.shutdown_timeout(SHUTDOWN_GRACE);
        })
        .context("cannot start the metrics server thread")?;
    Ok(ServerHandle {
        addr,
        stop,
        thread: Some(thread),
    })
}

/// The routes: `GET /metrics` and `GET /healthz`; other methods there get 405 (`HEAD`
/// too), other paths 404.
fn router(registry: Registry) -> Router {
    Router::new()
        .route("/metrics", any(scrape))
        .route("/healthz", any(healthz))
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "not found; the endpoints are /metrics and /healthz\n",
            )
        })
        .with_state(Arc::new(registry))
}

async fn scrape(State(registry): State<Arc<Registry>>, method: Method) -> Response {
    if method != Method::GET {
        return method_not_allowed();
    }
    match crate::metrics::encode_text(&registry) {
        Ok(body) => reply(StatusCode::OK, METRICS_CONTENT_TYPE, body),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")),
    }
}

async fn healthz(method: Method) -> Response {
    if method != Method::GET {
        return method_not_allowed();
    }
    text(StatusCode::OK, "ok")
}

fn method_not_allowed() -> Response {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    reply(
        status,
        "text/plain; charset=utf-8",
        body.into().into_bytes(),
    )
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from(body),
    )
        .into_response()
}

/// Accepts connections until told to stop, then waits up to [`SHUTDOWN_GRACE`] for those
/// being served (told to finish their request and close) before the runtime drops them.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    // Every connection holds a receiver of `closing`; the sender sees when all are gone.
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = ServiceBuilder::new()
        .concurrency_limit(MAX_CONNECTIONS)
        .timeout(CONNECTION_TIMEOUT)
        .service_fn(
            move |(stream, closing): (TcpStream, watch::Receiver<bool>)| {
                serve_connection(stream, app.clone(), closing)
            },
        );
    loop {
        // A free slot first, then a connection: past the limit, clients wait in the backlog.
        tokio::select! {
            ready = connections.ready() => if ready.is_err() { break },
            _ = stop.changed() => break,
        }
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    eprintln!("warning: the metrics endpoint cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        tokio::spawn(connections.call((stream, closing_rx.clone())));
    }
    drop((listener, closing_rx));
    let _ = closing.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, closing.closed()).await;
}

/// Serves one connection with hyper: one request, then close. A client too slow with its
/// head is answered 408; whatever the client still sends afterwards (a body, pipelined
/// requests) is read for a moment, so that closing does not reset the connection before
/// the client has read the answer.
async fn serve_connection(
    mut stream: TcpStream,
    app: Router,
    mut closing: watch::Receiver<bool>,
) -> Result<(), Infallible> {
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        app.clone().oneshot(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        .keep_alive(false)
        .title_case_headers(true);
    let served = {
        let conn = http.serve_connection(TokioIo::new(&mut stream), service);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            // Shutting down: finish the request under way (if any), then close.
            _ = closing.changed() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if matches!(&served, Err(e) if e.is_timeout()) {
        let _ = stream.write_all(REQUEST_TIMEOUT_ANSWER).await;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let mut left = 64 * 1024usize;
    let drain = async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{BuildInfo, Metrics};
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};

    fn metrics() -> (Registry, Arc<Metrics>) {
        let build = BuildInfo {
            version: "0.1.0".into(),
            tch: "0.24.0".into(),
            torch: "2.9.0".into(),
            dtype: "f32".into(),
            device_name: "cpu".into(),
        };
        let m = Metrics::new("tiny", "cpu", build).expect("metrics");
        (m.registry(), Arc::new(m))
    }

    fn start() -> (ServerHandle, Arc<Metrics>) {
        let (registry, m) = metrics();
        let listener = bind("127.0.0.1:0").expect("bind");
        (serve(listener, registry).expect("serve"), m)
    }

    /// Sends raw bytes and returns (status, headers, body) of the answer.
    fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        s.write_all(request).expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
        let status = head[9..12].parse().expect("status");
        (status, head.to_string(), body.to_string())
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        raw(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    }

    /// The value of the sample line `name{labels} value` whose name and labels start with
    /// `prefix`.
    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn scrape_parses_with_names_labels_and_counts() {
        let (server, m) = start();
        m.observe_tokens(3);
        m.observe_request(0.02, Some(0.004), 0.03, 10, 4);
        m.observe_request(0.5, None, 0.5, 10, 1);
        let (status, head, body) = get(server.local_addr(), "/metrics");
        assert_eq!(status, 200);
        assert!(
            head.contains(&format!("Content-Type: {METRICS_CONTENT_TYPE}")),
            "{head}"
        );
        let labels = r#"{model="tiny",run_on="cpu"}"#;
        assert_eq!(
            sample(&body, &format!("profiler_ttft_seconds_count{labels}")),
            Some(2.0)
        );
        assert_eq!(
            sample(&body, &format!("profiler_tpot_seconds_count{labels}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&body, &format!("profiler_generated_tokens_total{labels}")),
            Some(5.0)
        );
        assert_eq!(
            sample(&body, &format!("profiler_prompt_tokens_total{labels}")),
            Some(20.0)
        );
        assert_eq!(
            sample(
                &body,
                r#"profiler_requests_total{model="tiny",run_on="cpu",status="ok"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &body,
                r#"profiler_ttft_seconds_bucket{model="tiny",run_on="cpu",le="0.03"}"#
            ),
            Some(1.0)
        );
        assert!(sample(&body, &format!("profiler_tokens_per_second{labels}")).unwrap_or(0.0) > 0.0);
        assert!(
            sample(&body, &format!("process_resident_memory_bytes{labels}")).unwrap_or(0.0) > 0.0
        );
        assert!(
            body.contains("# TYPE profiler_ttft_seconds histogram"),
            "{body}"
        );
        assert!(
            body.contains("# TYPE profiler_requests_total counter"),
            "{body}"
        );
        server.shutdown();
    }

    /// The program `name` found on `PATH`.
    fn on_path(name: &str) -> Option<std::path::PathBuf> {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }

    #[test]
    #[cfg_attr(
        not(feature = "prometheus-tests"),
        ignore = "needs the Prometheus server, promtool and Pushgateway (Debian packages; scripts/test installs them and turns on prometheus-tests)"
    )]
    fn promtool_accepts_the_scrape() {
        let promtool = on_path("promtool")
            .expect("promtool is not on PATH: install Debian's prometheus (scripts/test does)");
        let (server, m) = start();
        m.observe_request(0.02, Some(0.004), 0.03, 10, 4);
        m.observe_error();
        let (_, _, body) = get(server.local_addr(), "/metrics");
        let mut child = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("write to promtool");
        let out = child.wait_with_output().expect("promtool ends");
        assert!(
            out.status.success(),
            "promtool check metrics failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn fifty_concurrent_scrapes_succeed_while_requests_are_observed() {
        let (server, m) = start();
        let addr = server.local_addr();
        let running = Arc::new(AtomicBool::new(true));
        let observer = {
            let (m, running) = (m.clone(), running.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while running.load(Ordering::Relaxed) {
                    m.observe_tokens(1);
                    m.observe_request(0.01, Some(0.002), 0.02, 4, 1);
                    n += 1;
                }
                n
            })
        };
        let scrapes: Vec<_> = (0..50)
            .map(|_| std::thread::spawn(move || get(addr, "/metrics")))
            .collect();
        let results: Vec<_> = scrapes
            .into_iter()
            .map(|t| t.join().expect("scrape thread"))
            .collect();
        // Counters only grow between two scrapes, and histogram counts equal finished requests.
        let key = r#"profiler_generated_tokens_total{model="tiny",run_on="cpu"}"#;
        let first = sample(&get(addr, "/metrics").2, key).expect("counter");
        running.store(false, Ordering::Relaxed);
        let observed = observer.join().expect("observer");
        let (_, _, last) = get(addr, "/metrics");
        for (status, _, body) in &results {
            assert_eq!(*status, 200);
            assert!(body.contains("profiler_generated_tokens_total"));
        }
        let last_tokens = sample(&last, key).expect("counter");
        assert!(last_tokens >= first);
        assert_eq!(last_tokens, observed as f64);
        let count = r#"profiler_ttft_seconds_count{model="tiny",run_on="cpu"}"#;
        assert_eq!(sample(&last, count), Some(observed as f64));
    }

    #[test]
    fn health_unknown_paths_and_other_methods() {
        let (server, _m) = start();
        let addr = server.local_addr();
        let (status, head, body) = get(addr, "/healthz");
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert!(head.contains("Connection: close"), "{head}");
        assert_eq!(get(addr, "/metrics?x=1").0, 200);
        assert_eq!(get(addr, "/").0, 404);
        assert_eq!(get(addr, "/metricsx").0, 404);
        let (status, head, _) = raw(
            addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        );
        assert_eq!(status, 405);
        assert!(head.contains("Allow: GET"), "{head}");
        assert_eq!(raw(addr, b"DELETE /healthz HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(raw(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(raw(addr, b"garbage\r\n\r\n").0, 400);
        // hyper speaks HTTP/1.x only and refuses another version as a malformed request.
        assert_eq!(raw(addr, b"GET /metrics HTTP/2.0\r\n\r\n").0, 400);
    }

    #[test]
    fn an_oversized_head_is_refused() {
        let (server, _m) = start();
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
        request.resize(MAX_REQUEST_HEAD_BYTES + 100, b'a');
        request.extend_from_slice(b"\r\n\r\n");
        assert_eq!(raw(server.local_addr(), &request).0, 431);
    }

    #[test]
    fn a_stalled_client_blocks_no_scrape_and_is_dropped() {
        let (server, _m) = start();
        let addr = server.local_addr();
        let mut stalled: Vec<_> = (0..5)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(addr).expect("connect");
                s.write_all(b"GET /metr").expect("write");
                s
            })
            .collect();
        let mut idle = std::net::TcpStream::connect(addr).expect("connect");
        assert_eq!(get(addr, "/metrics").0, 200);
        // The server gives up on them (408) rather than waiting forever.
        for s in stalled.iter_mut().chain(std::iter::once(&mut idle)) {
            s.set_read_timeout(Some(Duration::from_secs(60)))
                .expect("timeout");
            let mut answer = String::new();
            s.read_to_string(&mut answer)
                .expect("server closes the connection");
            assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        }
    }

    #[test]
    fn connections_past_the_limit_wait_for_a_free_slot() {
        let (server, _m) = start();
        let addr = server.local_addr();
        // Accepted in order, these hold every slot (each until its 5 s head timeout).
        let mut held: Vec<_> = (0..MAX_CONNECTIONS)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        let mut late = std::net::TcpStream::connect(addr).expect("connect (backlog)");
        late.write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
            .expect("write");
        late.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        let waiting = late
            .read(&mut byte)
            .expect_err("no answer while every slot is held");
        assert!(
            matches!(
                waiting.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{waiting}"
        );
        // One slot frees: the waiting client is served.
        drop(held.pop());
        late.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut answer = String::new();
        late.read_to_string(&mut answer).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    }

    #[test]
    fn shutdown_closes_the_port() {
        let (server, _m) = start();
        let addr = server.local_addr();
        server.shutdown();
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_port_in_use_is_a_one_line_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        for spec in [
            format!("{port}"),
            format!(":{port}"),
            format!("127.0.0.1:{port}"),
        ] {
            let msg = format!("{:#}", bind(&spec).expect_err("port is taken"));
            assert_eq!(
                msg,
                format!("cannot listen on 127.0.0.1:{port}: address already in use; expected a free port")
            );
        }
    }

    #[test]
    fn addresses_default_to_loopback() {
        let l = bind("0").expect("bind");
        assert!(l.local_addr().expect("addr").ip().is_loopback());
        let l = bind(":0").expect("bind");
        assert!(l.local_addr().expect("addr").ip().is_loopback());
        assert_eq!(normalize_addr(" 9464 ").expect("port"), "127.0.0.1:9464");
        assert_eq!(
            normalize_addr("0.0.0.0:9464").expect("addr"),
            "0.0.0.0:9464"
        );
        for bad in ["", ":", ":70000", "localhost", "127.0.0.1:x"] {
            let msg = format!("{:#}", bind(bad).expect_err(bad));
            assert!(msg.starts_with("invalid metrics address"), "{bad}: {msg}");
            assert!(msg.contains("expected"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }
}
