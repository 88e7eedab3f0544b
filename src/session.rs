//! The telemetry of one run: its metrics registry, the `/metrics` server and the
//! Pushgateway pusher, and the projection gauges kept current while it runs. A [`Session`]
//! is the run's observer: on the inference thread it only bumps counters; projections are
//! recomputed off that thread, on a timer. Dropping it stops everything (without a final
//! push); [`Session::finish`] pushes the final values first.

use crate::measure::runner::RunObserver;
use crate::measure::samples::RequestSample;
use crate::metrics::{BuildInfo, Metrics};
use crate::model::card::ModelCard;
use crate::projection::profile::Profile;
use crate::projection::{self as proj, ProjectRequest, WeightsDtype};
use crate::push::{PushStats, Pusher};
use crate::server::ServerHandle;
use anyhow::{Context, Result};
use std::net::TcpListener;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the projection gauges are recomputed while a run goes on.
pub const LIVE_PROJECTION_INTERVAL: Duration = Duration::from_secs(1);

/// What the projection gauges project while the run goes on: `card` at the run's batch
/// and the mean prompt and output tokens so far, onto `profiles`.
pub struct LiveProjections {
    pub card: ModelCard,
    pub profiles: Vec<Profile>,
    pub dtype: WeightsDtype,
    pub batch: u32,
}

/// Where the run's metrics go; with neither, the session keeps no metrics at all.
pub struct SessionOptions<'a> {
    /// Serve `/metrics` here (bound before the model loads, so a port in use fails fast).
    pub listener: Option<TcpListener>,
    /// Push to this Pushgateway every `push_interval`.
    pub pushgateway: Option<&'a str>,
    pub push_interval: Duration,
    /// The `model` and `run_on` labels, and the build information.
    pub model: &'a str,
    pub run_on: &'a str,
    pub build: BuildInfo,
    /// Projections to keep current (`None`, or no profiles: none).
    pub live: Option<LiveProjections>,
}

/// The running telemetry of one run.
pub struct Session {
    metrics: Option<Arc<Metrics>>,
    /// Requests, prompt tokens and output tokens observed so far.
    tally: Arc<Mutex<(u64, u64, u64)>>,
    ticker: Mutex<Option<Ticker>>,
    pusher: Option<Pusher>,
    server: Option<ServerHandle>,
}

/// The thread that republishes the projection gauges.
struct Ticker {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Session {
    /// Creates the metrics (when they are served or pushed) and starts the server, the
    /// pusher and the projections' timer.
    pub fn start(o: SessionOptions<'_>) -> Result<Session> {
        let tally = Arc::new(Mutex::new((0, 0, 0)));
        if o.listener.is_none() && o.pushgateway.is_none() {
            return Ok(Session::quiet(tally));
        }
        let metrics = Arc::new(Metrics::new(o.model, o.run_on, o.build)?);
        let registry = metrics.registry();
        let server = o
            .listener
            .map(|l| crate::server::serve(l, registry.clone()))
            .transpose()?;
        let pusher = o
            .pushgateway
            .map(|url| Pusher::start(url, registry, o.model, o.run_on, o.push_interval))
            .transpose()?;
        let ticker = match o.live.filter(|l| !l.profiles.is_empty()) {
            Some(live) => Some(Ticker::start(live, metrics.clone(), tally.clone())?),
            None => None,
        };
        Ok(Session {
            metrics: Some(metrics),
            tally,
            ticker: Mutex::new(ticker),
            pusher,
            server,
        })
    }

    /// A session that keeps no metrics.
    fn quiet(tally: Arc<Mutex<(u64, u64, u64)>>) -> Session {
        Session {
            metrics: None,
            tally,
            ticker: Mutex::new(None),
            pusher: None,
            server: None,
        }
    }

    /// The run's metrics, `None` when they are neither served nor pushed.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_deref()
    }

    /// The address `/metrics` is served on.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(ServerHandle::local_addr)
    }

    /// Stops recomputing the projection gauges (before the report's projections set them
    /// a last time).
    pub fn stop_live(&self) {
        let ticker = self.ticker.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(t) = ticker {
            t.stop();
        }
    }

    /// Stops the projections' timer, pushes the final values (a failed push is a warning
    /// on stderr) and stops the server. The push counts, when pushing.
    pub fn finish(mut self) -> Option<PushStats> {
        self.stop_live();
        let stats = self.pusher.take().map(Pusher::finish);
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        stats
    }
}

impl Drop for Session {
    /// Stops the timer, the pusher (without a final push) and the server.
    fn drop(&mut self) {
        self.stop_live();
        drop(self.pusher.take());
        drop(self.server.take());
    }
}

impl RunObserver for Session {
    fn tokens(&self, n: usize) {
        if let Some(m) = &self.metrics {
            m.observe_tokens(n as u64);
        }
    }

    fn request(&self, s: &RequestSample) {
        if let Some(m) = &self.metrics {
            m.observe_sample(s, s.output_tokens);
        }
        // The report projects the means of the requests that finished; so do the gauges.
        if !s.is_ok() {
            return;
        }
        if let Ok(mut t) = self.tally.lock() {
            t.0 += 1;
            t.1 += s.prompt_tokens;
            t.2 += s.output_tokens;
        }
    }
}

impl Ticker {
    fn start(
        live: LiveProjections,
        metrics: Arc<Metrics>,
        tally: Arc<Mutex<(u64, u64, u64)>>,
    ) -> Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("live-projections".into())
            .spawn(move || {
                let mut published = 0;
                loop {
                    let (n, p, o) = tally.lock().map(|t| *t).unwrap_or_default();
                    if n != published {
                        published = n;
                        live.publish(&metrics, n, p, o);
                    }
                    match stopped.recv_timeout(LIVE_PROJECTION_INTERVAL) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        _ => return,
                    }
                }
            })
            .context("cannot start the live projections thread")?;
        Ok(Ticker { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

impl LiveProjections {
    /// Publishes the projections of the means of `n` requests with `prompt` and `output`
    /// tokens in all. A workload the profiles refuse is reported by the final
    /// projection; the gauges just stay as they are.
    pub fn publish(&self, metrics: &Metrics, n: u64, prompt: u64, output: u64) {
        if n == 0 {
            return;
        }
        let mean = |t: u64| ((t as f64 / n as f64).round() as u32).max(1);
        if let Ok(rows) = project_workload(
            &self.card,
            &self.profiles,
            self.dtype,
            self.batch,
            mean(prompt),
            mean(output),
        ) {
            for r in &rows {
                publish_projection(metrics, r);
            }
        }
    }
}

/// Projections of a workload shape (batch, prompt and output tokens per sequence) onto
/// `profiles`; none without profiles.
pub fn project_workload(
    card: &ModelCard,
    profiles: &[Profile],
    dtype: WeightsDtype,
    batch: u32,
    input_len: u32,
    output_len: u32,
) -> Result<Vec<proj::Projected>> {
    if profiles.is_empty() {
        return Ok(Vec::new());
    }
    let mut req = ProjectRequest::new(input_len.max(1), output_len.max(1), dtype);
    req.batch = batch.max(1);
    proj::project::project_profiles(card, profiles, &req)
}

/// Sets the `profiler_projected_*` gauges of one projection.
pub fn publish_projection(m: &Metrics, p: &proj::Projected) {
    let x = &p.projection;
    m.set_projection(&crate::metrics::Projection {
        profile: &x.profile,
        instance: &x.instance,
        tp: x.tp,
        batch: x.batch,
        ttft_s: x.ttft_ms / 1e3,
        tpot_s: x.tpot_ms / 1e3,
        cost_usd_per_million_output_tokens: x.cost_usd_per_million_output_tokens,
        cost_usd_per_million_tokens: x.cost_usd_per_million_tokens,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::samples::SampleStatus;
    use std::io::{Read, Write};
    use std::path::Path;

    fn sample(ok: bool) -> RequestSample {
        RequestSample {
            index: 0,
            start_offset_ms: 0.0,
            prompt_tokens: 32,
            output_tokens: 8,
            tokenize_ms: 0.1,
            ttft_ms: ok.then_some(12.0),
            e2e_ms: 47.0,
            tpot_ms: ok.then_some(5.0),
            decode_step_ms: vec![5.0; 7],
            batch: 1,
            status: if ok {
                SampleStatus::Ok
            } else {
                SampleStatus::Error {
                    message: "out of memory".into(),
                }
            },
        }
    }

    fn scrape(addr: std::net::SocketAddr) -> String {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).unwrap();
        body
    }

    fn value(body: &str, series: &str) -> Option<f64> {
        body.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn options(live: Option<LiveProjections>) -> SessionOptions<'static> {
        SessionOptions {
            listener: Some(TcpListener::bind("127.0.0.1:0").unwrap()),
            pushgateway: None,
            push_interval: Duration::from_secs(5),
            model: "test/tiny",
            run_on: "cpu",
            build: BuildInfo::default(),
            live,
        }
    }

    #[test]
    fn without_a_server_or_gateway_nothing_is_kept() {
        let mut o = options(None);
        o.listener = None;
        let s = Session::start(o).unwrap();
        assert!(s.metrics().is_none() && s.metrics_addr().is_none());
        s.request(&sample(true));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn serves_what_it_observes_and_stops_serving_when_dropped() {
        let s = Session::start(options(None)).unwrap();
        let addr = s.metrics_addr().unwrap();
        s.tokens(3);
        s.request(&sample(true));
        s.request(&sample(false));
        let body = scrape(addr);
        let ok = r#"profiler_requests_total{model="test/tiny",run_on="cpu",status="ok"}"#;
        let err = r#"profiler_requests_total{model="test/tiny",run_on="cpu",status="error"}"#;
        assert_eq!(value(&body, ok), Some(1.0), "{body}");
        assert_eq!(value(&body, err), Some(1.0), "{body}");
        drop(s);
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn projection_gauges_follow_the_run_off_its_thread() {
        let home = Path::new(env!("CARGO_MANIFEST_DIR"));
        let live = LiveProjections {
            card: crate::model::card::find(&home.join("models"), "llama").unwrap(),
            profiles: crate::projection::profile::load_selection(
                &home.join("profiles"),
                "inf2-profile",
            )
            .unwrap(),
            dtype: WeightsDtype::Bf16,
            batch: 1,
        };
        let s = Session::start(options(Some(live))).unwrap();
        let addr = s.metrics_addr().unwrap();
        let gauge = "profiler_projected_tpot_seconds{";
        assert_eq!(value(&scrape(addr), gauge), None, "nothing to project yet");
        s.request(&sample(true));
        // The timer publishes within a second or so; wait far longer before giving up.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut body = scrape(addr);
        while value(&body, gauge).is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            body = scrape(addr);
        }
        assert!(value(&body, gauge).is_some_and(|t| t > 0.0), "{body}");
        assert_eq!(s.finish(), None);
    }
}
