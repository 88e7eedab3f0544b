//! Prometheus metrics of a run: latency histograms, request and token counters, the
//! current token rate, projections and build information.
//!
//! Every metric carries the labels `model` and `run_on`, so that several runs scraped by
//! one Prometheus (or pushed to one Pushgateway) stay apart: they are the const labels of
//! the run's own registry (`Registry::new_custom`), never the process-wide default one, so
//! tests and runs cannot see each other's values.
//!
//! Updates are cheap and never wait on a scrape: counters and histograms are atomics, the
//! token rate is a lock-free ring of per-second slots, and the `status` children of
//! `profiler_requests_total` are resolved once up front. Only the projection gauges take a
//! lock (label lookup), and they are set once per run, off the decode path.

use anyhow::{anyhow, bail, Result};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Histogram bucket bounds in seconds, from 1 ms to 60 s with neighbours at most a factor
/// of 2 apart, so that `histogram_quantile` stays within a bucket of the truth for TPOT
/// (milliseconds) as well as for TTFT and end-to-end latency (up to a minute).
pub const LATENCY_BUCKETS: [f64; 25] = [
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75,
    1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 50.0, 60.0,
];

/// Width of the window `profiler_tokens_per_second` averages over.
pub const TOKEN_RATE_WINDOW_S: u64 = 30;

/// Versions and settings exported as the labels of `profiler_build_info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// Version of this profiler.
    pub version: String,
    /// Version of the tch crate.
    pub tch: String,
    /// Version of libtorch.
    pub torch: String,
    /// Dtype the model runs in (e.g. `bf16`).
    pub dtype: String,
    /// Name of the device inference runs on (e.g. the GPU model or the CPU).
    pub device_name: String,
}

impl BuildInfo {
    /// The labels of a run or server on `env`.
    pub fn of(env: &crate::schema::Environment) -> Self {
        BuildInfo {
            version: env.profiler_version.clone(),
            tch: env.tch_version.clone(),
            torch: env.torch_version.clone(),
            dtype: env.dtype.clone(),
            device_name: env.device_name.clone(),
        }
    }
}

/// One projection of the measured workload onto a device profile, exported as the
/// `profiler_projected_*` gauges.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection<'a> {
    /// Name of the calibration profile (e.g. `inf2-neuron`).
    pub profile: &'a str,
    /// AWS instance type (e.g. `inf2.xlarge`).
    pub instance: &'a str,
    /// Tensor-parallel degree.
    pub tp: u32,
    /// Batch size.
    pub batch: u32,
    /// Projected time to first token in seconds.
    pub ttft_s: f64,
    /// Projected time per output token in seconds.
    pub tpot_s: f64,
    /// Projected cost in US dollars per million generated tokens (`None` where the
    /// instance has no price of the chosen kind: the gauge is then not set).
    pub cost_usd_per_million_output_tokens: Option<f64>,
    /// Projected cost in US dollars per million tokens, prompt and generated together.
    pub cost_usd_per_million_tokens: Option<f64>,
}

/// Which measured quantity a host projection error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostMetric {
    /// Time to first token.
    Ttft,
    /// Time per output token.
    Tpot,
}

impl HostMetric {
    /// The value of the `metric` label.
    pub fn label(self) -> &'static str {
        match self {
            HostMetric::Ttft => "ttft",
            HostMetric::Tpot => "tpot",
        }
    }
}

/// The metrics of one run, in a registry of their own.
pub struct Metrics {
    registry: Registry,
    ttft: Histogram,
    tpot: Histogram,
    e2e: Histogram,
    requests_ok: IntCounter,
    requests_error: IntCounter,
    prompt_tokens: IntCounter,
    generated_tokens: IntCounter,
    rate: Arc<TokenRate>,
    /// Tokens reported through `observe_tokens` since the last finished or failed request,
    /// so that `observe_request` does not count them twice.
    streamed: AtomicU64,
    projected_ttft: GaugeVec,
    projected_tpot: GaugeVec,
    projected_cost_output: GaugeVec,
    projected_cost: GaugeVec,
    host_error: GaugeVec,
}

impl Metrics {
    /// Creates the metrics and registers them, with the process metrics (CPU, RSS, open
    /// file descriptors), into a new registry whose series all carry `model` and `run_on`.
    /// Fails if `model` or `run_on` is empty.
    pub fn new(model: &str, run_on: &str, build: BuildInfo) -> Result<Metrics> {
        if model.is_empty() || run_on.is_empty() {
            bail!("metrics: model ({model:?}) and run_on ({run_on:?}) must both be non-empty label values");
        }
        let labels: HashMap<String, String> = [("model", model), ("run_on", run_on)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let registry = Registry::new_custom(None, Some(labels))
            .map_err(|e| anyhow!("cannot create the metrics registry: {e}"))?;
        let registry = &registry;
        let histogram = |name: &str, help: &str| -> Result<Histogram> {
            let h = Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            )
            .map_err(|e| anyhow!("cannot create metric {name}: {e}"))?;
            register(registry, name, h.clone())?;
            Ok(h)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter> {
            let c = IntCounter::with_opts(Opts::new(name, help))
                .map_err(|e| anyhow!("cannot create metric {name}: {e}"))?;
            register(registry, name, c.clone())?;
            Ok(c)
        };
        let projection_gauge = |name: &str, help: &str| -> Result<GaugeVec> {
            let g = GaugeVec::new(
                Opts::new(name, help),
                &["profile", "instance_type", "tp", "batch"],
            )
            .map_err(|e| anyhow!("cannot create metric {name}: {e}"))?;
            register(registry, name, g.clone())?;
            Ok(g)
        };

        let ttft = histogram(
            "profiler_ttft_seconds",
            "Time to first token of finished requests: from the prompt tokens being submitted to the first generated token.",
        )?;
        let tpot = histogram(
            "profiler_tpot_seconds",
            "Time per output token of finished requests with at least two generated tokens.",
        )?;
        let e2e = histogram(
            "profiler_request_duration_seconds",
            "End-to-end latency of finished requests: from the prompt tokens being submitted to the last token.",
        )?;

        let name = "profiler_requests_total";
        let requests = IntCounterVec::new(
            Opts::new(
                name,
                "Requests by outcome: ok (finished) or error (failed).",
            ),
            &["status"],
        )
        .map_err(|e| anyhow!("cannot create metric {name}: {e}"))?;
        register(registry, name, requests.clone())?;
        let requests_ok = requests.with_label_values(&["ok"]);
        let requests_error = requests.with_label_values(&["error"]);

        let prompt_tokens = counter(
            "profiler_prompt_tokens_total",
            "Prompt tokens of finished requests.",
        )?;
        let generated_tokens = counter(
            "profiler_generated_tokens_total",
            "Generated tokens, counted as each decode step finishes.",
        )?;

        let name = "profiler_tokens_per_second";
        let gauge = Gauge::with_opts(Opts::new(
            name,
            "Generated tokens per second over the last 30 seconds.",
        ))
        .map_err(|e| anyhow!("cannot create metric {name}: {e}"))?;
        let rate = Arc::new(TokenRate::new(Instant::now()));
        register(
            registry,
            name,
            RateCollector {
                rate: rate.clone(),
                gauge,
            },
        )?;

        let projected_ttft = projection_gauge(
            "profiler_projected_ttft_seconds",
            "Time to first token projected onto a device profile and instance.",
        )?;
        let projected_tpot = projection_gauge(
            "profiler_projected_tpot_seconds",
            "Time per output token projected onto a device profile and instance.",
        )?;
        let projected_cost_output = projection_gauge(
            "profiler_projected_cost_usd_per_million_output_tokens",
            "Projected cost in US dollars per million generated tokens on a device profile and instance.",
        )?;
        let projected_cost = projection_gauge(
            "profiler_projected_cost_usd_per_million_tokens",
            "Projected cost in US dollars per million tokens, prompt and generated together, on a device profile and instance.",
        )?;

        let name = "profiler_host_projection_error_ratio";
        let host_error = GaugeVec::new(
            Opts::new(
                name,
                "Relative error of projecting this host's own measurement from its measured rates: (projected - measured) / measured.",
            ),
            &["metric"],
        )
        .map_err(|e| anyhow!("cannot create metric {name}: {e}"))?;
        register(registry, name, host_error.clone())?;

        let name = "profiler_build_info";
        let build_info = Gauge::with_opts(
            Opts::new(
                name,
                "Always 1; the labels name the versions and settings of this run.",
            )
            .const_label("version", build.version)
            .const_label("tch", build.tch)
            .const_label("torch", build.torch)
            .const_label("dtype", build.dtype)
            .const_label("device_name", build.device_name),
        )
        .map_err(|e| anyhow!("cannot create metric {name}: {e}"))?;
        build_info.set(1.0);
        register(registry, name, build_info)?;

        register(
            registry,
            "process_*",
            prometheus::process_collector::ProcessCollector::for_self(),
        )?;

        Ok(Metrics {
            registry: registry.clone(),
            ttft,
            tpot,
            e2e,
            requests_ok,
            requests_error,
            prompt_tokens,
            generated_tokens,
            rate,
            streamed: AtomicU64::new(0),
            projected_ttft,
            projected_tpot,
            projected_cost_output,
            projected_cost,
            host_error,
        })
    }

    /// The registry holding these metrics, to serve or push (a cheap handle to it).
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Records one finished request: its latencies in seconds (`tpot_s` is `None` with
    /// fewer than two generated tokens) and token counts. Generated tokens already
    /// reported through [`Metrics::observe_tokens`] are not counted again. A latency that
    /// is negative or not finite is left out of its histogram rather than poisoning the sum.
    pub fn observe_request(
        &self,
        ttft_s: f64,
        tpot_s: Option<f64>,
        e2e_s: f64,
        prompt_tokens: u64,
        generated_tokens: u64,
    ) {
        observe_seconds(&self.ttft, ttft_s);
        if let Some(t) = tpot_s {
            observe_seconds(&self.tpot, t);
        }
        observe_seconds(&self.e2e, e2e_s);
        self.requests_ok.inc();
        self.prompt_tokens.inc_by(prompt_tokens);
        let streamed = self.streamed.swap(0, Ordering::Relaxed);
        let rest = generated_tokens.saturating_sub(streamed);
        if rest > 0 {
            self.count_generated(rest);
        }
    }

    /// Records one finished request from its sample: [`Metrics::observe_request`] when it
    /// is ok (`generated_tokens` of it not yet counted by [`Metrics::observe_tokens`]),
    /// [`Metrics::observe_error`] otherwise.
    pub fn observe_sample(
        &self,
        s: &crate::measure::samples::RequestSample,
        generated_tokens: u64,
    ) {
        if s.is_ok() {
            self.observe_request(
                s.ttft_ms.map_or(f64::NAN, |t| t / 1e3),
                s.tpot_ms.map(|t| t / 1e3),
                s.e2e_ms / 1e3,
                s.prompt_tokens,
                generated_tokens,
            );
        } else {
            self.observe_error();
        }
    }

    /// Records one failed request. Tokens it generated before failing stay counted.
    pub fn observe_error(&self) {
        self.requests_error.inc();
        self.streamed.store(0, Ordering::Relaxed);
    }

    /// Records `n` tokens generated by one decode step, so that the token counter and rate
    /// move during long requests. Meant for one inference thread running one request (or
    /// batch) at a time: the request's [`Metrics::observe_request`] subtracts them.
    pub fn observe_tokens(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.streamed.fetch_add(n, Ordering::Relaxed);
        self.count_generated(n);
    }

    /// Sets the projected TTFT, TPOT and cost for one profile, instance, TP degree and
    /// batch size.
    pub fn set_projection(&self, p: &Projection<'_>) {
        let (tp, batch) = (p.tp.to_string(), p.batch.to_string());
        let labels = [p.profile, p.instance, tp.as_str(), batch.as_str()];
        self.projected_ttft.with_label_values(&labels).set(p.ttft_s);
        self.projected_tpot.with_label_values(&labels).set(p.tpot_s);
        let costs = [
            (
                &self.projected_cost_output,
                p.cost_usd_per_million_output_tokens,
            ),
            (&self.projected_cost, p.cost_usd_per_million_tokens),
        ];
        for (gauge, cost) in costs {
            if let Some(c) = cost.filter(|c| c.is_finite()) {
                gauge.with_label_values(&labels).set(c);
            }
        }
    }

    /// Sets the relative error of projecting this host's own TTFT or TPOT.
    pub fn set_host_error(&self, metric: HostMetric, ratio: f64) {
        self.host_error
            .with_label_values(&[metric.label()])
            .set(ratio);
    }

    fn count_generated(&self, n: u64) {
        self.generated_tokens.inc_by(n);
        self.rate.add(n, Instant::now());
    }
}

fn observe_seconds(h: &Histogram, seconds: f64) {
    if seconds.is_finite() && seconds >= 0.0 {
        h.observe(seconds);
    }
}

fn register(registry: &Registry, name: &str, c: impl Collector + 'static) -> Result<()> {
    registry
        .register(Box::new(c))
        .map_err(|e| anyhow!("cannot register metric {name}: {e}"))
}

/// Number of one-second slots in the token-rate ring: the window plus spare slots, so a
/// slot is never reused while it may still be read.
const RATE_SLOTS: usize = TOKEN_RATE_WINDOW_S as usize + 2;

/// Generated tokens per second over the last [`TOKEN_RATE_WINDOW_S`] seconds.
///
/// A ring of one-second slots, each an atomic packing (second since start, tokens), so
/// that adding (the inference thread) and reading (a scrape) never wait on each other.
struct TokenRate {
    start: Instant,
    slots: [AtomicU64; RATE_SLOTS],
}

impl TokenRate {
    fn new(start: Instant) -> TokenRate {
        TokenRate {
            start,
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn second(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.start).as_secs()).unwrap_or(u32::MAX)
    }

    /// Adds `n` tokens generated at `now`.
    fn add(&self, n: u64, now: Instant) {
        let sec = self.second(now);
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let slot = &self.slots[sec as usize % RATE_SLOTS];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let (s, count) = unpack(cur);
            // A slot still holding an older second is recycled; a newer one (this thread
            // stalled for a whole ring) simply takes the tokens.
            let new = if s < sec {
                pack(sec, n)
            } else {
                pack(s, count.saturating_add(n))
            };
            match slot.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Tokens per second over the window ending at `now`: the tokens of the last
    /// [`TOKEN_RATE_WINDOW_S`] one-second slots (the current one partly elapsed) over the
    /// time they span, at least one second.
    fn per_second(&self, now: Instant) -> f64 {
        let sec = self.second(now);
        let first = sec.saturating_sub(TOKEN_RATE_WINDOW_S as u32 - 1);
        let tokens: u64 = self
            .slots
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Relaxed)))
            .filter(|&(s, _)| s >= first && s <= sec)
            .map(|(_, count)| u64::from(count))
            .sum();
        let span = now.saturating_duration_since(self.start).as_secs_f64() - f64::from(first);
        tokens as f64 / span.max(1.0)
    }
}

fn pack(sec: u32, count: u32) -> u64 {
    (u64::from(sec) << 32) | u64::from(count)
}

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// Exposes a [`TokenRate`] as the `profiler_tokens_per_second` gauge, computed at each
/// scrape so it falls to zero when generation stops.
struct RateCollector {
    rate: Arc<TokenRate>,
    gauge: Gauge,
}

impl Collector for RateCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.gauge.set(self.rate.per_second(Instant::now()));
        self.gauge.collect()
    }
}

/// The registry's metrics in the text exposition format, with each series' labels in name
/// order (the registry appends its const labels unordered), so that a scrape reads the
/// same from one run to the next.
pub fn encode_text(registry: &Registry) -> Result<Vec<u8>> {
    let mut families = registry.gather();
    for family in &mut families {
        for metric in family.mut_metric() {
            let mut labels = metric.take_label();
            labels.sort_by(|a, b| a.name().cmp(b.name()));
            metric.set_label(labels);
        }
    }
    let mut body = Vec::with_capacity(16 * 1024);
    TextEncoder::new()
        .encode(&families, &mut body)
        .map_err(|e| anyhow!("cannot encode the metrics: {e}"))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::proto::MetricType;
    use std::time::Duration;

    fn build() -> BuildInfo {
        BuildInfo {
            version: "0.1.0".into(),
            tch: "0.24.0".into(),
            torch: "2.9.0".into(),
            dtype: "bf16".into(),
            device_name: "cpu \"test\"".into(),
        }
    }

    fn fresh() -> (Registry, Metrics) {
        let m = Metrics::new("tiny/llama", "cpu", build()).expect("metrics");
        (m.registry(), m)
    }

    fn family<'a>(families: &'a [MetricFamily], name: &str) -> &'a MetricFamily {
        families
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("{name} is missing from the scrape"))
    }

    fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> Option<&'a str> {
        m.get_label()
            .iter()
            .find(|l| l.name() == name)
            .map(|l| l.value())
    }

    #[test]
    fn every_family_carries_model_and_run_on() {
        let (registry, m) = fresh();
        m.set_projection(&Projection {
            profile: "inf2",
            instance: "inf2.xlarge",
            tp: 2,
            batch: 4,
            ttft_s: 0.1,
            tpot_s: 0.02,
            cost_usd_per_million_output_tokens: Some(6.0),
            cost_usd_per_million_tokens: Some(1.5),
        });
        // An unpriced instance has projections but no cost series.
        m.set_projection(&Projection {
            profile: "trn2",
            instance: "trn2.48xlarge",
            tp: 64,
            batch: 4,
            ttft_s: 0.1,
            tpot_s: 0.02,
            cost_usd_per_million_output_tokens: None,
            cost_usd_per_million_tokens: Some(f64::NAN),
        });
        m.set_host_error(HostMetric::Tpot, 0.05);
        let families = registry.gather();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for expected in [
            "profiler_ttft_seconds",
            "profiler_tpot_seconds",
            "profiler_request_duration_seconds",
            "profiler_requests_total",
            "profiler_prompt_tokens_total",
            "profiler_generated_tokens_total",
            "profiler_tokens_per_second",
            "profiler_projected_ttft_seconds",
            "profiler_projected_tpot_seconds",
            "profiler_projected_cost_usd_per_million_output_tokens",
            "profiler_projected_cost_usd_per_million_tokens",
            "profiler_host_projection_error_ratio",
            "profiler_build_info",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_cpu_seconds_total",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        for f in &families {
            for metric in f.get_metric() {
                assert_eq!(label(metric, "model"), Some("tiny/llama"), "{}", f.name());
                assert_eq!(label(metric, "run_on"), Some("cpu"), "{}", f.name());
            }
        }
        let cost =
            &family(&families, "profiler_projected_cost_usd_per_million_tokens").get_metric()[0];
        assert_eq!(label(cost, "tp"), Some("2"));
        assert_eq!(label(cost, "batch"), Some("4"));
        assert_eq!(label(cost, "instance_type"), Some("inf2.xlarge"));
        assert_eq!(cost.get_gauge().value(), 1.5);
        let out = family(
            &families,
            "profiler_projected_cost_usd_per_million_output_tokens",
        );
        assert_eq!(out.get_metric().len(), 1);
        assert_eq!(out.get_metric()[0].get_gauge().value(), 6.0);
        assert_eq!(
            family(&families, "profiler_projected_cost_usd_per_million_tokens")
                .get_metric()
                .len(),
            1
        );
        assert_eq!(
            family(&families, "profiler_projected_ttft_seconds")
                .get_metric()
                .len(),
            2
        );
        let host = &family(&families, "profiler_host_projection_error_ratio").get_metric()[0];
        assert_eq!(label(host, "metric"), Some("tpot"));
        let info = &family(&families, "profiler_build_info").get_metric()[0];
        assert_eq!(info.get_gauge().value(), 1.0);
        assert_eq!(label(info, "device_name"), Some("cpu \"test\""));
        assert_eq!(label(info, "torch"), Some("2.9.0"));
    }

    #[test]
    fn histogram_counts_equal_finished_requests_and_tokens_are_not_counted_twice() {
        let (registry, m) = fresh();
        // Request 1 streams its 5 tokens step by step; request 2 reports them only at the end.
        for _ in 0..5 {
            m.observe_tokens(1);
        }
        m.observe_request(0.05, Some(0.01), 0.09, 16, 5);
        m.observe_request(0.04, None, 0.04, 8, 1);
        m.observe_tokens(3);
        m.observe_error();
        let families = registry.gather();
        let ttft = family(&families, "profiler_ttft_seconds").get_metric()[0].get_histogram();
        assert_eq!(ttft.get_sample_count(), 2);
        assert!((ttft.get_sample_sum() - 0.09).abs() < 1e-12);
        let tpot = family(&families, "profiler_tpot_seconds").get_metric()[0].get_histogram();
        assert_eq!(tpot.get_sample_count(), 1);
        let e2e = family(&families, "profiler_request_duration_seconds");
        assert_eq!(e2e.get_field_type(), MetricType::HISTOGRAM);
        assert_eq!(e2e.get_metric()[0].get_histogram().get_sample_count(), 2);
        let counter = |name: &str| {
            family(&families, name).get_metric()[0]
                .get_counter()
                .value()
        };
        assert_eq!(counter("profiler_generated_tokens_total"), 9.0);
        assert_eq!(counter("profiler_prompt_tokens_total"), 24.0);
        let requests = family(&families, "profiler_requests_total").get_metric();
        let by_status = |s: &str| {
            requests
                .iter()
                .find(|r| label(r, "status") == Some(s))
                .map(|r| r.get_counter().value())
        };
        assert_eq!(by_status("ok"), Some(2.0));
        assert_eq!(by_status("error"), Some(1.0));
    }

    #[test]
    fn bad_latencies_stay_out_of_the_histograms() {
        let (registry, m) = fresh();
        m.observe_request(f64::NAN, Some(-1.0), f64::INFINITY, 1, 1);
        let families = registry.gather();
        for name in [
            "profiler_ttft_seconds",
            "profiler_tpot_seconds",
            "profiler_request_duration_seconds",
        ] {
            let h = family(&families, name).get_metric()[0].get_histogram();
            assert_eq!(h.get_sample_count(), 0, "{name}");
            assert_eq!(h.get_sample_sum(), 0.0, "{name}");
        }
    }

    #[test]
    fn buckets_span_a_millisecond_to_a_minute_at_most_doubling() {
        assert_eq!(LATENCY_BUCKETS[0], 0.001);
        assert_eq!(LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1], 60.0);
        for w in LATENCY_BUCKETS.windows(2) {
            assert!(w[1] > w[0] && w[1] / w[0] <= 2.0 + 1e-9, "{w:?}");
        }
    }

    #[test]
    fn empty_labels_are_a_one_line_error_and_runs_stay_apart() {
        for (model, run_on) in [("", "cpu"), ("tiny", "")] {
            let msg = format!(
                "{:#}",
                Metrics::new(model, run_on, build()).err().expect("empty")
            );
            assert!(msg.contains("must both be non-empty label values"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
        // Another model's metrics are other series in a registry of their own.
        let (registry, m) = fresh();
        let other = Metrics::new("other", "cuda", build()).expect("other metrics");
        m.observe_tokens(2);
        other.observe_tokens(5);
        let tokens = |r: &Registry| {
            let families = r.gather();
            let metric = &family(&families, "profiler_generated_tokens_total").get_metric()[0];
            (
                label(metric, "model").map(str::to_string),
                metric.get_counter().value(),
            )
        };
        assert_eq!(tokens(&registry), (Some("tiny/llama".into()), 2.0));
        assert_eq!(tokens(&other.registry()), (Some("other".into()), 5.0));
    }

    #[test]
    fn the_text_format_lists_labels_in_name_order() {
        let (registry, m) = fresh();
        m.observe_request(0.02, None, 0.02, 1, 1);
        let text = String::from_utf8(encode_text(&registry).expect("encode")).expect("utf-8");
        for line in [
            r#"profiler_requests_total{model="tiny/llama",run_on="cpu",status="ok"} 1"#,
            r#"profiler_ttft_seconds_bucket{model="tiny/llama",run_on="cpu",le="0.02"} 1"#,
            r#"profiler_build_info{device_name="cpu \"test\"",dtype="bf16",model="tiny/llama",run_on="cpu",tch="0.24.0",torch="2.9.0",version="0.1.0"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn token_rate_averages_the_last_thirty_seconds() {
        let t0 = Instant::now();
        let rate = TokenRate::new(t0);
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        // 30 tokens in the middle of each second for a minute.
        for s in 0..60 {
            rate.add(30, at(s as f64 + 0.5));
        }
        assert_eq!(rate.per_second(at(60.0)), 30.0);
        let r = rate.per_second(at(59.9));
        assert!((r - 900.0 / 29.9).abs() < 1e-9, "{r}");
        // Nothing generated for a whole window: the rate falls to zero, and slots reused
        // by the ring are not mistaken for recent ones.
        assert_eq!(rate.per_second(at(90.0)), 0.0);
        rate.add(7, at(90.5));
        // At a whole second the current slot has just begun: 29 s are spanned.
        assert_eq!(rate.per_second(at(91.0)), 7.0 / 29.0);
        assert_eq!(rate.per_second(at(91.5)), 7.0 / 29.5);
    }

    #[test]
    fn token_rate_starts_with_at_least_a_second_of_span() {
        let t0 = Instant::now();
        let rate = TokenRate::new(t0);
        rate.add(5, t0 + Duration::from_millis(100));
        assert_eq!(rate.per_second(t0 + Duration::from_millis(200)), 5.0);
        assert_eq!(rate.per_second(t0 + Duration::from_secs(4)), 5.0 / 4.0);
    }

    #[test]
    fn token_rate_loses_nothing_under_concurrent_adds() {
        let t0 = Instant::now();
        let rate = Arc::new(TokenRate::new(t0));
        let at = t0 + Duration::from_millis(500);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rate = rate.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        rate.add(1, at);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(rate.per_second(t0 + Duration::from_secs(1)), 40_000.0);
    }
}
