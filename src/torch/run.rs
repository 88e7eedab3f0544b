//! A whole `profiler run` as a library call, once the model is loaded and the run's
//! telemetry ([`Session`]) started: the host self-check, the measurement loop on the
//! engine, and the report with its projections (computed once, at the end).

use crate::engine::Engine;
use crate::generation::Inference;
use crate::hostbench::HostRates;
use crate::measure::clock::MonotonicClock;
use crate::measure::runner::{self, Corpus, RunObserver, RunPlan, RunResult};
use crate::measure::samples::{RunEnd, SamplesWriter};
use crate::model::card::ModelCard;
use crate::projection::host_steps;
use crate::projection::profile::Profile;
use crate::projection::{self as proj, WeightsDtype};
use crate::report::{Environment, HostCheck, Report, Workload};
use crate::session::{project_workload, publish_projection, LiveProjections, Session};
use crate::signals::StopFlags;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// What a run's projections project: `model` (the measured one when `None`) at `dtype`
/// onto `profiles` (none: no projections).
pub struct Targets {
    pub profiles: Vec<Profile>,
    pub model: Option<ModelCard>,
    pub dtype: WeightsDtype,
}

impl Targets {
    /// The projection gauges to keep current while `engine` runs batches of `batch`.
    pub fn live(&self, engine: &Engine, batch: usize) -> LiveProjections {
        LiveProjections {
            card: self.model.clone().unwrap_or_else(|| card_of(engine)),
            profiles: self.profiles.clone(),
            dtype: self.dtype,
            batch: u32::try_from(batch).unwrap_or(u32::MAX),
        }
    }
}

/// What a run is asked to do beyond its requests.
pub struct RunSpec<'a> {
    pub plan: &'a RunPlan,
    pub corpus: Option<&'a Corpus>,
    pub environment: Environment,
    pub workload: Workload,
    /// Write each request to this samples file as it finishes.
    pub samples: Option<&'a Path>,
    pub targets: &'a Targets,
    /// The host self-check's rates ([`host_rates`]), measured before the run.
    pub host: Option<HostRates>,
}

/// A finished run: its report, how the loop ended, and the signal handlers that may have
/// stopped it.
pub struct Outcome {
    pub report: Report,
    pub result: RunResult,
    flags: StopFlags,
}

impl Outcome {
    /// How the command ends once the report is out: the failure that stopped the run, or
    /// the exit status of the signal that interrupted it.
    pub fn status(&self) -> Result<()> {
        if let Some(e) = self.result.stop_error() {
            return Err(e);
        }
        if self.result.interrupted {
            return Err(crate::cli::Exit(self.flags.exit_code()).into());
        }
        Ok(())
    }
}

/// The host self-check's rates: the dense matmul and copy rates, and the model's own
/// prefill and decode step times at fixed shapes.
pub fn host_rates(engine: &Engine, batch: usize) -> HostRates {
    let mut r = crate::hostbench::measure(
        engine.device,
        engine.model.weights_mode().activation_kind(),
        engine.matmul_precision,
        1024,
        256 << 20,
    );
    r.steps = crate::hostbench::measure_steps(
        engine,
        crate::hostbench::step_rows(batch),
        crate::hostbench::STEP_PROMPT_TOKENS,
        5,
    )
    .map_err(|e| format!("{e:#}"));
    r
}

/// Runs `spec` on `engine`, telling `session` and `progress` as it goes, and builds the
/// report: measured statistics, the projections of the measured shape, the host check.
/// Ctrl-C and SIGTERM stop the loop after the current step (the report still covers
/// what finished).
pub fn measure(
    engine: &Engine,
    spec: RunSpec<'_>,
    session: &Session,
    progress: &dyn RunObserver,
) -> Result<Outcome> {
    let mut writer = spec
        .samples
        .map(|p| SamplesWriter::create(p, &spec.environment, &spec.workload))
        .transpose()?;
    let flags = StopFlags::install()?;
    let mut inference = engine.inference();
    let result = runner::execute(
        &mut inference,
        &MonotonicClock::new(),
        spec.plan,
        spec.corpus,
        &flags.stop,
        writer.as_mut().map(|w| w as &mut dyn runner::SampleSink),
        &(session, progress),
    )?;
    session.stop_live();
    let memory = inference.memory();
    drop(inference);
    let end = RunEnd {
        peak_rss_bytes: memory.peak_rss_bytes,
        cuda_peak_allocated_bytes: memory.device_peak_bytes,
        interrupted: result.interrupted,
        warnings: result.warnings.clone(),
    };
    let mut report = Report::from_samples(
        spec.environment,
        spec.workload,
        &result.samples,
        end.clone(),
        Vec::new(),
        None,
    );
    attach_projections(
        &mut report,
        engine,
        spec.targets,
        spec.host,
        session.metrics(),
    )?;
    report.warnings.extend(result.stop_warnings());
    if result.samples_error.is_none() {
        if let Some(w) = writer {
            w.finish(&end)?;
        }
    }
    Ok(Outcome {
        report,
        result,
        flags,
    })
}

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

/// Adds to `report` the projections of its measured workload (mean prompt and output
/// tokens, batch) onto the targets' profiles, setting their gauges a last time, and the
/// host self-check from `rates`.
///
/// With `projected` (`run --project-model`), the projections are of that model at the
/// measured shape, and the report names it; the host self-check still projects the
/// measured model, since that is what it compares with.
fn attach_projections(
    report: &mut Report,
    engine: &Engine,
    targets: &Targets,
    rates: Option<HostRates>,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<()> {
    let (projected, profiles, dtype) = (targets.model.as_ref(), &targets.profiles, targets.dtype);
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
            publish_projection(m, &p);
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
