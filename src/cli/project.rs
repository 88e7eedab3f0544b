//! `profiler project | compare | calibrate | devices | models`, and the projections that
//! `profiler run --device` adds to a run's report.

use crate::engine::Engine;
use crate::hostbench::HostRates;
use crate::model::card::{self, ModelCard};
use crate::paths::Home;
use crate::projection::export::{self, Format};
use crate::projection::profile::{self, Profile};
use crate::projection::{self as proj, CompareRequest, PriceKind, ProjectRequest, WeightsDtype};
use crate::report::{HostCheck, Report};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

use super::write_out;

/// Profiles named by `--device` (comma-separated or `all`); none when not given.
pub fn resolve_profiles(device: Option<&str>, home: &Home) -> Result<Vec<Profile>> {
    match device {
        None => Ok(Vec::new()),
        Some(sel) if sel.trim().is_empty() => {
            bail!("--device is empty: expected profile names (comma-separated) or `all` (see `profiler devices`)")
        }
        Some(sel) => profile::load_selection(&home.profiles_dir(), sel),
    }
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
        default_dtype: "bf16".into(),
        architecture: engine.model.config().clone(),
        weights: None,
        path: PathBuf::new(),
    })
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
    let cost = |c: f64| c.is_finite().then_some(c);
    m.set_projection(&crate::metrics::Projection {
        profile: &x.profile,
        instance: &x.instance,
        tp: x.tp,
        batch: x.batch,
        ttft_s: x.ttft_ms / 1e3,
        tpot_s: x.tpot_ms / 1e3,
        cost_usd_per_million_output_tokens: cost(x.cost_usd_per_million_output_tokens),
        cost_usd_per_million_tokens: cost(x.cost_usd_per_million_tokens),
    });
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
        profiles: &'a [Profile],
        weights_dtype: &str,
        batch: u32,
        metrics: Option<&'a crate::metrics::Metrics>,
    ) -> Result<Option<Self>> {
        let Some(metrics) = metrics.filter(|_| !profiles.is_empty()) else {
            return Ok(None);
        };
        let dtype = WeightsDtype::parse(weights_dtype)
            .with_context(|| format!("--project-dtype {weights_dtype}"))?;
        Ok(Some(LiveProjections {
            card: card_of(engine),
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
pub fn attach_projections(
    report: &mut Report,
    engine: &Engine,
    profiles: &[Profile],
    weights_dtype: &str,
    rates: Option<HostRates>,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<()> {
    if report.requests == 0 {
        return Ok(());
    }
    let card = card_of(engine);
    let n = report.requests as f64;
    let input_len = ((report.prompt_tokens as f64 / n).round() as u32).max(1);
    let output_len = ((report.output_tokens as f64 / n).round() as u32).max(1);
    let batch = report.workload.batch.max(1);
    let dtype = WeightsDtype::parse(weights_dtype)
        .with_context(|| format!("--project-dtype {weights_dtype}"))?;
    for p in project_workload(&card, profiles, dtype, batch, input_len, output_len)? {
        if let Some(m) = metrics {
            publish(m, &p);
        }
        report.projections.push(p.projection);
    }
    if let Some(r) = rates {
        let run_dtype = match engine.dtype {
            crate::engine::DType::F32 => WeightsDtype::parse("fp32")?,
            crate::engine::DType::Bf16 => WeightsDtype::parse("bf16")?,
            crate::engine::DType::F16 => WeightsDtype::parse("fp16")?,
            crate::engine::DType::Int8 => WeightsDtype::parse("int8")?,
            crate::engine::DType::Int4 => WeightsDtype::parse("int4")?,
        };
        let memory = crate::sysinfo::available_memory_bytes().unwrap_or(0);
        let host = proj::host_profile(r.matmul_flops_per_s, r.memory_bytes_per_s, memory, "host");
        let p =
            proj::project_host(&card, &host, batch, input_len, output_len, run_dtype).projection;
        if let (Some(ttft), tpot) = (&report.ttft_ms, &report.tpot_ms) {
            let check = HostCheck::new(
                p.ttft_ms,
                ttft.mean,
                p.tpot_ms,
                tpot.as_ref().map(|t| t.mean),
                r.matmul_flops_per_s / 1e9,
                r.memory_bytes_per_s / 1e9,
            );
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

/// Flag values checked by clap, so that a bad one is a usage error (exit 2) like every
/// other command's.
fn weights_dtype(s: &str) -> std::result::Result<WeightsDtype, String> {
    WeightsDtype::parse(s).map_err(|e| format!("{e:#}"))
}

fn price_kind(s: &str) -> std::result::Result<PriceKind, String> {
    PriceKind::parse(s).map_err(|e| format!("{e:#}"))
}

fn format(s: &str) -> std::result::Result<Format, String> {
    Format::parse(s).map_err(|e| format!("{e:#}"))
}

#[derive(Args, Debug)]
pub struct ProjectArgs {
    /// Model card (`profiler models`).
    #[arg(long)]
    model: String,
    /// Profiles: names, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    device: String,
    /// One instance type only.
    #[arg(long)]
    instance: Option<String>,
    /// Tensor-parallel degree (default: the instance's natural degree).
    #[arg(long)]
    tp: Option<u32>,
    #[arg(long, default_value_t = 1)]
    batch: u32,
    #[arg(long, default_value_t = 128)]
    input_len: u32,
    #[arg(long, default_value_t = 128)]
    output_len: u32,
    #[command(flatten)]
    compile: CompileArgs,
    #[command(flatten)]
    basis: Basis,
}

/// How the model is compiled and served, shared by `project` and `simulate`.
#[derive(Args, Debug, Clone)]
pub struct CompileArgs {
    /// Compiled positions (KV cache sized for them); default: input + output rounded up
    /// to the profile's multiple.
    #[arg(long)]
    pub seq_len: Option<u32>,
    /// Continuous-batching slots / compiled batch (default: --batch). On Neuron every
    /// decode step runs all of them, busy or not.
    #[arg(long)]
    pub max_num_seqs: Option<u32>,
    /// Prompts encoded together per context-encoding call (Neuron; NxD Inference's default
    /// is the batch size, vLLM on Neuron sets 1).
    #[arg(long)]
    pub ctx_batch_size: Option<u32>,
    /// Context-encoding and token-generation buckets, e.g. 128,512,2048 (Neuron; default:
    /// powers of two from 128 up to --seq-len).
    #[arg(long, value_delimiter = ',')]
    pub buckets: Option<Vec<u32>>,
    /// Data-parallel replicas on one instance; replicas × TP must fit it.
    #[arg(long, default_value_t = 1)]
    pub dp: u32,
}

/// What projected numbers are computed on and printed as, shared by `project` and
/// `compare`.
#[derive(Args, Debug)]
pub struct Basis {
    /// Serving dtype projected: bf16, fp16, fp8, int8, int4 or fp32.
    #[arg(long, default_value = "bf16", value_parser = weights_dtype)]
    weights_dtype: WeightsDtype,
    /// Price kind: on-demand, reserved or capacity-block.
    #[arg(long, default_value = "on-demand", value_parser = price_kind)]
    price: PriceKind,
    /// table, json, csv or markdown.
    #[arg(long, default_value = "table", value_parser = format)]
    format: Format,
}

pub fn project(a: ProjectArgs) -> Result<()> {
    let home = Home::locate()?;
    let format = a.basis.format;
    let card = card::find(&home.models_dir(), &a.model)?;
    let mut req = ProjectRequest::new(a.input_len, a.output_len, a.basis.weights_dtype);
    req.instance = a.instance;
    req.tp = a.tp;
    req.batch = a.batch;
    req.price = a.basis.price;
    if a.compile.dp == 0 {
        bail!("--dp must be at least 1");
    }
    for (flag, v) in [
        ("--seq-len", a.compile.seq_len),
        ("--max-num-seqs", a.compile.max_num_seqs),
        ("--ctx-batch-size", a.compile.ctx_batch_size),
    ] {
        if v == Some(0) {
            bail!("{flag} must be at least 1");
        }
    }
    req.seq_len = a.compile.seq_len;
    req.max_num_seqs = a.compile.max_num_seqs;
    req.ctx_batch_size = a.compile.ctx_batch_size;
    req.buckets = a.compile.buckets;
    req.dp = a.compile.dp;
    let rows = proj::project_detailed(&home.profiles_dir(), &card, &a.device, &req)?;
    write_out(&export::projections(
        format,
        &card.name,
        card.architecture.parameter_count(),
        &rows,
    ))
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    #[arg(long)]
    model: String,
    #[arg(long, default_value = "all")]
    device: String,
    #[arg(long, default_value_t = 128)]
    input_len: u32,
    #[arg(long, default_value_t = 128)]
    output_len: u32,
    /// Batch when no SLO is given.
    #[arg(long, default_value_t = 1)]
    batch: u32,
    /// Time-to-first-token target, ms.
    #[arg(long)]
    slo_ttft_ms: Option<f64>,
    /// Time-per-output-token target, ms.
    #[arg(long)]
    slo_tpot_ms: Option<f64>,
    #[command(flatten)]
    basis: Basis,
    /// Write an SVG chart of cost per 1M tokens against TPOT.
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let home = Home::locate()?;
    let format = a.basis.format;
    let card = card::find(&home.models_dir(), &a.model)?;
    for (flag, v) in [
        ("--slo-ttft-ms", a.slo_ttft_ms),
        ("--slo-tpot-ms", a.slo_tpot_ms),
    ] {
        if v.is_some_and(|x| !(x > 0.0 && x.is_finite())) {
            bail!("{flag} must be a positive number of milliseconds");
        }
    }
    let mut req = CompareRequest::new(a.input_len, a.output_len, a.basis.weights_dtype);
    req.batch = a.batch;
    req.slo.ttft_ms = a.slo_ttft_ms;
    req.slo.tpot_ms = a.slo_tpot_ms;
    req.price = a.basis.price;
    let r = proj::compare(&home.profiles_dir(), &card, &a.device, &req)?;
    if let Some(path) = &a.plot {
        crate::paths::check_output_file("--plot", path)?;
    }
    write_out(&export::comparison(format, &r))?;
    if let Some(path) = &a.plot {
        // The comparison stands even when nothing in it can be drawn (no instance fits).
        match proj::plot_svg(&r) {
            Ok(svg) => std::fs::write(path, svg)
                .with_context(|| format!("cannot write the chart to {}", path.display()))?,
            Err(e) => eprintln!(
                "warning: --plot {}: no chart written: {e:#}",
                path.display()
            ),
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// The profile to fit.
    #[arg(long)]
    device: String,
    /// Measured points (CSV); default: the profile's own calibration points.
    #[arg(long)]
    points: Option<PathBuf>,
    /// Write the fitted parameters back into the profile file.
    #[arg(long)]
    write: bool,
    #[arg(long, default_value = "table", value_parser = format)]
    format: Format,
}

pub fn calibrate(a: CalibrateArgs) -> Result<()> {
    let home = Home::locate()?;
    let format = a.format;
    let r = proj::calibrate(
        &home.profiles_dir(),
        &home.models_dir(),
        &a.device,
        a.points.as_deref(),
    )?;
    write_out(&export::calibration(format, &r))?;
    if a.write {
        proj::write_profile(&r.profile_path, &r)?;
        eprintln!(
            "wrote the fitted parameters to {}",
            r.profile_path.display()
        );
    }
    Ok(())
}

pub fn devices() -> Result<()> {
    let home = Home::locate()?;
    let list = proj::catalog::devices(&home.profiles_dir())?;
    write_out(proj::catalog::devices_text(&list).as_bytes())
}

pub fn models() -> Result<()> {
    let home = Home::locate()?;
    let list = proj::catalog::models(&home.models_dir())?;
    write_out(proj::catalog::models_text(&list).as_bytes())
}
