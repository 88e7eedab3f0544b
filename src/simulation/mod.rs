//! Serving simulation: a discrete-event simulator of one instance serving a stream of
//! requests with continuous batching ([`engine`]), on the per-step costs of
//! [`crate::projection::step`], under an offered load ([`load`]) drawn with a seeded
//! generator ([`rng`]); [`report`] summarises a run and [`plan`] searches deployments for
//! the cheapest fleet that meets latency objectives at a rate.

pub mod engine;
pub mod export;
pub mod load;
pub mod plan;
pub mod report;
pub mod rng;

use crate::model::card::ModelCard;
use crate::projection::compare::check_slo_ms;
use crate::projection::interval::ErrorBar;
use crate::projection::profile::{CalibrationStatus, Instance, PriceKind, Profile};
use crate::projection::project::replicas_beyond;
use crate::projection::setting::{Setting, SettingError};
use crate::projection::step::{Deployment, StepModel};
use anyhow::{bail, Context, Result};
use engine::Outcome;
use load::{Arrivals, Lengths, Load, Source};
use report::{SimIntervals, SimReport, SimSetup, SloSpec};

/// One simulation: a deployment on an instance, a load, objectives and a price basis.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRequest {
    pub dep: Deployment,
    pub load: Load,
    pub slo: SloSpec,
    pub price: PriceKind,
}

/// Checks everything a simulation needs before it runs; one line per problem.
pub fn check(
    card: &ModelCard,
    profile: &Profile,
    inst: &Instance,
    req: &SimRequest,
) -> Result<StepModel> {
    req.load.validate()?;
    let dep = &req.dep;
    dep.validate(profile)?;
    dep.check_model(&card.architecture)?;
    profile.check_tp(inst, dep.tp)?;
    let units = profile.units(inst);
    if dep.dp as u64 * dep.tp as u64 > units as u64 {
        bail!(replicas_beyond(dep.dp, dep.tp, profile, inst));
    }
    let p = req.slo.percentile;
    if !(p > 0.0 && p <= 100.0) {
        bail!(SettingError::new(
            Setting::SloPercentile,
            format!(" must be in (0, 100] (got {p})")
        ));
    }
    check_slo_ms(req.slo.ttft_ms, req.slo.tpot_ms)?;
    let m = StepModel::new(&card.architecture, profile, &profile.latency, dep);
    m.check_fits(&profile.runtime.tp_unit)?;
    match &req.load.lengths {
        Lengths::Spread { input, output, .. } => m.check_request(*input, *output)?,
        Lengths::List(v) => {
            for (i, e) in v.iter().enumerate() {
                m.check_request(e.prompt, e.output)
                    .with_context(|| format!("request {}", i + 1))?;
            }
        }
    }
    if req.load.arrivals == Arrivals::Trace && !matches!(req.load.lengths, Lengths::List(_)) {
        bail!("arrival times come from a workload or samples file");
    }
    Ok(m)
}

/// Runs a checked simulation and summarises it.
pub fn run(
    card: &ModelCard,
    profile: &Profile,
    inst: &Instance,
    req: &SimRequest,
) -> Result<(SimReport, Outcome)> {
    let m = check(card, profile, inst, req)?;
    // The projection and the two ends of its interval (the same load with every step
    // faster and slower by the profile's error bar), side by side.
    let outside = profile
        .calibration
        .outside(
            &inst.name,
            m.dep.tp,
            m.dep.dtype,
            Some(in_flight(&m.dep, &req.load)),
        )
        .is_some();
    let bar = ErrorBar::of(&profile.calibration, outside);
    let fast_m = m.scaled(1.0 / bar.ttft, 1.0 / bar.tpot);
    let slow_m = m.scaled(bar.ttft, bar.tpot);
    let (outcome, fast, slow) = std::thread::scope(|s| {
        let fast = s.spawn(|| run_model(&fast_m, &req.load));
        let slow = s.spawn(|| run_model(&slow_m, &req.load));
        let mid = run_model(&m, &req.load);
        (mid, fast.join(), slow.join())
    });
    let mut report = report_of(card, profile, inst, &m, req, &outcome);
    if let (Ok(fast), Ok(slow)) = (fast, slow) {
        let f = report_of(card, profile, inst, &fast_m, req, &fast);
        let s = report_of(card, profile, inst, &slow_m, req, &slow);
        report.intervals = SimIntervals::of(&report, &f, &s, bar.basis);
    }
    Ok((report, outcome))
}

/// The most sequences one replica has in flight: the closed loop's concurrency shared by
/// the replicas, at most its slots; the slots under an open loop.
pub fn in_flight(dep: &Deployment, load: &Load) -> u32 {
    match load.arrivals {
        Arrivals::Closed { concurrency } => concurrency
            .div_ceil(dep.dp.max(1))
            .clamp(1, dep.max_num_seqs.max(1)),
        _ => dep.max_num_seqs,
    }
}

/// Runs the load on a step model (no checks).
pub fn run_model(m: &StepModel, load: &Load) -> Outcome {
    run_model_until(m, load, None)
}

/// [`run_model`], ended early by `stop` once the objectives are certainly missed.
pub fn run_model_until(m: &StepModel, load: &Load, stop: Option<engine::StopRule>) -> Outcome {
    let source = Source::new(load, m.max_prompt(), m.dep.seq_len);
    engine::simulate_until(m, load.arrivals, source, stop)
}

/// The report of an outcome.
pub fn report_of(
    card: &ModelCard,
    profile: &Profile,
    inst: &Instance,
    m: &StepModel,
    req: &SimRequest,
    outcome: &Outcome,
) -> SimReport {
    let dep = &m.dep;
    let replicas_units = dep.tp as f64 * dep.dp as f64;
    let kv_unit = m.kv_bytes_per_token();
    let static_kv = m
        .static_shapes
        .then_some(dep.max_num_seqs as f64 * dep.seq_len as f64 * kv_unit * replicas_units);
    let capacity = static_kv.unwrap_or(m.kv_capacity_tokens() * kv_unit * replicas_units);
    let (arrivals, concurrency, rate, burstiness) = match req.load.arrivals {
        Arrivals::Closed { concurrency } => ("closed".to_string(), Some(concurrency), None, None),
        Arrivals::Rate { rate, burstiness } => (
            if burstiness == 1.0 {
                "poisson"
            } else {
                "gamma"
            }
            .to_string(),
            None,
            Some(rate),
            Some(burstiness),
        ),
        Arrivals::Trace => ("trace".to_string(), None, None, None),
    };
    let scheduler = if m.static_shapes {
        "static-slots"
    } else if dep.chunked_prefill {
        "chunked-prefill"
    } else {
        "prefill-first"
    };
    let setup = SimSetup {
        model: card.name.clone(),
        profile: profile.name.clone(),
        instance: inst.name.clone(),
        tp: dep.tp,
        dp: dep.dp,
        ep_degree: dep.ep,
        max_num_seqs: dep.max_num_seqs,
        seq_len: dep.seq_len,
        ctx_batch_size: dep.ctx_batch_size,
        scheduler: scheduler.into(),
        max_num_batched_tokens: (!m.static_shapes).then_some(dep.max_num_batched_tokens),
        weights_dtype: dep.dtype.name().to_string(),
        arrivals,
        concurrency,
        rate,
        burstiness,
        seed: req.load.seed,
        price_kind: req.price.name().to_string(),
        price_usd_per_hour: inst.price(req.price).map(|p| p.usd_per_hour),
        kv_memory_capacity_bytes: capacity,
        kv_bytes_per_token: kv_unit * dep.tp as f64,
        calibration_mape: profile.calibration.error,
        calibration_status: match profile.calibration.status {
            CalibrationStatus::Fitted => "fitted".into(),
            CalibrationStatus::Assumed => "assumed".into(),
        },
    };
    let mut r = SimReport::new(setup, outcome, req.slo, static_kv);
    if let Some(why) = profile.calibration.outside(
        &inst.name,
        dep.tp,
        dep.dtype,
        Some(in_flight(dep, &req.load)),
    ) {
        r.notes.push(why);
    }
    if profile.calibration.status == CalibrationStatus::Assumed {
        r.notes.push(format!(
            "uncalibrated profile: efficiencies assumed, see [calibration] in {}.toml",
            profile.name
        ));
    }
    if m.static_shapes {
        r.notes.push(format!(
            "static shapes: every decode step runs the {} compiled slots over the bucket of the longest context; prompts padded to their bucket and encoded {} at a time",
            dep.max_num_seqs, dep.ctx_batch_size
        ));
    } else {
        r.notes.push("no preemption modelled: a request is admitted only when the KV cache holds its prompt and whole output".into());
    }
    r
}

/// One JSON line per finished request for `--per-request`.
pub fn per_request_jsonl(o: &Outcome) -> String {
    let mut s = String::new();
    for (i, r) in o.records.iter().enumerate() {
        let line = serde_json::json!({
            "index": i,
            "simulated": true,
            "arrival_s": r.arrival,
            "prompt_tokens": r.prompt,
            "output_tokens": r.output,
            "queue_ms": r.queue() * 1e3,
            "ttft_ms": r.ttft() * 1e3,
            "tpot_ms": r.tpot().map(|t| t * 1e3),
            "e2e_ms": r.e2e() * 1e3,
        });
        s.push_str(&line.to_string());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests;
