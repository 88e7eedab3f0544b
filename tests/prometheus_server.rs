//! Real-server tests of the metrics: a real Prometheus (Debian package `prometheus`)
//! scrapes the metrics endpoint, and a real Pushgateway (`prometheus-pushgateway`)
//! receives the pushes and is itself scraped by Prometheus; both are asked through
//! Prometheus' HTTP API whether the samples arrived. Each server runs on loopback on a
//! free port with its files in a temporary directory, and is killed whatever happens.
//!
//! Here a thread stands in for inference, observing requests and tokens through the
//! library; `tests/prometheus_e2e.rs` replaces it with `profiler run --duration 40s
//! --metrics-addr 127.0.0.1:PORT` (or `--pushgateway URL`) of the default model. The
//! servers and the HTTP client are in `tests/common/prom.rs`.
//! A test whose server binary is absent fails, naming the package to install
//! (`scripts/test` installs them).

mod common;

use common::prom::{get, prometheus, pushgateway, require, PROMETHEUS, PUSHGATEWAY};
use profiler::metrics::{BuildInfo, HostMetric, Metrics, Projection};
use profiler::push::Pusher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn metrics() -> Arc<Metrics> {
    let build = BuildInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        tch: "0.24.0".into(),
        torch: "test".into(),
        dtype: "f32".into(),
        device_name: "cpu".into(),
    };
    Arc::new(Metrics::new("test/tiny", "cpu", build).expect("metrics"))
}

/// Stands in for inference: a decode step every few milliseconds and a finished
/// request every 8 tokens, until stopped. Gives the number of finished requests.
struct FakeRun {
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl FakeRun {
    fn start(m: Arc<Metrics>) -> FakeRun {
        let running = Arc::new(AtomicBool::new(true));
        let thread = {
            let running = running.clone();
            std::thread::spawn(move || {
                let mut requests = 0u64;
                while running.load(Ordering::Relaxed) {
                    for _ in 0..8 {
                        m.observe_tokens(1);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    m.observe_request(0.012, Some(0.005), 0.05, 32, 8);
                    requests += 1;
                }
                requests
            })
        };
        FakeRun {
            running,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.running.store(false, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("run thread"))
            .unwrap_or(0)
    }
}

impl Drop for FakeRun {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
#[cfg_attr(
    not(feature = "prometheus-tests"),
    ignore = "needs the Prometheus server, promtool and Pushgateway (Debian packages; scripts/test installs them and turns on prometheus-tests)"
)]
fn prometheus_scrapes_the_endpoint_during_a_run() {
    require(PROMETHEUS);
    let dir = tempfile::tempdir().expect("temp dir");
    let m = metrics();
    let listener = profiler::server::bind("127.0.0.1:0").expect("bind");
    let endpoint = profiler::server::serve(listener, m.registry()).expect("serve");
    m.set_projection(&Projection {
        profile: "inf2",
        instance: "inf2.xlarge",
        tp: 2,
        batch: 1,
        ttft_s: 0.2,
        tpot_s: 0.03,
        cost_usd_per_million_output_tokens: Some(8.4),
        cost_usd_per_million_tokens: Some(4.2),
    });
    m.set_host_error(HostMetric::Ttft, -0.04);
    m.set_host_error(HostMetric::Tpot, 0.02);
    let run = FakeRun::start(m);
    let prom = prometheus(dir.path(), &endpoint.local_addr().to_string(), false);

    let rate = prom.wait_for_samples(
        r#"rate(profiler_generated_tokens_total{model="test/tiny",run_on="cpu"}[20s]) > 0"#,
    );
    assert!(rate.iter().all(|&r| r > 0.0), "{rate:?}");
    let ttft = prom.wait_for_samples("profiler_ttft_seconds_count > 0");
    assert!(ttft[0] >= 1.0, "{ttft:?}");
    let p50 = prom
        .wait_for_samples("histogram_quantile(0.5, rate(profiler_ttft_seconds_bucket[20s])) > 0");
    // 12 ms falls in the (0.01, 0.02] bucket.
    assert!(p50[0] > 0.01 && p50[0] <= 0.02, "{p50:?}");
    assert_eq!(prom.wait_for_samples(r#"up{job="profiler"}"#), vec![1.0]);
    prom.wait_for_samples("profiler_tokens_per_second > 0");
    prom.wait_for_samples("profiler_build_info == 1");
    // The instance type keeps its own label through the scrape (not `exported_instance`).
    assert_eq!(
        prom.wait_for_samples(
            r#"profiler_projected_cost_usd_per_million_output_tokens{instance_type="inf2.xlarge",tp="2"}"#
        ),
        vec![8.4]
    );
    prom.wait_for_samples(r#"process_resident_memory_bytes{model="test/tiny"} > 0"#);

    // Every query of the Grafana dashboard parses and finds data.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/grafana-dashboard.json"
    );
    let text = std::fs::read_to_string(path).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    for target in panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
    {
        let expr = target["expr"].as_str().expect("expr");
        let expr = expr
            .replace("$__rate_interval", "20s")
            .replace("$model", ".*")
            .replace("$run_on", ".*");
        prom.wait_for_samples(&expr);
    }
    run.stop();
    endpoint.shutdown();
}

#[test]
#[cfg_attr(
    not(feature = "prometheus-tests"),
    ignore = "needs the Prometheus server, promtool and Pushgateway (Debian packages; scripts/test installs them and turns on prometheus-tests)"
)]
fn the_pushgateway_receives_the_pushes_and_the_final_values() {
    require(PUSHGATEWAY);
    require(PROMETHEUS);
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = pushgateway(dir.path());
    let gw_addr = gateway.addr.clone();
    let m = metrics();
    let pusher = Pusher::start(
        &format!("http://{gw_addr}"),
        m.registry(),
        "test/tiny",
        "cpu",
        Duration::from_secs(1),
    )
    .expect("pusher");
    let run = FakeRun::start(m);
    let prom = prometheus(dir.path(), &gw_addr, true);

    let rate = prom.wait_for_samples(r#"rate(profiler_generated_tokens_total{job="profiler",model="test/tiny",run_on="cpu"}[20s]) > 0"#);
    assert!(rate.iter().all(|&r| r > 0.0), "{rate:?}");
    prom.wait_for_samples(r#"profiler_ttft_seconds_count{job="profiler"} > 0"#);

    let requests = run.stop();
    let stats = pusher.finish();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(stats.pushed >= 2, "{stats:?}");
    // The final push carries the final values.
    let (status, text) = get(&gw_addr, "/metrics").expect("gateway answers");
    assert_eq!(status, 200);
    let value = |name: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains(r#"job="profiler""#)
                    && l.contains(r#"model="test/tiny""#)
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from the gateway:\n{text}"))
    };
    assert_eq!(value("profiler_ttft_seconds_count"), requests as f64);
    // The run stops between requests, so every counted token belongs to a finished one.
    assert_eq!(
        value("profiler_generated_tokens_total"),
        (requests * 8) as f64
    );
}
