//! What `profiler simulate` reports: per-request latency summaries, throughput, goodput
//! under SLOs, slot use, KV memory and cost at the simulated load; every number labelled
//! as simulated on a profile with its calibration error.

use super::engine::Outcome;
use crate::measure::stats::{t_quantile_975, Summary};
use crate::projection::types::CalibrationError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Latency objectives at a percentile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SloSpec {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    /// Percentile (0–100] at which the objectives are judged.
    pub percentile: f64,
}

impl SloSpec {
    /// Whether a request met both objectives.
    fn met_by(&self, ttft_ms: f64, tpot_ms: Option<f64>) -> bool {
        self.ttft_ms.is_none_or(|x| ttft_ms <= x)
            && self.tpot_ms.is_none_or(|y| tpot_ms.is_none_or(|t| t <= y))
    }
}

/// The `q`-quantile (0–1) of `values` by linear interpolation between closest ranks
/// (Hyndman & Fan definition 7, as [`crate::measure::stats::percentile_sorted`]), in
/// linear time; reorders `values`.
pub fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let (_, x_lo, right) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let x_lo = *x_lo;
    let x_hi = right.iter().copied().min_by(f64::total_cmp).unwrap_or(x_lo);
    Some(x_lo + (h - lo as f64) * (x_hi - x_lo))
}

/// [`Summary`] of `values` scaled by `scale`, in linear time (a simulation can have
/// millions of inter-token gaps).
pub fn summary(values: &[f64], scale: f64) -> Option<Summary> {
    let mut v: Vec<f64> = values
        .iter()
        .map(|x| x * scale)
        .filter(|x| x.is_finite())
        .collect();
    let n = v.len();
    if n == 0 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    let stddev = (n >= 2).then(|| {
        let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    let half = stddev.and_then(|s| t_quantile_975(n as u64 - 1).map(|t| t * s / (n as f64).sqrt()));
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut q = |p| quantile(&mut v, p).unwrap_or(mean);
    Some(Summary {
        count: n as u64,
        mean,
        stddev,
        min,
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        max,
        ci95_low: half.map(|h| mean - h),
        ci95_high: half.map(|h| mean + h),
    })
}

/// [`Summary`] of run-length encoded values `(value, count)` scaled by `scale`: the
/// statistics of the values repeated `count` times, quantiles as [`quantile`].
pub fn summary_weighted(values: &[(f64, u64)], scale: f64) -> Option<Summary> {
    let mut v: Vec<(f64, u64)> = values
        .iter()
        .map(|&(x, c)| (x * scale, c))
        .filter(|(x, c)| x.is_finite() && *c > 0)
        .collect();
    let n: u64 = v.iter().map(|p| p.1).sum();
    if n == 0 {
        return None;
    }
    v.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let nf = n as f64;
    let mean = v.iter().map(|&(x, c)| x * c as f64).sum::<f64>() / nf;
    let stddev = (n >= 2).then(|| {
        let ss: f64 = v
            .iter()
            .map(|&(x, c)| (x - mean) * (x - mean) * c as f64)
            .sum();
        (ss / (nf - 1.0)).sqrt()
    });
    let half = stddev.and_then(|s| t_quantile_975(n - 1).map(|t| t * s / nf.sqrt()));
    // The k-th value (0-based) of the expanded ascending sequence.
    let kth = |k: u64| {
        let mut seen = 0;
        for &(x, c) in &v {
            seen += c;
            if k < seen {
                return x;
            }
        }
        v[v.len() - 1].0
    };
    let q = |p: f64| {
        let h = (n - 1) as f64 * p;
        let lo = h.floor() as u64;
        let (a, b) = (kth(lo), kth((lo + 1).min(n - 1)));
        a + (h - lo as f64) * (b - a)
    };
    Some(Summary {
        count: n,
        mean,
        stddev,
        min: v[0].0,
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        max: v[v.len() - 1].0,
        ci95_low: half.map(|h| mean - h),
        ci95_high: half.map(|h| mean + h),
    })
}

/// " (expert parallelism N)" for a degree above 1, nothing otherwise.
pub fn ep_text(ep: u32) -> String {
    if ep > 1 {
        format!(" (expert parallelism {ep})")
    } else {
        String::new()
    }
}

/// The deployment and load a report describes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SimSetup {
    pub model: String,
    pub profile: String,
    pub instance: String,
    pub tp: u32,
    pub dp: u32,
    /// Expert-parallel degree inside the TP group (1: routed experts TP-sharded).
    #[serde(default = "crate::projection::step::single_expert_group")]
    pub ep_degree: u32,
    pub max_num_seqs: u32,
    pub seq_len: u32,
    pub ctx_batch_size: u32,
    /// `static-slots` (Neuron), `chunked-prefill` or `prefill-first` (GPU).
    pub scheduler: String,
    pub max_num_batched_tokens: Option<u32>,
    pub weights_dtype: String,
    /// `closed` (concurrency), `poisson`/`gamma` (rate) or `trace` (workload times).
    pub arrivals: String,
    pub concurrency: Option<u32>,
    pub rate: Option<f64>,
    pub burstiness: Option<f64>,
    pub seed: u64,
    pub price_kind: String,
    pub price_usd_per_hour: Option<f64>,
    /// Bytes of weights plus KV cache the deployment reserves with static shapes, or the
    /// usable memory with dynamic shapes, over all units of all replicas.
    pub kv_memory_capacity_bytes: f64,
    /// KV bytes per token over the units of one replica.
    pub kv_bytes_per_token: f64,
    pub calibration_mape: Option<CalibrationError>,
    pub calibration_status: String,
}

/// Result of `profiler simulate` (JSON schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SimReport {
    pub schema_version: u32,
    /// Always true: nothing here was measured.
    pub simulated: bool,
    /// One line naming the profile and its calibration error.
    pub label: String,
    #[serde(flatten)]
    pub setup: SimSetup,
    /// Requests that finished.
    pub requests: u64,
    pub duration_s: f64,
    pub ttft_ms: Option<Summary>,
    pub tpot_ms: Option<Summary>,
    pub itl_ms: Option<Summary>,
    pub e2e_ms: Option<Summary>,
    pub queue_ms: Option<Summary>,
    pub requests_per_s: f64,
    pub output_tokens_per_s: f64,
    pub total_tokens_per_s: f64,
    /// Time-average requests in the system (arrived, unfinished); Little's law says it
    /// equals `requests_per_s × mean e2e`.
    pub mean_in_system: f64,
    pub slo: SloSpec,
    /// Finished requests per second that met every objective.
    pub goodput_requests_per_s: f64,
    /// Whether TTFT and TPOT at the SLO percentile meet the objectives (`None` without one).
    pub slo_met: Option<bool>,
    pub ttft_at_slo_percentile_ms: Option<f64>,
    pub tpot_at_slo_percentile_ms: Option<f64>,
    /// Time-average busy slots over all slots of all replicas.
    pub slot_utilization: f64,
    /// Largest KV memory held at once, bytes, over the instance (all slots at the compiled
    /// length with static shapes).
    pub peak_kv_memory_bytes: f64,
    pub cost_usd_per_million_output_tokens: Option<f64>,
    pub cost_usd_per_million_tokens: Option<f64>,
    pub engine_steps: u64,
    pub notes: Vec<String>,
    /// The interval of each simulated number (`X_low`, `X_high` beside `X`).
    #[serde(flatten)]
    pub intervals: SimIntervals,
}

/// The interval of each simulated number of a [`SimReport`]: the same load simulated again
/// with every step slower and faster by the profile's error bar (see
/// [`crate::projection::interval`]). A latency summary's `_low` is the fast run's, its
/// `_high` the slow run's; each single number's bounds are the smaller and larger of the
/// three runs. `None` where the number is unknown.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SimIntervals {
    #[serde(default)]
    pub ttft_ms_low: Option<Summary>,
    #[serde(default)]
    pub ttft_ms_high: Option<Summary>,
    #[serde(default)]
    pub tpot_ms_low: Option<Summary>,
    #[serde(default)]
    pub tpot_ms_high: Option<Summary>,
    #[serde(default)]
    pub itl_ms_low: Option<Summary>,
    #[serde(default)]
    pub itl_ms_high: Option<Summary>,
    #[serde(default)]
    pub e2e_ms_low: Option<Summary>,
    #[serde(default)]
    pub e2e_ms_high: Option<Summary>,
    #[serde(default)]
    pub queue_ms_low: Option<Summary>,
    #[serde(default)]
    pub queue_ms_high: Option<Summary>,
    #[serde(default)]
    pub requests_per_s_low: Option<f64>,
    #[serde(default)]
    pub requests_per_s_high: Option<f64>,
    #[serde(default)]
    pub output_tokens_per_s_low: Option<f64>,
    #[serde(default)]
    pub output_tokens_per_s_high: Option<f64>,
    #[serde(default)]
    pub total_tokens_per_s_low: Option<f64>,
    #[serde(default)]
    pub total_tokens_per_s_high: Option<f64>,
    #[serde(default)]
    pub ttft_at_slo_percentile_ms_low: Option<f64>,
    #[serde(default)]
    pub ttft_at_slo_percentile_ms_high: Option<f64>,
    #[serde(default)]
    pub tpot_at_slo_percentile_ms_low: Option<f64>,
    #[serde(default)]
    pub tpot_at_slo_percentile_ms_high: Option<f64>,
    #[serde(default)]
    pub cost_usd_per_million_output_tokens_low: Option<f64>,
    #[serde(default)]
    pub cost_usd_per_million_output_tokens_high: Option<f64>,
    #[serde(default)]
    pub cost_usd_per_million_tokens_low: Option<f64>,
    #[serde(default)]
    pub cost_usd_per_million_tokens_high: Option<f64>,
    /// Where the interval's width comes from.
    #[serde(default)]
    pub interval_basis: Option<String>,
}

impl SimIntervals {
    /// The intervals of `mid` from the same load run `fast` and `slow`.
    pub fn of(mid: &SimReport, fast: &SimReport, slow: &SimReport, basis: String) -> Self {
        let span = |f: fn(&SimReport) -> Option<f64>| -> (Option<f64>, Option<f64>) {
            let v: Vec<f64> = [mid, fast, slow].iter().filter_map(|r| f(r)).collect();
            if v.len() < 3 {
                return (None, None);
            }
            (
                Some(v.iter().copied().fold(f64::INFINITY, f64::min)),
                Some(v.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            )
        };
        let (rps_lo, rps_hi) = span(|r| Some(r.requests_per_s));
        let (out_lo, out_hi) = span(|r| Some(r.output_tokens_per_s));
        let (tot_lo, tot_hi) = span(|r| Some(r.total_tokens_per_s));
        let (tq_lo, tq_hi) = span(|r| r.ttft_at_slo_percentile_ms);
        let (pq_lo, pq_hi) = span(|r| r.tpot_at_slo_percentile_ms);
        let (co_lo, co_hi) = span(|r| r.cost_usd_per_million_output_tokens);
        let (c_lo, c_hi) = span(|r| r.cost_usd_per_million_tokens);
        SimIntervals {
            ttft_ms_low: fast.ttft_ms.clone(),
            ttft_ms_high: slow.ttft_ms.clone(),
            tpot_ms_low: fast.tpot_ms.clone(),
            tpot_ms_high: slow.tpot_ms.clone(),
            itl_ms_low: fast.itl_ms.clone(),
            itl_ms_high: slow.itl_ms.clone(),
            e2e_ms_low: fast.e2e_ms.clone(),
            e2e_ms_high: slow.e2e_ms.clone(),
            queue_ms_low: fast.queue_ms.clone(),
            queue_ms_high: slow.queue_ms.clone(),
            requests_per_s_low: rps_lo,
            requests_per_s_high: rps_hi,
            output_tokens_per_s_low: out_lo,
            output_tokens_per_s_high: out_hi,
            total_tokens_per_s_low: tot_lo,
            total_tokens_per_s_high: tot_hi,
            ttft_at_slo_percentile_ms_low: tq_lo,
            ttft_at_slo_percentile_ms_high: tq_hi,
            tpot_at_slo_percentile_ms_low: pq_lo,
            tpot_at_slo_percentile_ms_high: pq_hi,
            cost_usd_per_million_output_tokens_low: co_lo,
            cost_usd_per_million_output_tokens_high: co_hi,
            cost_usd_per_million_tokens_low: c_lo,
            cost_usd_per_million_tokens_high: c_hi,
            interval_basis: Some(basis),
        }
    }
}

/// The label every simulated number carries.
pub fn label(profile: &str, mape: Option<CalibrationError>, status: &str) -> String {
    match mape {
        Some(e) => format!(
            "simulated on {profile} (calibration MAPE: TTFT {:.0}%, TPOT {:.0}% over {} published points)",
            e.ttft * 100.0,
            e.tpot * 100.0,
            e.points
        ),
        None => format!("simulated on {profile} ({status} parameters, calibration error not measured)"),
    }
}

impl SimReport {
    /// Summarises `o` for `setup` under `slo`.
    pub fn new(setup: SimSetup, o: &Outcome, slo: SloSpec, static_kv_bytes: Option<f64>) -> Self {
        let recs = &o.records;
        let n = recs.len();
        let span = o.span_s.max(f64::MIN_POSITIVE);
        let ttft: Vec<f64> = recs.iter().map(|r| r.ttft()).collect();
        let tpot: Vec<f64> = recs.iter().filter_map(|r| r.tpot()).collect();
        let e2e: Vec<f64> = recs.iter().map(|r| r.e2e()).collect();
        let queue: Vec<f64> = recs.iter().map(|r| r.queue()).collect();
        let out_tokens: f64 = recs.iter().map(|r| r.output as f64).sum();
        let all_tokens: f64 = recs.iter().map(|r| (r.prompt + r.output) as f64).sum();
        let rps = n as f64 / span;
        let out_tps = out_tokens / span;
        let total_tps = all_tokens / span;
        let good = recs
            .iter()
            .filter(|r| slo.met_by(r.ttft() * 1e3, r.tpot().map(|t| t * 1e3)))
            .count();
        let q = slo.percentile / 100.0;
        let ttft_q = quantile(&mut ttft.clone(), q).map(|x| x * 1e3);
        let tpot_q = quantile(&mut tpot.clone(), q).map(|x| x * 1e3);
        let slo_met = (slo.ttft_ms.is_some() || slo.tpot_ms.is_some()).then(|| {
            n > 0
                && slo.ttft_ms.is_none_or(|x| ttft_q.is_some_and(|t| t <= x))
                && slo.tpot_ms.is_none_or(|y| tpot_q.is_none_or(|t| t <= y))
        });
        let slots = (setup.max_num_seqs as f64 * setup.dp as f64).max(1.0);
        let price = setup.price_usd_per_hour;
        let cost = |tps: f64| {
            price
                .filter(|_| tps > 0.0)
                .map(|p| crate::projection::project::cost_per_million(p, tps))
        };
        let peak_kv = static_kv_bytes.unwrap_or(o.peak_kv_tokens * setup.kv_bytes_per_token);
        let mut notes = Vec::new();
        if o.clipped > 0 {
            notes.push(format!(
                "{} sampled length(s) cut to the deployment's limits (largest prompt bucket, compiled or maximum length)",
                o.clipped
            ));
        }
        if price.is_none() {
            notes.push(format!(
                "no {} price for {}: cost not projected",
                setup.price_kind, setup.instance
            ));
        }
        SimReport {
            schema_version: 1,
            simulated: true,
            label: label(
                &setup.profile,
                setup.calibration_mape,
                &setup.calibration_status,
            ),
            requests: n as u64,
            duration_s: o.span_s,
            ttft_ms: summary(&ttft, 1e3),
            tpot_ms: summary(&tpot, 1e3),
            itl_ms: summary_weighted(&o.itl, 1e3),
            e2e_ms: summary(&e2e, 1e3),
            queue_ms: summary(&queue, 1e3),
            requests_per_s: rps,
            output_tokens_per_s: out_tps,
            total_tokens_per_s: total_tps,
            mean_in_system: o.in_system_area / span,
            slo,
            goodput_requests_per_s: good as f64 / span,
            slo_met,
            ttft_at_slo_percentile_ms: ttft_q,
            tpot_at_slo_percentile_ms: tpot_q,
            slot_utilization: o.busy_slot_area / (span * slots),
            peak_kv_memory_bytes: peak_kv,
            cost_usd_per_million_output_tokens: cost(out_tps),
            cost_usd_per_million_tokens: cost(total_tps),
            engine_steps: o.steps,
            notes,
            setup,
            intervals: SimIntervals::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::stats::percentile_sorted;

    #[test]
    fn linear_time_quantile_matches_the_sorted_definition() {
        let v: Vec<f64> = (0..1001)
            .map(|i| ((i * 7919) % 1001) as f64 * 0.5)
            .collect();
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let a = quantile(&mut v.clone(), q).unwrap();
            let b = percentile_sorted(&sorted, q).unwrap();
            assert_eq!(a, b, "q {q}");
        }
        let s = summary(&v, 2.0).unwrap();
        let full = Summary::of(&v.iter().map(|x| x * 2.0).collect::<Vec<_>>()).unwrap();
        assert_eq!(s.p99, full.p99);
        assert!((s.mean - full.mean).abs() < 1e-9);
        // Run-length encoded values give the statistics of the expanded list.
        let rl = [(3.0, 2), (1.0, 3), (3.0, 1), (2.0, 4)];
        let expanded: Vec<f64> = rl
            .iter()
            .flat_map(|&(x, c)| std::iter::repeat_n(x, c as usize))
            .collect();
        let a = summary_weighted(&rl, 1.0).unwrap();
        let b = Summary::of(&expanded).unwrap();
        assert_eq!(
            (a.count, a.min, a.max, a.p50, a.p90, a.p99),
            (b.count, b.min, b.max, b.p50, b.p90, b.p99)
        );
        assert!(
            (a.mean - b.mean).abs() < 1e-12
                && (a.stddev.unwrap() - b.stddev.unwrap()).abs() < 1e-12
        );
    }
}
