//! `profiler plan`: capacity planning. For each instance of the chosen profiles, searches
//! the TP degree (with as many data-parallel replicas as the instance holds) and the slots
//! per replica (`max-num-seqs`, powers of two) for the configuration that needs the fewest
//! instances for the target rate within the SLOs; the largest rate one instance sustains is
//! found by bisection on the Poisson arrival rate, each trial a simulation.

use super::engine::StopRule;
use super::load::{Arrivals, Lengths, Load};
use super::report::{ep_text, label, quantile, SloSpec};
use super::{run_model_until, SimRequest};
use crate::model::card::ModelCard;
use crate::projection::bucket::compiled_seq_len;
use crate::projection::dtype::WeightsDtype;
use crate::projection::interval::{overlap, ErrorBar};
use crate::projection::profile::{Instance, PriceKind, Profile};
use crate::projection::setting::{Setting, SettingError};
use crate::projection::step::{
    Deployment, StepModel, DEFAULT_MAX_NUM_BATCHED_TOKENS, LARGE_GPU_MAX_NUM_BATCHED_TOKENS,
};
use anyhow::{bail, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Slots per replica the search tries.
pub const SLOT_CANDIDATES: [u32; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Bisection steps on the rate (the answer is within `hi / 2^steps`).
const BISECTION_STEPS: u32 = 7;

/// What to plan for.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    /// Target requests per second over the fleet.
    pub rate: f64,
    pub input_len: u32,
    pub output_len: u32,
    pub input_stddev: f64,
    pub output_stddev: f64,
    pub slo: SloSpec,
    pub dtype: WeightsDtype,
    pub price: PriceKind,
    /// Requests simulated per trial.
    pub trial_requests: u64,
    pub seed: u64,
    pub chunked_prefill: bool,
    /// A compiled configuration (`--neuron-config`): the search keeps it and varies the
    /// replicas per instance only.
    pub compiled: Option<Compiled>,
}

/// The compile settings of a Neuron-compiled model, fixed in a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub tp: u32,
    /// Expert-parallel degree compiled (1: experts TP-sharded).
    pub ep: u32,
    /// LNC the TP degree was compiled at (`None`: not checked).
    pub lnc: Option<u32>,
    pub max_num_seqs: u32,
    /// Compiled positions; the plan's own default when `None`.
    pub seq_len: Option<u32>,
    pub ctx_batch_size: Option<u32>,
    pub buckets: Option<Vec<u32>>,
}

/// One instance type in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanRow {
    pub profile: String,
    pub instance: String,
    pub tp: Option<u32>,
    pub dp: Option<u32>,
    /// Expert-parallel degree inside the TP group (mixture-of-experts models; 1: experts
    /// TP-sharded).
    #[serde(default)]
    pub ep_degree: Option<u32>,
    pub max_num_seqs: Option<u32>,
    /// Largest Poisson rate one instance sustains within the SLOs, requests/s (simulated).
    pub max_rate_per_instance: Option<f64>,
    pub instances_needed: Option<u64>,
    pub fleet_usd_per_hour: Option<f64>,
    /// Fleet cost per 1M tokens (prompt + output) at the target rate.
    pub cost_usd_per_million_tokens: Option<f64>,
    pub meets_slo: bool,
    /// Why the row is not ranked, when it is not.
    pub reason: Option<String>,
    /// `reason` with the settings it names kept, for the command line to name them as the
    /// user gave them (`reason` names them by their keys).
    #[serde(skip)]
    pub reason_settings: Option<SettingError>,
    /// TTFT and TPOT at the SLO percentile with the target rate spread over the fleet.
    pub ttft_ms_at_percentile: Option<f64>,
    pub tpot_ms_at_percentile: Option<f64>,
    pub label: String,
    /// The interval of each simulated number (`X_low`, `X_high` beside `X`).
    #[serde(flatten)]
    pub intervals: PlanIntervals,
}

/// The interval of a plan row's numbers: its configuration searched again for the largest
/// rate with every step faster and slower by the profile's error bar (see
/// [`crate::projection::interval`]), and judged at the target rate over that fleet. A
/// bound is `None` where the slow end misses the SLOs even without load (the fleet size is
/// then unbounded) or where the number itself is unknown.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PlanIntervals {
    #[serde(default)]
    pub max_rate_per_instance_low: Option<f64>,
    #[serde(default)]
    pub max_rate_per_instance_high: Option<f64>,
    #[serde(default)]
    pub instances_needed_low: Option<u64>,
    #[serde(default)]
    pub instances_needed_high: Option<u64>,
    #[serde(default)]
    pub fleet_usd_per_hour_low: Option<f64>,
    #[serde(default)]
    pub fleet_usd_per_hour_high: Option<f64>,
    #[serde(default)]
    pub cost_usd_per_million_tokens_low: Option<f64>,
    #[serde(default)]
    pub cost_usd_per_million_tokens_high: Option<f64>,
    #[serde(default)]
    pub ttft_ms_at_percentile_low: Option<f64>,
    #[serde(default)]
    pub ttft_ms_at_percentile_high: Option<f64>,
    #[serde(default)]
    pub tpot_ms_at_percentile_low: Option<f64>,
    #[serde(default)]
    pub tpot_ms_at_percentile_high: Option<f64>,
    /// Where the interval's width comes from.
    #[serde(default)]
    pub interval_basis: Option<String>,
}

/// Result of `profiler plan` (JSON schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlanReport {
    pub schema_version: u32,
    pub simulated: bool,
    pub model: String,
    pub rate: f64,
    pub input_len: u32,
    pub output_len: u32,
    pub slo: SloSpec,
    pub price_kind: String,
    pub rows: Vec<PlanRow>,
    pub recommendation: Option<String>,
    /// Whether the two cheapest ranked rows are ranked apart: their cost intervals overlap
    /// or not (`None` with fewer than two ranked rows).
    #[serde(default)]
    pub ranking: Option<String>,
}

impl PlanReport {
    /// Rewrites each row's reason with its settings named by `name`.
    pub fn name_settings(&mut self, name: &dyn Fn(&SettingError) -> String) {
        for r in &mut self.rows {
            if let Some(s) = &r.reason_settings {
                r.reason = Some(name(s));
            }
        }
    }
}

/// Bisection steps for the ends of an interval (within `hi / 32`).
const BOUND_STEPS: u32 = 5;

/// A trial's load: `trial_requests` Poisson arrivals at `rate`.
fn poisson(req: &PlanRequest, rate: f64) -> Load {
    load(
        req,
        Arrivals::Rate {
            rate,
            burstiness: 1.0,
        },
        req.trial_requests,
    )
}

/// Whether one instance of `m` meets the SLOs at a Poisson `rate` (a trial of the rate
/// searches, ended as soon as its verdict is known).
fn meets_at(m: &StepModel, req: &PlanRequest, rate: f64) -> bool {
    judge_until(m, &poisson(req, rate), &req.slo, true).0
}

/// The largest Poisson rate in `(0, hi]` one instance of `m` sustains within the SLOs, by
/// bisection (0 when even a light load misses them).
fn max_rate(m: &StepModel, req: &PlanRequest, hi: f64) -> f64 {
    let trial = |rate: f64| meets_at(m, req, rate);
    if trial(hi) {
        return hi;
    }
    let (mut lo, mut hi) = (0.0, hi);
    for _ in 0..BOUND_STEPS {
        let mid = 0.5 * (lo + hi);
        if trial(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The intervals of a ranked row whose configuration `m` sustains `rate0` per instance.
fn row_intervals(
    m: &StepModel,
    profile: &Profile,
    inst: &Instance,
    req: &PlanRequest,
    rate0: f64,
    price: Option<f64>,
) -> PlanIntervals {
    // An open loop: each replica may fill its slots.
    let outside = profile
        .calibration
        .outside(&inst.name, m.dep.tp, m.dep.dtype, Some(m.dep.max_num_seqs))
        .is_some();
    let bar = ErrorBar::of(&profile.calibration, outside);
    let fast = m.scaled(1.0 / bar.ttft, 1.0 / bar.tpot);
    let slow = m.scaled(bar.ttft, bar.tpot);
    // Steps `f` times faster sustain at most about `f` times the rate.
    let f = bar.ttft.max(bar.tpot);
    let (r_fast, r_slow) = std::thread::scope(|s| {
        let slow_rate = s.spawn(|| max_rate(&slow, req, rate0));
        let r_fast = max_rate(&fast, req, rate0 * f);
        (
            r_fast.max(rate0),
            slow_rate.join().unwrap_or(0.0).min(rate0),
        )
    });
    let tokens_per_req = (req.input_len + req.output_len) as f64;
    let needed = |r: f64| (r > 0.0).then(|| (req.rate / r).ceil().max(1.0));
    let (n_lo, n_hi) = (needed(r_fast), needed(r_slow));
    let fleet = |n: Option<f64>| Some(n? * price?);
    let cost =
        |n: Option<f64>| fleet(n).map(|usd| usd / 3600.0 / (req.rate * tokens_per_req) * 1e6);
    let at = |model: &StepModel, n: Option<f64>| -> (Option<f64>, Option<f64>) {
        let Some(n) = n else {
            return (None, None);
        };
        let l = poisson(req, req.rate / n);
        let (_, t, p) = judge(model, &l, &req.slo);
        (t, p)
    };
    // Latency of the row's own fleet with faster and slower steps.
    let n = needed(rate0);
    let (t_lo, p_lo) = at(&fast, n);
    let (t_hi, p_hi) = at(&slow, n);
    PlanIntervals {
        max_rate_per_instance_low: Some(r_slow),
        max_rate_per_instance_high: Some(r_fast),
        instances_needed_low: n_lo.map(|n| n as u64),
        instances_needed_high: n_hi.map(|n| n as u64),
        fleet_usd_per_hour_low: fleet(n_lo),
        fleet_usd_per_hour_high: fleet(n_hi),
        cost_usd_per_million_tokens_low: cost(n_lo),
        cost_usd_per_million_tokens_high: cost(n_hi),
        ttft_ms_at_percentile_low: t_lo,
        ttft_ms_at_percentile_high: t_hi,
        tpot_ms_at_percentile_low: p_lo,
        tpot_ms_at_percentile_high: p_hi,
        interval_basis: Some(bar.basis),
    }
}

/// Says whether the cost intervals of the two cheapest ranked rows overlap, in which case
/// the simulation does not decide which fleet is cheaper.
pub fn ranking_note(rows: &[PlanRow]) -> Option<String> {
    let mut ranked = rows
        .iter()
        .filter(|r| r.meets_slo && r.cost_usd_per_million_tokens.is_some());
    let (a, b) = (ranked.next()?, ranked.next()?);
    let lo = |r: &PlanRow| r.intervals.cost_usd_per_million_tokens_low;
    // An unknown upper end (the slow end misses the SLOs) is unbounded.
    let hi = |r: &PlanRow| {
        r.intervals
            .cost_usd_per_million_tokens_high
            .unwrap_or(f64::INFINITY)
    };
    let (ia, ib) = ((lo(a)?, hi(a)), (lo(b)?, hi(b)));
    let name = |r: &PlanRow| format!("{} × {}", r.instances_needed.unwrap_or(0), r.instance);
    let show = |(l, h): (f64, f64)| {
        if h.is_finite() {
            format!("${l:.3}–${h:.3}")
        } else {
            format!("${l:.3}–unbounded")
        }
    };
    Some(if overlap(ia, ib) {
        format!(
            "ranking not decided: the cost intervals of {} ({}) and {} ({} per 1M tokens) overlap",
            name(a),
            show(ia),
            name(b),
            show(ib)
        )
    } else {
        format!(
            "ranking decided: {} costs less than {} at every point of their intervals ({} against {} per 1M tokens)",
            name(a),
            name(b),
            show(ia),
            show(ib)
        )
    })
}

/// The p-th percentile TTFT and TPOT (ms) of a simulation, and whether they meet `slo`.
fn judge(m: &StepModel, load: &Load, slo: &SloSpec) -> (bool, Option<f64>, Option<f64>) {
    judge_until(m, load, slo, false)
}

/// [`judge`]; with `early`, a run that certainly misses the objectives ends as soon as
/// that is known (same verdict, no percentiles).
fn judge_until(
    m: &StepModel,
    load: &Load,
    slo: &SloSpec,
    early: bool,
) -> (bool, Option<f64>, Option<f64>) {
    let q = slo.percentile / 100.0;
    let stop = match (early, load.requests) {
        (true, Some(n)) => Some(StopRule::for_percentile(slo.ttft_ms, slo.tpot_ms, q, n)),
        _ => None,
    };
    let o = run_model_until(m, load, stop);
    if o.stopped {
        return (false, None, None);
    }
    if o.records.is_empty() {
        return (false, None, None);
    }
    let mut ttft: Vec<f64> = o.records.iter().map(|r| r.ttft() * 1e3).collect();
    let mut tpot: Vec<f64> = o
        .records
        .iter()
        .filter_map(|r| r.tpot().map(|t| t * 1e3))
        .collect();
    let t = quantile(&mut ttft, q);
    let p = quantile(&mut tpot, q);
    let ok = slo.ttft_ms.is_none_or(|x| t.is_some_and(|v| v <= x))
        && slo.tpot_ms.is_none_or(|y| p.is_none_or(|v| v <= y));
    (ok, t, p)
}

fn load(req: &PlanRequest, arrivals: Arrivals, requests: u64) -> Load {
    Load {
        arrivals,
        lengths: Lengths::Spread {
            input: req.input_len,
            output: req.output_len,
            input_stddev: req.input_stddev,
            output_stddev: req.output_stddev,
        },
        requests: Some(requests),
        duration_s: None,
        seed: req.seed,
    }
}

/// The compiled length a plan uses: input + output (plus three deviations when lengths
/// spread), rounded up as the profile does.
fn plan_seq_len(profile: &Profile, req: &PlanRequest, max_pos: u32) -> u32 {
    let spread = 3.0 * (req.input_stddev + req.output_stddev);
    let total = (req.input_len + req.output_len) as f64 + spread;
    let total = (total.ceil() as u32).min(max_pos);
    match profile.runtime.static_shapes {
        Some(s) => compiled_seq_len(total, 0, s.seq_len_multiple).min(max_pos),
        None => total,
    }
}

/// vLLM's default token budget for the chip (see [`DEFAULT_MAX_NUM_BATCHED_TOKENS`]).
pub fn default_batched_tokens(profile: &Profile) -> u32 {
    let gib = profile.chip.memory_bytes / 1073741824.0;
    if gib >= 70.0 && !profile.chip.name.to_ascii_lowercase().contains("a100") {
        LARGE_GPU_MAX_NUM_BATCHED_TOKENS
    } else {
        DEFAULT_MAX_NUM_BATCHED_TOKENS
    }
}

/// The best configuration of one instance: (deployment, max rate per instance).
fn search(
    card: &ModelCard,
    profile: &Profile,
    inst: &Instance,
    req: &PlanRequest,
) -> std::result::Result<(Deployment, f64), SettingError> {
    let units = profile.units(inst);
    let seq_len = plan_seq_len(
        profile,
        req,
        card.architecture.max_position_embeddings as u32,
    );
    let mut best: Option<(Deployment, f64)> = None;
    let mut why = SettingError::text("the weights do not fit at any allowed TP degree");
    let (tps, slots): (Vec<(u32, u32)>, Vec<u32>) = match &req.compiled {
        Some(c) => {
            if let Some(w) =
                crate::projection::neuron_config::why_not_held(profile, inst, c.tp, c.lnc, 1)
            {
                return Err(SettingError::text(format!(
                    "cannot hold the compiled configuration: {w}"
                )));
            }
            (vec![(c.tp, c.ep)], vec![c.max_num_seqs])
        }
        None => (
            profile
                .runtime
                .tp_degrees
                .iter()
                .copied()
                .filter(|&t| t <= units)
                .flat_map(|t| ep_candidates(card, t).into_iter().map(move |e| (t, e)))
                .collect(),
            SLOT_CANDIDATES.to_vec(),
        ),
    };
    let compiled = req.compiled.as_ref();
    let seq_len = compiled.and_then(|c| c.seq_len).unwrap_or(seq_len);
    for (tp, ep) in tps {
        let dp = units / tp;
        let mut last_rate = 0.0f64;
        for &b in &slots {
            let dep = Deployment {
                tp,
                dp,
                ep,
                max_num_seqs: b,
                seq_len,
                ctx_batch_size: compiled.and_then(|c| c.ctx_batch_size).unwrap_or(1),
                buckets: compiled.and_then(|c| c.buckets.clone()),
                chunked_prefill: req.chunked_prefill,
                max_num_batched_tokens: default_batched_tokens(profile),
                dtype: req.dtype,
            };
            let m = StepModel::new(&card.architecture, profile, &profile.latency, &dep);
            if let Err(e) = m.check_fits(&profile.runtime.tp_unit) {
                if b == slots[0] {
                    why = SettingError::from_chain(&e.context(format!("TP {tp}{}", ep_text(ep))));
                }
                break;
            }
            if let Err(e) = m.check_request(req.input_len, req.output_len) {
                if compiled.is_some() {
                    why = SettingError::from_chain(&e);
                }
                break;
            }
            // No load: one request alone. If that misses the SLOs, more slots will too.
            let (ok, t0, p0) = judge(
                &m,
                &load(req, Arrivals::Closed { concurrency: 1 }, 1),
                &req.slo,
            );
            if !ok {
                if best.is_none() {
                    why = SettingError::text(format!(
                        "misses the SLOs with no load at TP {tp}{}, {b} slot(s): p{} TTFT {:.0} ms, TPOT {:.1} ms",
                        ep_text(ep),
                        req.slo.percentile,
                        t0.unwrap_or(f64::NAN),
                        p0.unwrap_or(f64::NAN)
                    ));
                }
                break;
            }
            // Upper bound on the rate (Little's law): every slot busy, each request for at
            // least its no-load e2e.
            let e2e0 =
                t0.unwrap_or(0.0) + p0.unwrap_or(0.0) * req.output_len.saturating_sub(1) as f64;
            let mut hi = dp as f64 * b as f64 / (e2e0 / 1e3).max(1e-9);
            let trial = |rate: f64| meets_at(&m, req, rate);
            // Only a configuration needing fewer instances than the best so far matters:
            // it must sustain `rate / (n_best − 1)`.
            let n_best = best.as_ref().map(|(_, r)| (req.rate / r).ceil());
            if n_best == Some(1.0) {
                return best.ok_or(why);
            }
            let mut lo = 0.0;
            if let Some(n) = n_best {
                let need = req.rate / (n - 1.0);
                if need > hi || !trial(need) {
                    continue;
                }
                lo = need;
            }
            if trial(hi) {
                lo = hi;
            } else {
                for _ in 0..BISECTION_STEPS {
                    let mid = 0.5 * (lo + hi);
                    if trial(mid) {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
            }
            if lo <= 0.0 {
                continue;
            }
            let better = match &best {
                None => true,
                Some((_, r0)) => (req.rate / lo).ceil() < (req.rate / r0).ceil(),
            };
            if better {
                best = Some((dep.clone(), lo));
            }
            // Past the best slot count the rate falls (TPOT-bound): stop growing.
            if lo < 0.8 * last_rate {
                break;
            }
            last_rate = last_rate.max(lo);
        }
    }
    best.ok_or(why)
}

/// Expert-parallel degrees tried at TP degree `tp`: 1 (experts TP-sharded), and for a
/// mixture-of-experts model with at least `tp` experts also `tp` (one expert group per unit:
/// vLLM's `--enable-expert-parallel` within one replica). Degrees in between (NxD Inference's
/// `moe_tp_degree` × `moe_ep_degree`) are projected when given, not searched.
pub(super) fn ep_candidates(card: &ModelCard, tp: u32) -> Vec<u32> {
    match &card.architecture.experts {
        Some(e) if tp > 1 && tp as usize <= e.count => vec![1, tp],
        _ => vec![1],
    }
}

/// `f` over `items` on up to `available_parallelism` threads; results in input order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let done: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    for (i, r) in done.into_iter().flatten() {
        out[i] = Some(r);
    }
    out.into_iter().flatten().collect()
}

/// The plan row of one instance: its best configuration, or why it has none.
fn plan_row(card: &ModelCard, profile: &Profile, inst: &Instance, req: &PlanRequest) -> PlanRow {
    let tokens_per_req = (req.input_len + req.output_len) as f64;
    let lab = label(
        &profile.name,
        profile.calibration.error,
        match profile.calibration.status {
            crate::projection::profile::CalibrationStatus::Fitted => "fitted",
            crate::projection::profile::CalibrationStatus::Assumed => "assumed",
        },
    );
    let price = inst.price(req.price).map(|p| p.usd_per_hour);
    let mut row = PlanRow {
        profile: profile.name.clone(),
        instance: inst.name.clone(),
        tp: None,
        dp: None,
        ep_degree: None,
        max_num_seqs: None,
        max_rate_per_instance: None,
        instances_needed: None,
        fleet_usd_per_hour: None,
        cost_usd_per_million_tokens: None,
        meets_slo: false,
        reason: None,
        reason_settings: None,
        ttft_ms_at_percentile: None,
        tpot_ms_at_percentile: None,
        label: lab,
        intervals: PlanIntervals::default(),
    };
    match search(card, profile, inst, req) {
        Err(why) => {
            row.reason = Some(why.to_string());
            row.reason_settings = Some(why);
        }
        Ok((dep, max_rate)) => {
            let n = (req.rate / max_rate).ceil().max(1.0);
            row.tp = Some(dep.tp);
            row.dp = Some(dep.dp);
            row.ep_degree = Some(dep.ep);
            row.max_num_seqs = Some(dep.max_num_seqs);
            row.max_rate_per_instance = Some(max_rate);
            row.instances_needed = Some(n as u64);
            row.meets_slo = true;
            let m = StepModel::new(&card.architecture, profile, &profile.latency, &dep);
            let l = poisson(req, req.rate / n);
            let (_, t, p) = judge(&m, &l, &req.slo);
            row.ttft_ms_at_percentile = t;
            row.tpot_ms_at_percentile = p;
            row.intervals = row_intervals(&m, profile, inst, req, max_rate, price);
            match price {
                Some(usd) => {
                    let fleet = n * usd;
                    row.fleet_usd_per_hour = Some(fleet);
                    row.cost_usd_per_million_tokens =
                        Some(fleet / 3600.0 / (req.rate * tokens_per_req) * 1e6);
                }
                None => {
                    row.reason = Some(format!("no {} price: listed, not ranked", req.price.name()))
                }
            }
        }
    }
    row
}

/// Plans `req` on every instance of `profiles`.
pub fn plan(card: &ModelCard, profiles: &[Profile], req: &PlanRequest) -> Result<PlanReport> {
    if !(req.rate > 0.0 && req.rate.is_finite()) {
        bail!(SettingError::new(
            Setting::Rate,
            format!(
                " must be a positive number of requests per second (got {})",
                req.rate
            )
        ));
    }
    if req.input_len == 0 || req.output_len == 0 {
        bail!(SettingError::new(Setting::InputLen, " and ")
            .then(Setting::OutputLen, " must be at least 1"));
    }
    if req.slo.ttft_ms.is_none() && req.slo.tpot_ms.is_none() {
        bail!(SettingError::text("give ")
            .then(Setting::SloTtftMs, " and/or ")
            .then(
                Setting::SloTpotMs,
                ": plan searches for the cheapest fleet within them"
            ));
    }
    let probe = SimRequest {
        dep: Deployment {
            tp: 1,
            dp: 1,
            ep: 1,
            max_num_seqs: 1,
            seq_len: 1,
            ctx_batch_size: 1,
            buckets: None,
            chunked_prefill: true,
            max_num_batched_tokens: 1,
            dtype: req.dtype,
        },
        load: load(
            req,
            Arrivals::Rate {
                rate: req.rate,
                burstiness: 1.0,
            },
            1,
        ),
        slo: req.slo,
        price: req.price,
    };
    probe.load.validate()?;
    let p = req.slo.percentile;
    if !(p > 0.0 && p <= 100.0) {
        bail!(SettingError::new(
            Setting::SloPercentile,
            format!(" must be in (0, 100] (got {p})")
        ));
    }
    crate::projection::project::check_positions(card, req.input_len, req.output_len)?;
    // Every instance's search is independent and deterministic: spread them over the
    // machine's cores, rows kept in catalogue order.
    let jobs: Vec<(&Profile, &Instance)> = profiles
        .iter()
        .flat_map(|p| p.instances.iter().map(move |i| (p, i)))
        .collect();
    let mut rows = parallel_map(&jobs, |&(profile, inst)| plan_row(card, profile, inst, req));
    let rank = |r: &PlanRow| match (r.meets_slo, r.fleet_usd_per_hour) {
        (true, Some(_)) => 0,
        (true, None) => 1,
        _ => 2,
    };
    rows.sort_by(|a, b| {
        rank(a).cmp(&rank(b)).then(
            a.fleet_usd_per_hour
                .unwrap_or(f64::INFINITY)
                .total_cmp(&b.fleet_usd_per_hour.unwrap_or(f64::INFINITY)),
        )
    });
    let recommendation = rows.first().filter(|r| rank(r) == 0).map(|r| {
        format!(
            "{} × {} ({}, TP {}{} × {} replica(s), max-num-seqs {}): ${:.2}/h, ${:.3} per 1M tokens at {} req/s; up to {:.2} req/s per instance ({})",
            r.instances_needed.unwrap_or(0),
            r.instance,
            r.profile,
            r.tp.unwrap_or(0),
            ep_text(r.ep_degree.unwrap_or(1)),
            r.dp.unwrap_or(0),
            r.max_num_seqs.unwrap_or(0),
            r.fleet_usd_per_hour.unwrap_or(f64::NAN),
            r.cost_usd_per_million_tokens.unwrap_or(f64::NAN),
            req.rate,
            r.max_rate_per_instance.unwrap_or(f64::NAN),
            r.label
        )
    });
    let ranking = ranking_note(&rows);
    Ok(PlanReport {
        schema_version: 1,
        simulated: true,
        model: card.name.clone(),
        rate: req.rate,
        input_len: req.input_len,
        output_len: req.output_len,
        slo: req.slo,
        price_kind: req.price.name().to_string(),
        rows,
        recommendation,
        ranking,
    })
}

/// The rows on the Pareto frontier of (TTFT at the percentile, cost per 1M tokens): no
/// other row is at least as good on both and better on one. Indices into `rows`, by TTFT.
pub fn pareto(rows: &[PlanRow]) -> Vec<usize> {
    let pts: Vec<(usize, f64, f64)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.ttft_ms_at_percentile?, r.cost_usd_per_million_tokens?)))
        .collect();
    let mut front: Vec<(usize, f64, f64)> = pts
        .iter()
        .copied()
        .filter(|&(i, x, y)| {
            !pts.iter()
                .any(|&(j, x2, y2)| j != i && x2 <= x && y2 <= y && (x2 < x || y2 < y))
        })
        .collect();
    front.sort_by(|a, b| a.1.total_cmp(&b.1));
    front.into_iter().map(|p| p.0).collect()
}

/// An SVG chart of cost per 1M tokens against TTFT at the SLO percentile for the ranked
/// rows, with the Pareto frontier drawn through and each point's interval (the profile's
/// error bar, see [`crate::projection::interval`]) as error bars in both directions.
pub fn plot_svg(r: &PlanReport) -> Result<String> {
    let pts: Vec<(&PlanRow, f64, f64)> = r
        .rows
        .iter()
        .filter_map(|x| Some((x, x.ttft_ms_at_percentile?, x.cost_usd_per_million_tokens?)))
        .collect();
    if pts.is_empty() {
        bail!("no priced instance meets the SLOs");
    }
    let (w, h, m) = (900.0, 560.0, 70.0);
    // The axes hold the error bars too.
    let span = |row: &PlanRow, x: f64, y: f64| {
        let i = &row.intervals;
        (
            (
                i.ttft_ms_at_percentile_low.unwrap_or(x),
                i.ttft_ms_at_percentile_high.unwrap_or(x),
            ),
            (
                i.cost_usd_per_million_tokens_low.unwrap_or(y),
                i.cost_usd_per_million_tokens_high.unwrap_or(y),
            ),
        )
    };
    let xmax = pts
        .iter()
        .map(|p| span(p.0, p.1, p.2).0 .1.max(p.1))
        .fold(0.0, f64::max)
        * 1.1
        + 1e-9;
    let ymax = pts
        .iter()
        .map(|p| span(p.0, p.1, p.2).1 .1.max(p.2))
        .fold(0.0, f64::max)
        * 1.1
        + 1e-9;
    let sx = |x: f64| m + x / xmax * (w - 2.0 * m);
    let sy = |y: f64| h - m - y / ymax * (h - 2.0 * m);
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s += &format!(
        "<text x=\"{m}\" y=\"24\" font-size=\"14\">Simulated: {} at {} req/s, cost per 1M tokens vs p{} TTFT</text>\n",
        esc(&r.model),
        r.rate,
        r.slo.percentile
    );
    s += &format!(
        "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - m,
        w - m,
        h - m,
        h - m
    );
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">p{} TTFT (ms), max {:.0}</text>\n<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">USD per 1M tokens, max {:.3}</text>\n",
        w / 2.0,
        h - 24.0,
        r.slo.percentile,
        xmax,
        h / 2.0,
        h / 2.0,
        ymax
    );
    let front = pareto(&r.rows);
    let line: Vec<String> = front
        .iter()
        .filter_map(|&i| {
            let x = &r.rows[i];
            Some(format!(
                "{:.1},{:.1}",
                sx(x.ttft_ms_at_percentile?),
                sy(x.cost_usd_per_million_tokens?)
            ))
        })
        .collect();
    if line.len() > 1 {
        s += &format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\"/>\n",
            line.join(" ")
        );
    }
    for (row, x, y) in &pts {
        let ((x_lo, x_hi), (y_lo, y_hi)) = span(row, *x, *y);
        s += &format!(
            "<line class=\"error-bar\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1f77b4\" stroke-opacity=\"0.5\"/>\n<line class=\"error-bar\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1f77b4\" stroke-opacity=\"0.5\"/>\n",
            sx(x_lo),
            sy(*y),
            sx(x_hi),
            sy(*y),
            sx(*x),
            sy(y_lo),
            sx(*x),
            sy(y_hi)
        );
        s += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#1f77b4\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            sx(*x),
            sy(*y),
            sx(*x) + 6.0,
            sy(*y) - 6.0,
            esc(&format!("{} ×{}", row.instance, row.instances_needed.unwrap_or(0)))
        );
    }
    s += "</svg>\n";
    Ok(s)
}
