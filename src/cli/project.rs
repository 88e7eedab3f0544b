//! `profiler project | compare | devices | models`.

use crate::model::card;
use crate::output::Format;
use crate::paths::Home;
use crate::projection::export;
use crate::projection::neuron_config::{self as nconf, Explicit};
use crate::projection::profile::{self, Profile};
use crate::projection::{self as proj, CompareRequest, PriceKind, ProjectRequest, WeightsDtype};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

use super::names::Names;
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

/// `--price-kind`, checked by clap so that a bad one is a usage error (exit 2) like every
/// other flag's.
pub(super) fn price_kind(s: &str) -> std::result::Result<PriceKind, String> {
    PriceKind::parse(s).map_err(|e| format!("{e:#}"))
}

pub(super) fn format(s: &str) -> std::result::Result<Format, String> {
    Format::parse(s).map_err(|e| format!("{e:#}"))
}

#[derive(Args, Debug)]
pub struct ProjectArgs {
    /// Model card (`profiler models`); with --neuron-config, by default the `config.json`
    /// saved with the compiled model.
    #[arg(long, required_unless_present = "neuron_config")]
    model: Option<String>,
    /// A Neuron-compiled model's directory, its NxD Inference / optimum-neuron
    /// `neuron_config.json` or an optimum-neuron `config.json`: sets --tp, --batch,
    /// --max-num-seqs, --ctx-batch-size, --seq-len, --buckets and --weights-dtype (flags
    /// given win) and keeps the instances that hold it.
    #[arg(long)]
    neuron_config: Option<PathBuf>,
    /// Profiles: names, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    device: String,
    /// One instance type only.
    #[arg(long)]
    instance: Option<String>,
    /// Tensor-parallel degree (default: the instance's natural degree).
    #[arg(long)]
    tp: Option<u32>,
    /// Sequences per batch (default 1, or the compiled batch of --neuron-config).
    #[arg(long)]
    batch: Option<u32>,
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
    /// Mixture-of-experts models: expert-parallel degree inside the TP group (divides
    /// --tp): the routed experts are spread over this many groups of TP/EP units each, whole
    /// experts per group (vLLM `--enable-expert-parallel` is --ep-degree equal to --tp;
    /// NxD Inference `moe_ep_degree`). Default 1: every expert sharded over the TP group.
    #[arg(long)]
    pub ep_degree: Option<u32>,
}

impl CompileArgs {
    /// The flags given explicitly, for `--neuron-config` to fill what they leave out.
    pub fn explicit(
        &self,
        tp: Option<u32>,
        batch: Option<u32>,
        weights_dtype: Option<WeightsDtype>,
    ) -> Explicit {
        Explicit {
            tp,
            ep_degree: self.ep_degree,
            batch,
            max_num_seqs: self.max_num_seqs,
            ctx_batch_size: self.ctx_batch_size,
            seq_len: self.seq_len,
            buckets: self.buckets.clone(),
            weights_dtype,
        }
    }
}

/// Zero replicas, positions, slots or prompts per call: one line naming the flag.
fn check_counts(
    dp: u32,
    seq_len: Option<u32>,
    max_num_seqs: Option<u32>,
    ctx_batch_size: Option<u32>,
) -> Result<()> {
    if dp == 0 {
        bail!("--dp must be at least 1");
    }
    for (flag, v) in [
        ("--seq-len", seq_len),
        ("--max-num-seqs", max_num_seqs),
        ("--ctx-batch-size", ctx_batch_size),
    ] {
        if v == Some(0) {
            bail!("{flag} must be at least 1");
        }
    }
    Ok(())
}

impl CompileArgs {
    /// Zero slots, replicas or positions: one line naming the flag.
    pub fn check(&self) -> Result<()> {
        check_counts(
            self.dp,
            self.seq_len,
            self.max_num_seqs,
            self.ctx_batch_size,
        )
    }
}

/// What projected numbers are computed on and printed as, shared by `project` and
/// `compare`.
#[derive(Args, Debug)]
pub struct Basis {
    /// Serving dtype projected: bf16 (default), fp16, fp8, int8, int4 or fp32.
    #[arg(long, value_parser = WeightsDtype::parse_flag)]
    weights_dtype: Option<WeightsDtype>,
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
    let nc = nconf::read_opt(a.neuron_config.as_deref())?;
    let card = nconf::model_card(&home.models_dir(), a.model.as_deref(), nc.as_ref())?;
    let explicit = a.compile.explicit(a.tp, a.batch, a.basis.weights_dtype);
    let mut s = nconf::settings(nc.as_ref(), &explicit, true);
    let dtype = s.weights_dtype.unwrap_or(WeightsDtype::Bf16);
    let mut req = ProjectRequest::new(a.input_len, a.output_len, dtype);
    req.instance = a.instance;
    req.tp = s.tp;
    req.batch = s.batch.unwrap_or(1);
    req.price = a.basis.price;
    check_counts(a.compile.dp, s.seq_len, s.max_num_seqs, s.ctx_batch_size)?;
    req.seq_len = s.seq_len;
    req.max_num_seqs = s.max_num_seqs;
    req.ctx_batch_size = s.ctx_batch_size;
    req.buckets = s.buckets.clone();
    req.dp = a.compile.dp;
    req.ep = s.ep_degree.unwrap_or(1);
    let profiles = profile::load_selection(&home.profiles_dir(), &a.device)?;
    let profiles = nconf::hold(profiles, &mut s, req.dp, req.instance.as_deref())?;
    let rows = proj::project::project_profiles(&card, &profiles, &req)
        .map_err(|e| Names::with_file(s.report.as_ref()).error(e))?;
    let out = export::projections(
        format,
        &card.name,
        card.architecture.parameter_count(),
        &rows,
    );
    write_out(&nconf::attach(s.report.as_ref(), format, out))
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Model card; with --neuron-config, by default the compiled model's `config.json`.
    #[arg(long, required_unless_present = "neuron_config")]
    model: Option<String>,
    /// A Neuron-compiled model (see `project --neuron-config`): its TP degree, batch and
    /// dtype; only the instances that hold it are compared.
    #[arg(long)]
    neuron_config: Option<PathBuf>,
    #[arg(long, default_value = "all")]
    device: String,
    #[arg(long, default_value_t = 128)]
    input_len: u32,
    #[arg(long, default_value_t = 128)]
    output_len: u32,
    /// Batch when no SLO is given (default 1, or the compiled batch of --neuron-config).
    #[arg(long)]
    batch: Option<u32>,
    /// Time-to-first-token target, ms.
    #[arg(long)]
    slo_ttft_ms: Option<f64>,
    /// Time-per-output-token target, ms.
    #[arg(long)]
    slo_tpot_ms: Option<f64>,
    #[command(flatten)]
    compile: CompileArgs,
    #[command(flatten)]
    basis: Basis,
    /// Write an SVG chart of cost per 1M tokens against TPOT.
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub fn compare(a: CompareArgs) -> Result<()> {
    let home = Home::locate()?;
    let format = a.basis.format;
    let nc = nconf::read_opt(a.neuron_config.as_deref())?;
    let card = nconf::model_card(&home.models_dir(), a.model.as_deref(), nc.as_ref())?;
    let explicit = a.compile.explicit(None, a.batch, a.basis.weights_dtype);
    let mut s = nconf::settings(nc.as_ref(), &explicit, true);
    for (flag, v) in [
        ("--slo-ttft-ms", a.slo_ttft_ms),
        ("--slo-tpot-ms", a.slo_tpot_ms),
    ] {
        if v.is_some_and(|x| !(x > 0.0 && x.is_finite())) {
            bail!("{flag} must be a positive number of milliseconds");
        }
    }
    a.compile.check()?;
    let dtype = s.weights_dtype.unwrap_or(WeightsDtype::Bf16);
    let mut req = CompareRequest::new(a.input_len, a.output_len, dtype);
    req.batch = s.batch.unwrap_or(1);
    req.seq_len = s.seq_len;
    req.max_num_seqs = s.max_num_seqs;
    req.ctx_batch_size = s.ctx_batch_size;
    req.buckets = s.buckets.clone();
    req.dp = a.compile.dp;
    req.ep = s.ep_degree.unwrap_or(1);
    req.slo.ttft_ms = a.slo_ttft_ms;
    req.slo.tpot_ms = a.slo_tpot_ms;
    req.price = a.basis.price;
    let profiles = profile::load_selection(&home.profiles_dir(), &a.device)?;
    let profiles = nconf::hold(profiles, &mut s, req.dp, None)?;
    if s.report.is_some() {
        // The compiled TP degree, and no batch beyond the compiled one.
        req.tp = s.tp;
        req.max_batch = req.batch;
    }
    let names = Names::with_file(s.report.as_ref());
    let mut r =
        proj::compare::compare_profiles(&card, &profiles, &req).map_err(|e| names.error(e))?;
    r.name_settings(&|why| names.reason(why));
    if let Some(path) = &a.plot {
        crate::paths::check_output_file("--plot", path)?;
    }
    write_out(&nconf::attach(
        s.report.as_ref(),
        format,
        export::comparison(format, &r),
    ))?;
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
pub struct DevicesArgs {
    /// Instead of the list, show every figure (price, spec, fitted parameter) whose date is
    /// more than DAYS days before today: prices by their own date, other numbers by the
    /// newest date their source mentions.
    #[arg(long, value_name = "DAYS")]
    stale: Option<u32>,
}

pub fn devices(a: DevicesArgs) -> Result<()> {
    let home = Home::locate()?;
    if let Some(days) = a.stale {
        let today = proj::dates::today();
        let list = proj::catalog::stale(&home.profiles_dir(), i64::from(days), today)?;
        return write_out(proj::catalog::stale_text(&list, i64::from(days), today).as_bytes());
    }
    let list = proj::catalog::devices(&home.profiles_dir())?;
    write_out(proj::catalog::devices_text(&list).as_bytes())
}

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Show one model: a card name or alias, a Hugging Face config.json or a directory
    /// holding one. Prints what was read and the derived parameter counts.
    #[arg(long)]
    show: Option<String>,
}

pub fn models(a: ModelsArgs) -> Result<()> {
    let home = Home::locate()?;
    if let Some(spec) = &a.show {
        let notes = match crate::model::hf_config::config_path(spec) {
            Some(p) => crate::model::hf_config::read(&p)?.notes,
            None => Vec::new(),
        };
        let card = card::find(&home.models_dir(), spec)?;
        return write_out(proj::catalog::show_text(&card, &notes).as_bytes());
    }
    let list = proj::catalog::models(&home.models_dir())?;
    write_out(proj::catalog::models_text(&list).as_bytes())
}
