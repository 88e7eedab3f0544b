//! `profiler simulate` and `profiler plan`: the serving simulator and capacity planning.

use super::project::CompileArgs;
use super::write_out;
use crate::model::card;
use crate::output::Format;
use crate::paths::Home;
use crate::projection::bucket::compiled_seq_len;
use crate::projection::profile::{self, PriceKind};
use crate::projection::step::Deployment;
use crate::projection::WeightsDtype;
use crate::simulation::load::{self, Arrivals, Lengths, Load};
use crate::simulation::plan::{self, PlanRequest};
use crate::simulation::report::SloSpec;
use crate::simulation::{self as sim, export, SimRequest};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

fn weights_dtype(s: &str) -> std::result::Result<WeightsDtype, String> {
    WeightsDtype::parse(s).map_err(|e| format!("{e:#}"))
}

fn price_kind(s: &str) -> std::result::Result<PriceKind, String> {
    PriceKind::parse(s).map_err(|e| format!("{e:#}"))
}

fn format(s: &str) -> std::result::Result<Format, String> {
    Format::parse(s).map_err(|e| format!("{e:#}"))
}

/// Latency objectives.
#[derive(Args, Debug, Clone)]
pub struct SloArgs {
    /// Time-to-first-token objective, ms.
    #[arg(long)]
    slo_ttft_ms: Option<f64>,
    /// Time-per-output-token objective, ms.
    #[arg(long)]
    slo_tpot_ms: Option<f64>,
    /// Percentile at which the objectives are judged.
    #[arg(long, default_value_t = 99.0)]
    slo_percentile: f64,
}

impl SloArgs {
    fn spec(&self) -> Result<SloSpec> {
        for (flag, v) in [
            ("--slo-ttft-ms", self.slo_ttft_ms),
            ("--slo-tpot-ms", self.slo_tpot_ms),
        ] {
            if v.is_some_and(|x| !(x > 0.0 && x.is_finite())) {
                bail!("{flag} must be a positive number of milliseconds");
            }
        }
        let p = self.slo_percentile;
        if !(p > 0.0 && p <= 100.0) {
            bail!("--slo-percentile must be in (0, 100] (got {p})");
        }
        Ok(SloSpec {
            ttft_ms: self.slo_ttft_ms,
            tpot_ms: self.slo_tpot_ms,
            percentile: p,
        })
    }
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Model card (`profiler models`).
    #[arg(long)]
    model: String,
    /// The profile (one name).
    #[arg(long)]
    device: String,
    /// Instance type of that profile.
    #[arg(long)]
    instance: String,
    /// Tensor-parallel degree of one replica (default: the instance's natural degree
    /// for the replicas).
    #[arg(long)]
    tp: Option<u32>,
    #[command(flatten)]
    compile: CompileArgs,
    /// GPU: run whole prompts in their own steps instead of chunks mixed into decode steps.
    #[arg(long)]
    no_chunked_prefill: bool,
    /// GPU: token budget of one step (default: vLLM's for the chip).
    #[arg(long)]
    max_num_batched_tokens: Option<u32>,
    /// Prompt tokens.
    #[arg(long, default_value_t = 128)]
    input_len: u32,
    /// Output tokens.
    #[arg(long, default_value_t = 128)]
    output_len: u32,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    input_len_stddev: f64,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    output_len_stddev: f64,
    /// Lengths (and arrival times) from a JSONL file: `prompt_tokens`, `output_tokens`,
    /// optional `arrival_s` per line.
    #[arg(long, conflicts_with = "samples")]
    workload: Option<PathBuf>,
    /// Lengths and start times of the requests of a `profiler run` samples file.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Closed loop: requests in flight.
    #[arg(long, conflicts_with = "rate", allow_negative_numbers = true)]
    concurrency: Option<i64>,
    /// Open loop: requests per second.
    #[arg(long, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// Gamma shape of the inter-arrival gaps (1: Poisson; below 1 burstier).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    burstiness: f64,
    /// Requests to simulate (default 1000 unless --duration is given).
    #[arg(long)]
    requests: Option<u64>,
    /// Simulated time during which requests arrive, e.g. 10m.
    #[arg(long)]
    duration: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    slo: SloArgs,
    /// Write one JSON line per simulated request.
    #[arg(long)]
    per_request: Option<PathBuf>,
    /// Print the wall-clock time of the simulation itself on stderr (for scripts/bench).
    #[arg(long)]
    timing: bool,
    /// Weights dtype: bf16, fp16, fp8, int8, int4 or fp32.
    #[arg(long, default_value = "bf16", value_parser = weights_dtype)]
    weights_dtype: WeightsDtype,
    /// on-demand, reserved or capacity-block.
    #[arg(long, default_value = "on-demand", value_parser = price_kind)]
    price: PriceKind,
    /// table, json, csv or markdown.
    #[arg(long, default_value = "table", value_parser = format)]
    format: Format,
}

pub fn simulate(a: SimulateArgs) -> Result<()> {
    let home = Home::locate()?;
    let card = card::find(&home.models_dir(), &a.model)?;
    let profiles = profile::load_selection(&home.profiles_dir(), &a.device)?;
    let [p] = profiles.as_slice() else {
        bail!(
            "--device names one profile for simulate (got {})",
            profiles.len()
        );
    };
    let inst = p.instance(&a.instance)?;
    let c = &a.compile;
    if c.dp == 0 {
        bail!("--dp must be at least 1");
    }
    let tp = match a.tp {
        Some(tp) => tp,
        None => crate::projection::project::natural_tp_for(p, inst, c.dp),
    };
    let slo = a.slo.spec()?;
    let arrivals = match (a.concurrency, a.rate) {
        (Some(n), _) if n <= 0 => bail!("--concurrency must be at least 1 (got {n})"),
        (Some(n), _) => Arrivals::Closed {
            concurrency: u32::try_from(n).context("--concurrency is too large")?,
        },
        (None, Some(r)) => Arrivals::Rate {
            rate: r,
            burstiness: a.burstiness,
        },
        (None, None) if a.workload.is_some() || a.samples.is_some() => Arrivals::Trace,
        (None, None) => bail!("give --concurrency N (closed loop) or --rate R (requests/s)"),
    };
    let lengths = match (&a.workload, &a.samples) {
        (Some(w), _) => Lengths::List(load::read_workload(w)?),
        (_, Some(s)) => Lengths::List(load::read_samples(s)?),
        _ => Lengths::Spread {
            input: a.input_len,
            output: a.output_len,
            input_stddev: a.input_len_stddev,
            output_stddev: a.output_len_stddev,
        },
    };
    let duration_s = match &a.duration {
        Some(d) => Some(crate::workload::parse_duration(d)?.as_secs_f64()),
        None => None,
    };
    let requests = match (a.requests, duration_s, &lengths) {
        (Some(n), _, _) => Some(n),
        (None, Some(_), _) => None,
        (None, None, Lengths::List(v)) => Some(v.len() as u64),
        (None, None, _) => Some(1000),
    };
    // Default compiled length: the longest request, rounded as the profile does.
    let longest = match &lengths {
        Lengths::Spread {
            input,
            output,
            input_stddev,
            output_stddev,
        } => (*input as f64
            + *output as f64
            + 3.0 * (input_stddev.max(0.0) + output_stddev.max(0.0)))
        .ceil() as u32,
        Lengths::List(v) => v.iter().map(|e| e.prompt + e.output).max().unwrap_or(1),
    };
    let seq_len = c.seq_len.unwrap_or(match p.runtime.static_shapes {
        Some(s) => compiled_seq_len(longest, 0, s.seq_len_multiple),
        None => longest,
    });
    let slots = c.max_num_seqs.unwrap_or(match arrivals {
        Arrivals::Closed { concurrency } => concurrency.min(256),
        _ => 32,
    });
    let dep = Deployment {
        tp,
        dp: c.dp,
        max_num_seqs: slots,
        seq_len,
        ctx_batch_size: c.ctx_batch_size.unwrap_or(1),
        buckets: c.buckets.clone(),
        chunked_prefill: !a.no_chunked_prefill,
        max_num_batched_tokens: a
            .max_num_batched_tokens
            .unwrap_or_else(|| plan::default_batched_tokens(p)),
        dtype: a.weights_dtype,
    };
    let req = SimRequest {
        dep,
        load: Load {
            arrivals,
            lengths,
            requests,
            duration_s,
            seed: a.seed,
        },
        slo,
        price: a.price,
    };
    if let Some(path) = &a.per_request {
        crate::paths::check_output_file("--per-request", path)?;
    }
    let started = std::time::Instant::now();
    let (report, outcome) = sim::run(&card, p, inst, &req)?;
    if a.timing {
        eprintln!(
            "timing: simulated {} requests in {:.1} ms",
            report.requests,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    if let Some(path) = &a.per_request {
        std::fs::write(path, sim::per_request_jsonl(&outcome))
            .with_context(|| format!("cannot write --per-request {}", path.display()))?;
    }
    write_out(&export::simulation(a.format, &report))
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[arg(long)]
    model: String,
    /// Profiles: names, comma-separated, or `all`.
    #[arg(long, default_value = "all")]
    device: String,
    /// Target requests per second over the fleet.
    #[arg(long, allow_negative_numbers = true)]
    rate: f64,
    #[arg(long, default_value_t = 128)]
    input_len: u32,
    #[arg(long, default_value_t = 128)]
    output_len: u32,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    input_len_stddev: f64,
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    output_len_stddev: f64,
    #[command(flatten)]
    slo: SloArgs,
    /// Requests simulated per trial of the rate search.
    #[arg(long, default_value_t = 200)]
    trial_requests: u64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// GPU: whole prompts in their own steps.
    #[arg(long)]
    no_chunked_prefill: bool,
    #[arg(long, default_value = "bf16", value_parser = weights_dtype)]
    weights_dtype: WeightsDtype,
    #[arg(long, default_value = "on-demand", value_parser = price_kind)]
    price: PriceKind,
    #[arg(long, default_value = "table", value_parser = format)]
    format: Format,
    /// Write an SVG chart of cost per 1M tokens against p-th percentile TTFT.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print the wall-clock time of the search itself on stderr (for scripts/bench).
    #[arg(long)]
    timing: bool,
}

pub fn plan(a: PlanArgs) -> Result<()> {
    let home = Home::locate()?;
    let card = card::find(&home.models_dir(), &a.model)?;
    let profiles = profile::load_selection(&home.profiles_dir(), &a.device)?;
    for (flag, v) in [
        ("--input-len-stddev", a.input_len_stddev),
        ("--output-len-stddev", a.output_len_stddev),
    ] {
        if !(v >= 0.0 && v.is_finite()) {
            bail!("{flag} must be zero or positive (got {v})");
        }
    }
    if a.trial_requests == 0 {
        bail!("--trial-requests must be at least 1");
    }
    if let Some(path) = &a.plot {
        crate::paths::check_output_file("--plot", path)?;
    }
    let req = PlanRequest {
        rate: a.rate,
        input_len: a.input_len,
        output_len: a.output_len,
        input_stddev: a.input_len_stddev,
        output_stddev: a.output_len_stddev,
        slo: a.slo.spec()?,
        dtype: a.weights_dtype,
        price: a.price,
        trial_requests: a.trial_requests,
        seed: a.seed,
        chunked_prefill: !a.no_chunked_prefill,
    };
    let started = std::time::Instant::now();
    let r = plan::plan(&card, &profiles, &req)?;
    if a.timing {
        eprintln!(
            "timing: planned {} instance types in {:.1} ms",
            r.rows.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    write_out(&export::plan(a.format, &r))?;
    if let Some(path) = &a.plot {
        match plan::plot_svg(&r) {
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
