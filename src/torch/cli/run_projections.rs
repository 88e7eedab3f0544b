//! The projections that `profiler run --device` adds to a run's report and its live gauges
//! (needs the loaded engine, so the `torch` feature).

use crate::engine::Engine;
use crate::hostbench::HostRates;
use crate::model::card::ModelCard;
use crate::projection::host_steps;
use crate::projection::profile::Profile;
use crate::projection::{self as proj, ProjectRequest, WeightsDtype};
use crate::report::{HostCheck, Report};
use anyhow::Result;
use std::path::PathBuf;

/// The card of the loaded model, or one made from its configuration (GGUF/HF inputs).
fn card_of(engine: &Engine) -> ModelCard {
    engine.info.card.clone().unwrap_or_else(|| ModelCard {
        name: engine.info.name.clone(),
        aliases: Vec::new(),
        description: "model given by path".into(),
        source: engine
            .info
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        default_dtype: WeightsDtype::Bf16,
        architecture: engine.model.config().clone().into(),
        weights: None,
        path: PathBuf::new(),
    })
}

/// The projection gauges while a run goes on: after every finished request they are set
/// again from the mean prompt and output tokens so far, so that a scrape during a long
/// run sees them (the report's projections, from the same means over the whole run, set
/// them a last time at the end).
pub struct LiveProjections<'a> {
    card: ModelCard,
    profiles: &'a [Profile],
    dtype: WeightsDtype,
    batch: u32,
    metrics: &'a crate::metrics::Metrics,
    sums: std::cell::Cell<(u64, u64, u64)>,
}

impl<'a> LiveProjections<'a> {
    /// `None` when there is nothing to publish (no metrics or no profiles).
    pub fn new(
        engine: &Engine,
        projected: Option<&ModelCard>,
        profiles: &'a [Profile],
        dtype: WeightsDtype,
        batch: u32,
        metrics: Option<&'a crate::metrics::Metrics>,
    ) -> Result<Option<Self>> {
        let Some(metrics) = metrics.filter(|_| !profiles.is_empty()) else {
            return Ok(None);
        };
        Ok(Some(LiveProjections {
            card: projected.cloned().unwrap_or_else(|| card_of(engine)),
            profiles,
            dtype,
            batch,
            metrics,
            sums: std::cell::Cell::new((0, 0, 0)),
        }))
    }

    /// Counts one finished request and publishes the projections of the means so far.
    pub fn observe(&self, prompt_tokens: u64, output_tokens: u64) {
        let (n, p, o) = self.sums.get();
        let (n, p, o) = (n + 1, p + prompt_tokens, o + output_tokens);
        self.sums.set((n, p, o));
        let mean = |t: u64| ((t as f64 / n as f64).round() as u32).max(1);
        // A workload the profiles refuse is reported by the final projection; live
        // gauges just stay unset.
        if let Ok(rows) = project_workload(
            &self.card,
            self.profiles,
            self.dtype,
            self.batch,
            mean(p),
            mean(o),
        ) {
            for r in &rows {
                publish(self.metrics, r);
            }
        }
    }
}

/// Adds to `report` the projections of its measured workload (mean prompt and output
/// tokens, batch) onto `profiles`, and the host self-check from `rates`.
///
/// With `projected` (`run --project-model`), the projections are of that model at the
/// measured shape, and the report names it; the host self-check still projects the
/// measured model, since that is what it compares with.
pub fn attach_projections(
    report: &mut Report,
    engine: &Engine,
    projected: Option<&ModelCard>,
    profiles: &[Profile],
    dtype: WeightsDtype,
    rates: Option<HostRates>,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<()> {
    if report.requests == 0 {
        return Ok(());
    }
    let card = card_of(engine);
    let target = projected.unwrap_or(&card);
    report.projected_model = projected.map(|c| c.name.clone());
    let n = report.requests as f64;
    let input_len = ((report.prompt_tokens as f64 / n).round() as u32).max(1);
    let output_len = ((report.output_tokens as f64 / n).round() as u32).max(1);
    let batch = report.workload.batch.max(1);
    for p in project_workload(target, profiles, dtype, batch, input_len, output_len)? {
        if let Some(m) = metrics {
            publish(m, &p);
        }
        report.projections.push(p.projection);
    }
    if let Some(r) = rates {
        let run_dtype = engine.dtype;
        let memory = crate::sysinfo::available_memory_bytes().unwrap_or(0);
        let host = proj::host_profile(r.matmul_flops_per_s, r.memory_bytes_per_s, memory, "host");
        // The self-check projects from the two rates alone (the roofline method as it is
        // applied to the other targets); the step times only feed `simulate --host-check`.
        let p =
            proj::project_host(&card, &host, batch, input_len, output_len, run_dtype).projection;
        if let (Some(ttft), tpot) = (&report.ttft_ms, &report.tpot_ms) {
            let mut check = HostCheck::new(
                p.ttft_ms,
                ttft.mean,
                p.tpot_ms,
                tpot.as_ref().map(|t| t.mean),
                r.matmul_flops_per_s / 1e9,
                r.memory_bytes_per_s / 1e9,
            );
            match &r.steps {
                Ok(t) => {
                    let params = host_steps::derive(&card.architecture, &host, run_dtype, t);
                    check = check.with_steps(t, params);
                }
                Err(e) => report.warnings.push(format!(
                    "host check: the model's step times were not measured ({e}); the report's host_check has no prefill_compute_efficiency or decode_seq_ms"
                )),
            }
            if let Some(m) = metrics {
                if let Some(e) = check.ttft_error_ratio {
                    m.set_host_error(crate::metrics::HostMetric::Ttft, e);
                }
                if let Some(e) = check.tpot_error_ratio {
                    m.set_host_error(crate::metrics::HostMetric::Tpot, e);
                }
            }
            report.host_check = Some(check);
        }
    }
    Ok(())
}

/// Projections of a workload shape (batch, prompt and output tokens per sequence) onto
/// `profiles`; none without profiles.
fn project_workload(
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
fn publish(m: &crate::metrics::Metrics, p: &proj::Projected) {
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
