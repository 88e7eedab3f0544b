//! `profiler simulate` and `profiler plan`: the serving simulator and capacity planning.

use super::names::Names;
use super::project::{price_kind, CompileArgs};
use super::write_out;
use crate::model::card;
use crate::model::tokenizer::{locate_for_card, Tokenizer, TokenizerSource};
use crate::output::Format;
use crate::paths::Home;
use crate::projection::bucket::compiled_seq_len;
use crate::projection::neuron_config::{self as nconf, Explicit};
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
    /// Model card (`profiler models`); with --neuron-config, by default the compiled
    /// model's `config.json`.
    #[arg(long, required_unless_present = "neuron_config")]
    model: Option<String>,
    /// A Neuron-compiled model (see `project --neuron-config`): sets --tp, --max-num-seqs,
    /// --ctx-batch-size, --seq-len, --buckets and --weights-dtype (flags given win).
    #[arg(long)]
    neuron_config: Option<PathBuf>,
    /// The profile (one name), or `host` with `--host-check`.
    #[arg(long)]
    device: String,
    /// With `--device host`: a `profiler run --format json` report whose host self-check
    /// (matmul rate and memory bandwidth measured at its start) makes this machine's profile.
    #[arg(long)]
    host_check: Option<PathBuf>,
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
    /// GPU: token budget of one step (default: vLLM's for the chip); without chunked
    /// prefill a prompt above it runs alone in its step.
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
    /// Lengths (and arrival times) from a JSONL file: `prompt_tokens` (or `prompt` text),
    /// `output_tokens`, optional `arrival_s` per line.
    #[arg(long, conflicts_with = "samples")]
    workload: Option<PathBuf>,
    /// Tokenizer that counts `prompt` texts of --workload: a Hugging Face directory with
    /// tokenizer.json, or a GGUF file (default: the model's own, where it has one here).
    #[arg(long, requires = "workload")]
    tokenizer: Option<PathBuf>,
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
    /// Weights dtype: bf16 (default), fp16, fp8, int8, int4 or fp32.
    #[arg(long, value_parser = WeightsDtype::parse_flag)]
    weights_dtype: Option<WeightsDtype>,
    /// on-demand, reserved or capacity-block.
    #[arg(long, default_value = "on-demand", value_parser = price_kind)]
    price: PriceKind,
    /// table, json, csv or markdown.
    #[arg(long, default_value = "table", value_parser = format)]
    format: Format,
}

pub fn simulate(a: SimulateArgs) -> Result<()> {
    let home = Home::locate()?;
    let nc = nconf::read_opt(a.neuron_config.as_deref())?;
    let card = nconf::model_card(&home.models_dir(), a.model.as_deref(), nc.as_ref())?;
    let profiles = match (a.device.as_str(), &a.host_check) {
        ("host", Some(report)) => vec![host_from_report(report)?],
        ("host", None) => bail!(
            "--device host needs --host-check REPORT.json (a `profiler run --format json` report with its host self-check)"
        ),
        (d, Some(_)) => bail!("--host-check goes with --device host, not --device {d}"),
        (d, None) => profile::load_selection(&home.profiles_dir(), d)?,
    };
    let [p] = profiles.as_slice() else {
        bail!(
            "--device names one profile for simulate (got {})",
            profiles.len()
        );
    };
    let inst = p.instance(&a.instance)?;
    let explicit = a.compile.explicit(a.tp, None, a.weights_dtype);
    let mut s = nconf::settings(nc.as_ref(), &explicit, false);
    let mut compile = a.compile.clone();
    compile.max_num_seqs = s.max_num_seqs;
    compile.ctx_batch_size = s.ctx_batch_size;
    compile.seq_len = s.seq_len;
    compile.buckets = s.buckets.clone();
    compile.ep_degree = s.ep_degree;
    let c = &compile;
    c.check()?;
    nconf::hold(profiles.clone(), &mut s, c.dp, Some(&a.instance))?;
    let weights_dtype = s.weights_dtype.unwrap_or(WeightsDtype::Bf16);
    let tp = match s.tp {
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
        (Some(w), _) => {
            let mut count = prompt_counter(a.tokenizer.as_deref(), &card, &home);
            Lengths::List(load::read_workload(w, &mut count)?)
        }
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
        ep: c.ep_degree.unwrap_or(1),
        max_num_seqs: slots,
        seq_len,
        ctx_batch_size: c.ctx_batch_size.unwrap_or(1),
        buckets: c.buckets.clone(),
        chunked_prefill: !a.no_chunked_prefill,
        max_num_batched_tokens: a
            .max_num_batched_tokens
            .unwrap_or_else(|| plan::default_batched_tokens(p)),
        dtype: weights_dtype,
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
    let (report, outcome) =
        sim::run(&card, p, inst, &req).map_err(|e| Names::with_file(s.report.as_ref()).error(e))?;
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
    write_out(&nconf::attach(
        s.report.as_ref(),
        a.format,
        export::simulation(a.format, &report),
    ))
}

/// Counts the tokens of a workload's `prompt` text with `explicit` or the card's own
/// tokenizer, loaded at the first text (a workload of counts needs none), as the served
/// model would: `tokenizer(prompt)` with its special tokens.
fn prompt_counter<'a>(
    explicit: Option<&'a std::path::Path>,
    card: &'a card::ModelCard,
    home: &'a Home,
) -> impl FnMut(&str) -> Result<u32> + 'a {
    let mut loaded: Option<Tokenizer> = None;
    move |text: &str| {
        let tok = match &mut loaded {
            Some(t) => t,
            slot @ None => {
                let source = match explicit {
                    Some(p) => TokenizerSource::from_path(p),
                    None => locate_for_card(card, &home.weights_cache()).map_err(|why| {
                        anyhow::anyhow!(
                            "`prompt` text needs a tokenizer: {why}; give `prompt_tokens` or --tokenizer PATH"
                        )
                    })?,
                };
                slot.insert(source.load()?)
            }
        };
        Ok(u32::try_from(tok.encode(text)?.len()).unwrap_or(u32::MAX))
    }
}

/// The `host` profile of the machine a run report was made on, from its host self-check
/// (`host_check.matmul_gflops`, `host_check.memory_gb_per_s`), as `run` makes it, with the
/// prompt matmul efficiency, decode bandwidth efficiency and per-row decode cost measured on
/// the model (`host_check.prefill_compute_efficiency`, `host_check.bandwidth_efficiency`,
/// `host_check.decode_seq_ms`) where the report has them (reports from before they were
/// measured, or with them null, keep 1, 1 and 0), and the decode steps timed at each row
/// count (`host_check.decode_steps`), which then price the decode steps.
pub(super) fn host_from_report(path: &std::path::Path) -> Result<profile::Profile> {
    let what = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--host-check {what}: cannot read"))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!("--host-check {what}: not a JSON report (`profiler run --format json`)")
    })?;
    let check = &v["host_check"];
    if check.is_null() {
        bail!("--host-check {what}: no `host_check` (the run had --no-host-check, or it is not a run report)");
    }
    let rate = |k: &str| -> Result<f64> {
        match check[k].as_f64() {
            Some(x) if x > 0.0 && x.is_finite() => Ok(x * 1e9),
            _ => bail!(
                "--host-check {what}: `host_check.{k}` is {}, expected a positive number",
                check[k]
            ),
        }
    };
    // An optional measured parameter: absent or null is `None`; otherwise within `ok`.
    let param = |k: &str, ok: fn(f64) -> bool, expected: &str| -> Result<Option<f64>> {
        match &check[k] {
            serde_json::Value::Null => Ok(None),
            x => match x.as_f64() {
                Some(y) if y.is_finite() && ok(y) => Ok(Some(y)),
                _ => bail!(
                    "--host-check {what}: `host_check.{k}` is {x}, expected {expected} or null"
                ),
            },
        }
    };
    let efficiency = param(
        "prefill_compute_efficiency",
        |x| x > 0.0 && x <= 1.0,
        "a number in (0, 1]",
    )?;
    let bandwidth = param(
        "bandwidth_efficiency",
        |x| x > 0.0 && x <= 1.0,
        "a number in (0, 1]",
    )?;
    let seq_ms = param("decode_seq_ms", |x| x >= 0.0, "a number of ms, at least 0")?;
    let name = v["environment"]["cpu_model"].as_str().unwrap_or("host");
    let memory = crate::sysinfo::available_memory_bytes().unwrap_or(16 << 30);
    let host = crate::projection::host_profile(
        rate("matmul_gflops")?,
        rate("memory_gb_per_s")?,
        memory,
        name,
    );
    let host = match (efficiency, bandwidth, seq_ms) {
        (None, None, None) => host,
        (e, b, t) => crate::projection::host_steps::apply(
            host,
            &crate::projection::host_steps::StepParams {
                compute_efficiency: e.unwrap_or(1.0),
                bandwidth_efficiency: b.unwrap_or(1.0),
                decode_seq_ms: t.unwrap_or(0.0),
            },
        ),
    };
    Ok(match decode_table(check, &what.to_string())? {
        Some(t) => crate::projection::host_steps::with_decode_table(host, t),
        None => host,
    })
}

/// `host_check.decode_steps` (decode steps timed at each row count) with its context, when
/// the report has them: `[{"rows": 1, "ms": 37.5}, …]`, rows from 1 increasing, times
/// positive.
fn decode_table(
    check: &serde_json::Value,
    what: &str,
) -> Result<Option<crate::projection::host_steps::MeasuredDecode>> {
    let steps = &check["decode_steps"];
    if steps.is_null() {
        return Ok(None);
    }
    let expected = "expected [{\"rows\": 1, \"ms\": T}, …] with rows from 1 increasing and positive times, or null";
    let parsed: Option<Vec<(u32, f64)>> = steps.as_array().and_then(|a| {
        a.iter()
            .map(|s| {
                let rows = u32::try_from(s["rows"].as_u64()?).ok()?;
                Some((rows, s["ms"].as_f64()?))
            })
            .collect()
    });
    let context = check["decode_context_tokens"].as_u64();
    match (parsed, context) {
        (Some(p), Some(c)) => match crate::projection::host_steps::MeasuredDecode::new(
            u32::try_from(c).unwrap_or(u32::MAX),
            &p,
        ) {
            Some(t) => Ok(Some(t)),
            None => bail!("--host-check {what}: `host_check.decode_steps` is {steps}: {expected}"),
        },
        (None, _) => bail!("--host-check {what}: `host_check.decode_steps` is {steps}: {expected}"),
        (Some(_), None) => bail!(
            "--host-check {what}: `host_check.decode_steps` needs `host_check.decode_context_tokens` (the context they were timed at), which is {}",
            check["decode_context_tokens"]
        ),
    }
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Model card; with --neuron-config, by default the compiled model's `config.json`.
    #[arg(long, required_unless_present = "neuron_config")]
    model: Option<String>,
    /// A Neuron-compiled model (see `project --neuron-config`): the search keeps its TP
    /// degree, slots, sequence length, context batch and buckets, and varies the replicas
    /// and instances only.
    #[arg(long)]
    neuron_config: Option<PathBuf>,
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
    /// bf16 (default), fp16, fp8, int8, int4 or fp32.
    #[arg(long, value_parser = WeightsDtype::parse_flag)]
    weights_dtype: Option<WeightsDtype>,
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
    let nc = nconf::read_opt(a.neuron_config.as_deref())?;
    let card = nconf::model_card(&home.models_dir(), a.model.as_deref(), nc.as_ref())?;
    let mut s = nconf::settings(
        nc.as_ref(),
        &Explicit {
            weights_dtype: a.weights_dtype,
            ..Explicit::default()
        },
        false,
    );
    let profiles = profile::load_selection(&home.profiles_dir(), &a.device)?;
    // The instances that cannot hold it stay in the plan as rows saying why.
    nconf::hold(profiles.clone(), &mut s, 1, None)?;
    let compiled = s.report.as_ref().map(|_| plan::Compiled {
        tp: s.tp.unwrap_or(1),
        ep: s.ep_degree.unwrap_or(1),
        lnc: s.lnc,
        max_num_seqs: s.max_num_seqs.unwrap_or(1),
        seq_len: s.seq_len,
        ctx_batch_size: s.ctx_batch_size,
        buckets: s.buckets.clone(),
    });
    let profiles: Vec<_> = profiles
        .into_iter()
        .filter(|p| compiled.is_none() || p.kind == profile::DeviceKind::Neuron)
        .collect();
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
        dtype: s.weights_dtype.unwrap_or(WeightsDtype::Bf16),
        price: a.price,
        trial_requests: a.trial_requests,
        seed: a.seed,
        chunked_prefill: !a.no_chunked_prefill,
        compiled,
    };
    let started = std::time::Instant::now();
    let names = Names::with_file(s.report.as_ref());
    let mut r = plan::plan(&card, &profiles, &req).map_err(|e| names.error(e))?;
    r.name_settings(&|why| names.reason(why));
    if a.timing {
        eprintln!(
            "timing: planned {} instance types in {:.1} ms",
            r.rows.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    write_out(&nconf::attach(
        s.report.as_ref(),
        a.format,
        export::plan(a.format, &r),
    ))?;
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
