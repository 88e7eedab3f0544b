//! Measurements resolved against a deployment, projected with a parameter set, and a fit
//! of the profile's latency parameters on them.
//!
//! A static batch (NxD Inference's benchmark, this tool's `run`) is projected with the
//! latency model ([`estimate`]), as the published points are; a serving run (a
//! concurrency, a rate, a replayed trace) is replayed through the serving simulator with
//! the same slots, lengths and arrivals, and its median (or mean, as the file reports)
//! TTFT and TPOT are compared with the file's. The fit is least squares on the log error
//! of TTFT and TPOT of every measurement, as `profiler calibrate --points` does
//! ([`crate::projection::calibrate`]).

use super::import::{FileDtype, MeasuredLoad, Measurement, Stat};
use crate::model::card::ModelCard;
use crate::projection::calibrate::{fit_free, leave_one_group_out_by, FittedParam, START};
use crate::projection::latency::{estimate, Target};
use crate::projection::params::{LatencyParams, PARAM_NAMES};
use crate::projection::profile::{DeviceKind, PriceKind, Profile};
use crate::projection::setting::{Setting, SettingError};
use crate::projection::step::{Deployment, StepModel};
use crate::projection::types::{CalibrationError, HeldOut};
use crate::projection::WeightsDtype;
use crate::simulation::load::{Arrivals, LengthEntry, Lengths, Load};
use crate::simulation::report::SloSpec;
use crate::simulation::{self as sim, SimRequest};
use anyhow::{bail, Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// vLLM's default `max_num_seqs` (vllm/config: `SchedulerConfig`, 256 in the V1 engine
/// for most GPUs), assumed for a GPU serving run that does not state its own.
pub const VLLM_DEFAULT_MAX_NUM_SEQS: u32 = 256;

/// Requests simulated for a serving run whose file does not say how many it measured.
const DEFAULT_REQUESTS: u64 = 200;

/// Order in which parameters are fitted when the command does not name them: the two
/// that set decode and prefill times first, then the fixed costs, then the terms only
/// varied shapes can tell apart.
const PRIORITY: [&str; 7] = [
    "bandwidth_efficiency",
    "compute_efficiency",
    "step_overhead_ms",
    "prefill_overhead_ms",
    "decode_seq_ms",
    "attention_efficiency",
    "collective_latency_us",
];

/// What the command line says about the runs; a flag wins over what a file says.
#[derive(Debug, Clone, PartialEq)]
pub struct Flags {
    /// The model card (`--model`, or the architecture saved with a compiled model); `None`:
    /// the model each file names.
    pub card: Option<ModelCard>,
    pub instance: Option<String>,
    pub tp: Option<u32>,
    pub dp: u32,
    pub max_num_seqs: Option<u32>,
    pub seq_len: Option<u32>,
    pub ctx_batch_size: Option<u32>,
    pub buckets: Option<Vec<u32>>,
    pub weights_dtype: Option<WeightsDtype>,
    /// GPU and host: whole prompts in steps of their own (a server without chunked
    /// prefill, such as `profiler serve`).
    pub no_chunked_prefill: bool,
    pub max_num_batched_tokens: Option<u32>,
    /// Prompt and output tokens of a file that does not state them (NxD Inference's
    /// benchmark report).
    pub input_len: Option<u32>,
    pub output_len: Option<u32>,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            card: None,
            instance: None,
            tp: None,
            dp: 1,
            max_num_seqs: None,
            seq_len: None,
            ctx_batch_size: None,
            buckets: None,
            weights_dtype: None,
            no_chunked_prefill: false,
            max_num_batched_tokens: None,
            input_len: None,
            output_len: None,
        }
    }
}

/// How a measurement is projected.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A static batch, through the latency model.
    Static(Target),
    /// A serving run, through the simulator.
    Serving { dep: Deployment, load: Load },
}

/// A measurement with everything needed to project it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub m: Measurement,
    pub card: ModelCard,
    pub instance: String,
    pub tp: u32,
    pub dtype: WeightsDtype,
    pub shape: Shape,
    /// Settings taken from defaults rather than the file or a flag, in words.
    pub assumed: Vec<String>,
}

impl Resolved {
    /// `file (label)`, how errors and the report name the measurement.
    pub fn name(&self) -> String {
        format!("{} ({})", self.m.file, self.m.label)
    }

    /// Sequences in flight: the static batch or the closed loop's concurrency; `None` for
    /// an open loop.
    pub fn in_flight(&self) -> Option<u32> {
        match self.m.load {
            MeasuredLoad::StaticBatch { batch } => Some(batch),
            MeasuredLoad::Concurrency { concurrency } => Some(concurrency),
            MeasuredLoad::Rate { .. } | MeasuredLoad::Trace => None,
        }
    }

    /// The load in words.
    pub fn load_text(&self) -> String {
        load_text(&self.m.load)
    }
}

/// A load in a few words.
pub fn load_text(l: &MeasuredLoad) -> String {
    match l {
        MeasuredLoad::StaticBatch { batch } => format!("static batch {batch}"),
        MeasuredLoad::Concurrency { concurrency } => format!("concurrency {concurrency}"),
        MeasuredLoad::Rate {
            rate,
            burstiness: Some(b),
        } if *b == 1.0 => format!("Poisson {rate} req/s"),
        MeasuredLoad::Rate {
            rate,
            burstiness: Some(b),
        } => format!("{rate} req/s, burstiness {b}"),
        MeasuredLoad::Rate {
            rate,
            burstiness: None,
        } => format!("{rate} req/s, evenly spaced"),
        MeasuredLoad::Trace => "recorded arrivals".to_string(),
    }
}

/// Resolves one measurement: the model card (the flag, else the file's model name), the
/// instance, TP, dtype and serving settings (flags first, then the file, then the
/// documented defaults of the profile's software; a setting with none is an error naming
/// it), and the load to replay.
pub fn resolve(
    mut m: Measurement,
    flags: &Flags,
    profile: &Profile,
    find_card: &dyn Fn(&str) -> Result<ModelCard>,
) -> Result<Resolved> {
    let what = format!("{} ({})", m.file, m.label);
    // "FILE (LABEL): the file does not state X: give --flag VALUE…".
    let give = |missing: &str, setting: Setting, rest: String| {
        SettingError::text(format!("{what}: {missing}: give ")).then(setting, rest)
    };
    let card = match (&flags.card, &m.model) {
        (Some(c), _) => c.clone(),
        (None, Some(n)) => find_card(n).map_err(|e| {
            SettingError::text(format!("{what}: its model {n:?} (give "))
                .then(Setting::Model, format!(" CARD): {e:#}"))
        })?,
        (None, None) => bail!(give(
            "the file does not name its model",
            Setting::Model,
            " CARD".into()
        )),
    };
    let instance = match (&flags.instance, &m.settings.instance) {
        (Some(i), _) | (None, Some(i)) => i.clone(),
        (None, None) => bail!(give(
            "the file does not say which instance it ran on",
            Setting::Instance,
            format!(" NAME (one of {})", instance_names(profile))
        )),
    };
    let inst = profile.instance(&instance)?;
    let only_tp = (profile.runtime.tp_degrees == [1]).then_some(1);
    let tp = match flags.tp.or(m.settings.tp).or(only_tp) {
        Some(t) => t,
        None => bail!(give(
            "the file does not state its tensor-parallel degree",
            Setting::Tp,
            format!(" N (one of {:?})", profile.runtime.tp_degrees)
        )),
    };
    profile.check_tp(inst, tp)?;
    let dtype = match (flags.weights_dtype, &m.settings.dtype) {
        (Some(d), _) => d,
        (None, Some(FileDtype::Known(d))) => *d,
        (None, Some(FileDtype::Other(s))) => bail!(give(
            &format!("the file's dtype {s:?} is not one this tool models"),
            Setting::WeightsDtype,
            " D".into(),
        )),
        (None, None) => bail!(give(
            "the file does not state the weights dtype",
            Setting::WeightsDtype,
            " D (bf16, fp16, fp8, int8, int4 or fp32)".into()
        )),
    };
    for missing in m.missing() {
        match missing {
            "batch" => {
                let b = flags
                    .max_num_seqs
                    .or(m.settings.max_num_seqs)
                    .ok_or_else(|| {
                        give(
                            "the file does not state its batch",
                            Setting::MaxNumSeqs,
                            " B (the compiled batch it ran)".into(),
                        )
                    })?;
                m.load = MeasuredLoad::StaticBatch { batch: b };
            }
            "input_tokens" => {
                m.input_tokens = f64::from(flags.input_len.ok_or_else(|| {
                    give(
                        "the file does not state its prompt length",
                        Setting::InputLen,
                        " N".into(),
                    )
                })?)
            }
            "output_tokens" => {
                m.output_tokens = f64::from(flags.output_len.ok_or_else(|| {
                    give(
                        "the file does not state its output length",
                        Setting::OutputLen,
                        " N".into(),
                    )
                })?)
            }
            other => bail!("{what}: the file does not state {other}"),
        }
    }
    let mut assumed = Vec::new();
    let input = m.input_tokens.round().max(1.0) as u32;
    let output = m.output_tokens.round().max(1.0) as u32;
    let seq_len = flags.seq_len.or(m.settings.seq_len);
    let max_num_seqs = flags.max_num_seqs.or(m.settings.max_num_seqs);
    let shape = match &m.load {
        MeasuredLoad::StaticBatch { batch } => {
            let mut t = Target::new(tp, *batch, input, output, dtype);
            t.compiled_seq_len = seq_len;
            t.max_num_seqs = max_num_seqs;
            t.ctx_batch_size = flags.ctx_batch_size;
            t.buckets = flags.buckets.clone();
            Shape::Static(t)
        }
        load => {
            let static_slots =
                profile.runtime.static_shapes.is_some() || profile.kind == DeviceKind::Host;
            let slots = match max_num_seqs {
                Some(b) => b,
                None if static_slots => bail!(give(
                    &format!(
                        "a serving run on {} needs the slots it was served with",
                        profile.name
                    ),
                    Setting::MaxNumSeqs,
                    " B".into()
                )),
                None => {
                    assumed.push(format!(
                        "max_num_seqs {VLLM_DEFAULT_MAX_NUM_SEQS} (vLLM's default)"
                    ));
                    VLLM_DEFAULT_MAX_NUM_SEQS
                }
            };
            let longest = m
                .per_request
                .iter()
                .map(|r| r.prompt + r.output)
                .max()
                .unwrap_or(input + output);
            let seq_len = match (seq_len, profile.runtime.static_shapes) {
                (Some(s), _) => s,
                (None, Some(_)) => bail!(give(
                    &format!(
                        "a serving run on {} needs the compiled sequence length",
                        profile.name
                    ),
                    Setting::SeqLen,
                    " S".into()
                )),
                (None, None) => {
                    assumed.push(format!(
                        "maximum model length {longest} (the longest request)"
                    ));
                    longest
                }
            };
            let dep = Deployment {
                tp,
                dp: flags.dp,
                ep: 1,
                max_num_seqs: slots,
                seq_len,
                ctx_batch_size: flags.ctx_batch_size.unwrap_or(1),
                buckets: flags.buckets.clone(),
                chunked_prefill: !flags.no_chunked_prefill,
                max_num_batched_tokens: flags
                    .max_num_batched_tokens
                    .unwrap_or_else(|| sim::plan::default_batched_tokens(profile)),
                dtype,
            };
            let replay = serving_load(&m, load, input, output).with_context(|| what.clone())?;
            let req = SimRequest {
                dep: dep.clone(),
                load: replay.clone(),
                slo: SloSpec {
                    ttft_ms: None,
                    tpot_ms: None,
                    percentile: 50.0,
                },
                price: PriceKind::OnDemand,
            };
            sim::check(&card, profile, inst, &req).with_context(|| what.clone())?;
            Shape::Serving { dep, load: replay }
        }
    };
    Ok(Resolved {
        m,
        card,
        instance: inst.name.clone(),
        tp,
        dtype,
        shape,
        assumed,
    })
}

fn instance_names(profile: &Profile) -> String {
    profile
        .instances
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The simulated load of a serving run: the file's own requests (lengths, and send times
/// for a replayed trace) where it lists them, otherwise its mean lengths; the same number
/// of requests it measured.
fn serving_load(m: &Measurement, load: &MeasuredLoad, input: u32, output: u32) -> Result<Load> {
    let arrivals = match load {
        MeasuredLoad::Concurrency { concurrency } => Arrivals::Closed {
            concurrency: *concurrency,
        },
        MeasuredLoad::Rate { .. } | MeasuredLoad::Trace
            if m.per_request.iter().all(|r| r.start_s.is_some()) && !m.per_request.is_empty() =>
        {
            Arrivals::Trace
        }
        MeasuredLoad::Rate { rate, burstiness } => Arrivals::Rate {
            rate: *rate,
            // Evenly spaced arrivals: a gamma of very large shape has a gap of 1/rate
            // with a spread of 0.1% of it.
            burstiness: burstiness.unwrap_or(1e6),
        },
        MeasuredLoad::Trace => bail!("recorded arrivals need every request's send time"),
        MeasuredLoad::StaticBatch { .. } => unreachable!("static batches are not replayed"),
    };
    let lengths = if m.per_request.is_empty() {
        Lengths::Spread {
            input,
            output,
            input_stddev: 0.0,
            output_stddev: 0.0,
        }
    } else {
        let t0 = m
            .per_request
            .iter()
            .filter_map(|r| r.start_s)
            .fold(f64::INFINITY, f64::min);
        Lengths::List(
            m.per_request
                .iter()
                .map(|r| LengthEntry {
                    prompt: r.prompt.max(1),
                    output: r.output.max(1),
                    arrival_s: (arrivals == Arrivals::Trace)
                        .then(|| r.start_s.map(|s| s - t0))
                        .flatten(),
                })
                .collect(),
        )
    };
    let requests = if m.per_request.is_empty() {
        m.requests.filter(|&n| n > 0).unwrap_or(DEFAULT_REQUESTS)
    } else {
        m.per_request.len() as u64
    };
    Ok(Load {
        arrivals,
        lengths,
        requests: Some(requests),
        duration_s: None,
        seed: 0,
    })
}

/// Median (linear interpolation between ranks, as numpy's default) or mean of `v`.
fn statistic(v: &mut [f64], stat: Stat) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    match stat {
        Stat::Mean => v.iter().sum::<f64>() / v.len() as f64,
        Stat::Median => {
            v.sort_by(f64::total_cmp);
            let pos = 0.5 * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        }
    }
}

/// Projected TTFT and TPOT (ms) of a measurement with parameters `params`.
pub fn predict(r: &Resolved, profile: &Profile, params: &LatencyParams) -> (f64, f64) {
    match &r.shape {
        Shape::Static(t) => {
            let e = estimate(&r.card.architecture, profile, params, t);
            (e.ttft_ms, e.tpot_ms)
        }
        Shape::Serving { dep, load } => {
            let m = StepModel::new(&r.card.architecture, profile, params, dep);
            let o = sim::run_model(&m, load);
            let mut ttft: Vec<f64> = o.records.iter().map(|x| x.ttft() * 1e3).collect();
            let mut tpot: Vec<f64> = o
                .records
                .iter()
                .filter_map(|x| x.tpot())
                .map(|t| t * 1e3)
                .collect();
            (
                statistic(&mut ttft, r.m.ttft.stat),
                statistic(&mut tpot, r.m.tpot.stat),
            )
        }
    }
}

/// One measurement: measured, projected and the signed relative error
/// (projected/measured − 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MeasuredError {
    pub file: String,
    pub tool: String,
    pub label: String,
    pub model: String,
    pub instance: String,
    pub tp: u32,
    pub load: String,
    pub input_tokens: f64,
    pub output_tokens: f64,
    /// `median` or `mean`: the statistic the file reports and the projection matches.
    pub ttft_statistic: String,
    pub measured_ttft_ms: f64,
    pub projected_ttft_ms: f64,
    pub ttft_error: f64,
    pub tpot_statistic: String,
    pub measured_tpot_ms: f64,
    pub projected_tpot_ms: f64,
    pub tpot_error: f64,
}

fn stat_name(s: Stat) -> String {
    match s {
        Stat::Median => "median".into(),
        Stat::Mean => "mean".into(),
    }
}

/// Errors of `params` on every measurement.
pub fn errors(profile: &Profile, params: &LatencyParams, rs: &[Resolved]) -> Vec<MeasuredError> {
    rs.iter()
        .map(|r| {
            let (ttft, tpot) = predict(r, profile, params);
            MeasuredError {
                file: r.m.file.clone(),
                tool: serde_json::to_value(r.m.tool)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                label: r.m.label.clone(),
                model: r.card.name.clone(),
                instance: r.instance.clone(),
                tp: r.tp,
                load: r.load_text(),
                input_tokens: r.m.input_tokens,
                output_tokens: r.m.output_tokens,
                ttft_statistic: stat_name(r.m.ttft.stat),
                measured_ttft_ms: r.m.ttft.ms,
                projected_ttft_ms: ttft,
                ttft_error: ttft / r.m.ttft.ms - 1.0,
                tpot_statistic: stat_name(r.m.tpot.stat),
                measured_tpot_ms: r.m.tpot.ms,
                projected_tpot_ms: tpot,
                tpot_error: tpot / r.m.tpot.ms - 1.0,
            }
        })
        .collect()
}

/// Mean absolute relative errors of TTFT and TPOT.
pub fn mape(errors: &[MeasuredError]) -> CalibrationError {
    let n = errors.len().max(1) as f64;
    CalibrationError {
        ttft: errors.iter().map(|e| e.ttft_error.abs()).sum::<f64>() / n,
        tpot: errors.iter().map(|e| e.tpot_error.abs()).sum::<f64>() / n,
        points: errors.len() as u32,
    }
}

/// The parameters a fit adjusts: `explicit` when given (each checked), otherwise, in
/// [`PRIORITY`] order, those the profile fits (all where it names none) that the
/// measurements can tell apart: the per-sequence decode cost only with more than one
/// sequence in flight somewhere, the attention efficiency only with more than one prompt
/// length, the collective latency only with more than one TP degree; at most as many as
/// there are measurements, and at least the two efficiencies (a measurement has a TTFT
/// and a TPOT).
pub fn parameters(
    profile: &Profile,
    rs: &[Resolved],
    explicit: Option<&[String]>,
) -> Result<(Vec<String>, Vec<String>)> {
    if let Some(names) = explicit {
        for n in names {
            if !PARAM_NAMES.contains(&n.as_str()) {
                bail!(SettingError::new(
                    Setting::Fit,
                    format!(" names {n:?}, expected some of {}", PARAM_NAMES.join(", "))
                ));
            }
        }
        if names.is_empty() {
            bail!(SettingError::new(Setting::Fit, " names no parameter"));
        }
        return Ok((names.to_vec(), Vec::new()));
    }
    let many_in_flight = rs.iter().any(|r| match &r.m.load {
        MeasuredLoad::StaticBatch { batch } => *batch > 1,
        MeasuredLoad::Concurrency { concurrency } => *concurrency > 1,
        MeasuredLoad::Rate { .. } | MeasuredLoad::Trace => true,
    });
    let mut lengths: Vec<u64> = rs.iter().map(|r| r.m.input_tokens.round() as u64).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let mut tps: Vec<u32> = rs.iter().map(|r| r.tp).collect();
    tps.sort_unstable();
    tps.dedup();
    let mut left_out = Vec::new();
    let mut names = Vec::new();
    for n in PRIORITY {
        let fitted_here = profile.calibration.fitted.is_empty()
            || profile.calibration.fitted.iter().any(|f| f == n);
        if !fitted_here {
            continue;
        }
        let why = match n {
            "decode_seq_ms" if !many_in_flight => {
                Some("every measurement has one sequence in flight")
            }
            "attention_efficiency" if lengths.len() < 2 => {
                Some("every measurement has the same prompt length")
            }
            "collective_latency_us" if tps.len() < 2 => {
                Some("every measurement ran at one TP degree")
            }
            _ => None,
        };
        match why {
            Some(w) => left_out.push(format!("{n}: {w}")),
            None => names.push(n.to_string()),
        }
    }
    let k = rs.len().max(2).min(names.len());
    for n in names.drain(k..) {
        left_out.push(format!(
            "{n}: {} measurement(s) determine at most {k} parameters",
            rs.len()
        ));
    }
    Ok((names, left_out))
}

/// A fit: the parameter set, its iterations and final sum of squared log errors.
struct FitResult {
    params: LatencyParams,
    iterations: usize,
    cost: f64,
}

/// Fits `names` on `rs`, starting from [`START`] for them and the profile's values for the
/// rest. Refuses fewer TTFT-and-TPOT pairs than half the parameters.
fn fit(profile: &Profile, rs: &[Resolved], names: &[String]) -> Result<FitResult> {
    if rs.len() * 2 < names.len() {
        bail!(
            "{} measurement(s) cannot determine {} parameters",
            rs.len(),
            names.len()
        );
    }
    // Serving runs are simulated: their medians move in small jumps where the order of
    // events changes, so the Jacobian is taken over a step wider than those jumps.
    let (params, f) = fit_free(&profile.latency, names, 200, 1e-3, |p| {
        rs.iter()
            .flat_map(|r| {
                let (ttft, tpot) = predict(r, profile, p);
                [(ttft / r.m.ttft.ms).ln(), (tpot / r.m.tpot.ms).ln()]
            })
            .collect()
    });
    Ok(FitResult {
        params,
        iterations: f.iterations,
        cost: f.cost,
    })
}

/// Result of `profiler calibrate --from`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FromReport {
    /// The base profile: its specs, prices and the parameters not fitted.
    pub profile: String,
    pub files: Vec<FileProvenance>,
    pub params: Vec<FittedParam>,
    /// Parameters kept at the base profile's values, and why.
    pub not_fitted: Vec<String>,
    /// Error of the base profile's parameters on the measurements.
    pub before: CalibrationError,
    /// Error after the fit.
    pub after: CalibrationError,
    pub measurements: Vec<MeasuredError>,
    /// Every measurement projected by a fit on the other files' measurements only.
    pub leave_one_source_out: HeldOut,
    /// Every measurement projected by a fit on the other models' measurements only.
    pub leave_one_model_out: HeldOut,
    pub iterations: usize,
    pub sum_squared_log_error: f64,
    /// Settings not in the files nor given as flags, taken from documented defaults, and
    /// the readers' notes (corrections made to a tool's figures).
    pub notes: Vec<String>,
    #[serde(skip, default = "start")]
    pub fitted: LatencyParams,
}

fn start() -> LatencyParams {
    START
}

/// A file measurements were read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileProvenance {
    pub path: String,
    pub sha256: String,
    pub tool: String,
    pub measurements: u32,
    /// When the benchmark ran, where the file says.
    pub date: Option<String>,
}

/// Fits `profile` on the resolved measurements, with leave-one-source-out (a source is a
/// file) and leave-one-model-out errors beside the fit's.
pub fn calibrate_from(
    profile: &Profile,
    rs: &[Resolved],
    files: Vec<FileProvenance>,
    explicit: Option<&[String]>,
) -> Result<FromReport> {
    if rs.is_empty() {
        bail!("the files hold no measurement to fit on");
    }
    let (names, not_fitted) = parameters(profile, rs, explicit)?;
    let f = fit(profile, rs, &names)?;
    let before = mape(&errors(profile, &profile.latency, rs));
    let after_points = errors(profile, &f.params, rs);
    let refit = |keep: &[Resolved]| fit(profile, keep, &names).map(|f| f.params);
    let errs = |p: &LatencyParams, out: &[Resolved]| errors(profile, p, out);
    let loso = leave_one_group_out_by(rs, |r| vec![r.m.file.clone()], "source", refit, errs, mape);
    let lomo = leave_one_group_out_by(
        rs,
        |r| vec![r.card.name.clone()],
        "model",
        refit,
        errs,
        mape,
    );
    let mut notes: Vec<String> = Vec::new();
    for r in rs {
        for a in &r.assumed {
            notes.push(format!("{}: assumed {a}", r.name()));
        }
        for n in &r.m.notes {
            notes.push(format!("{}: {n}", r.name()));
        }
    }
    Ok(FromReport {
        profile: profile.name.clone(),
        files,
        params: names
            .iter()
            .map(|n| FittedParam {
                name: n.clone(),
                before: profile.latency.get(n).unwrap_or(f64::NAN),
                after: f.params.get(n).unwrap_or(f64::NAN),
            })
            .collect(),
        not_fitted,
        before,
        after: mape(&after_points),
        measurements: after_points,
        leave_one_source_out: loso,
        leave_one_model_out: lomo,
        iterations: f.iterations,
        sum_squared_log_error: f.cost,
        notes,
        fitted: f.params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::import::{FileSettings, Observed, RequestShape, Tool};
    use crate::model::card;
    use crate::projection::setting;
    use std::path::PathBuf;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn inf2() -> Profile {
        crate::projection::profile::load(&root().join("profiles"), "inf2-profile").unwrap()
    }

    fn find(name: &str) -> Result<ModelCard> {
        card::find(&root().join("models"), name)
    }

    fn measurement(file: &str, load: MeasuredLoad, input: f64, output: f64) -> Measurement {
        Measurement {
            file: file.into(),
            tool: Tool::VllmBenchServe,
            label: "benchmark 1 of 1".into(),
            model: Some("meta-llama/Llama-3.1-8B".into()),
            load,
            input_tokens: input,
            output_tokens: output,
            requests: Some(64),
            per_request: Vec::new(),
            ttft: Observed {
                ms: 100.0,
                stat: Stat::Median,
            },
            tpot: Observed {
                ms: 10.0,
                stat: Stat::Median,
            },
            output_tokens_per_s: None,
            date: None,
            settings: FileSettings::default(),
            notes: Vec::new(),
        }
    }

    fn flags() -> Flags {
        Flags {
            instance: Some("inf2.48xlarge".into()),
            tp: Some(24),
            weights_dtype: Some(WeightsDtype::Bf16),
            max_num_seqs: Some(8),
            seq_len: Some(2048),
            ..Flags::default()
        }
    }

    #[test]
    fn median_and_mean_by_hand() {
        assert_eq!(statistic(&mut [4.0, 1.0, 3.0, 2.0], Stat::Median), 2.5);
        assert_eq!(statistic(&mut [5.0, 1.0, 3.0], Stat::Median), 3.0);
        assert_eq!(statistic(&mut [1.0, 2.0, 6.0], Stat::Mean), 3.0);
        assert!(statistic(&mut [], Stat::Mean).is_nan());
    }

    #[test]
    fn a_static_batch_is_projected_as_project_does() {
        let p = inf2();
        let m = measurement(
            "a.json",
            MeasuredLoad::StaticBatch { batch: 4 },
            128.0,
            256.0,
        );
        let r = resolve(m, &flags(), &p, &find).unwrap();
        let (ttft, tpot) = predict(&r, &p, &p.latency);
        let c = find("llama-3.1-8b").unwrap();
        let mut t = Target::new(24, 4, 128, 256, WeightsDtype::Bf16);
        t.compiled_seq_len = Some(2048);
        t.max_num_seqs = Some(8);
        let e = estimate(&c.architecture, &p, &p.latency, &t);
        assert_eq!((ttft, tpot), (e.ttft_ms, e.tpot_ms));
    }

    #[test]
    fn what_no_file_or_flag_says_is_an_error_naming_the_flag() {
        let p = inf2();
        let m = || {
            measurement(
                "a.json",
                MeasuredLoad::Concurrency { concurrency: 4 },
                128.0,
                128.0,
            )
        };
        let cases: [(Flags, Setting); 5] = [
            (
                Flags {
                    instance: None,
                    ..flags()
                },
                Setting::Instance,
            ),
            (
                Flags {
                    tp: None,
                    ..flags()
                },
                Setting::Tp,
            ),
            (
                Flags {
                    weights_dtype: None,
                    ..flags()
                },
                Setting::WeightsDtype,
            ),
            (
                Flags {
                    max_num_seqs: None,
                    ..flags()
                },
                Setting::MaxNumSeqs,
            ),
            (
                Flags {
                    seq_len: None,
                    ..flags()
                },
                Setting::SeqLen,
            ),
        ];
        for (f, setting) in cases {
            let e = resolve(m(), &f, &p, &find).unwrap_err();
            let plain = format!("{e:#}");
            let give = format!("give {} ", setting.key());
            assert!(
                plain.contains(&give) && plain.contains("a.json"),
                "{setting:?}: {plain}"
            );
            assert!(!plain.contains("--"), "{plain}");
            let flags = setting::chain_with_flags(&e);
            assert!(
                flags.contains(&format!("give {} ", setting.flag())),
                "{flags}"
            );
            assert_eq!(flags.lines().count(), 1, "{flags}");
        }
        let mut unnamed = m();
        unnamed.model = None;
        let e = resolve(unnamed, &flags(), &p, &find).unwrap_err();
        assert!(
            setting::chain_with_flags(&e).contains("give --model CARD"),
            "{e}"
        );
        let mut unknown = m();
        unknown.model = Some("org/Unknown-7B".into());
        let e = resolve(unknown, &flags(), &p, &find).unwrap_err();
        assert!(
            setting::chain_with_flags(&e).contains("(give --model CARD): "),
            "{e}"
        );
        // The file's own settings fill what the flags leave out.
        let mut said = m();
        said.settings = FileSettings {
            instance: Some("inf2.24xlarge".into()),
            tp: Some(8),
            max_num_seqs: Some(4),
            seq_len: Some(1024),
            dtype: Some(FileDtype::read("torch.bfloat16")),
        };
        let r = resolve(said.clone(), &Flags::default(), &p, &find).unwrap();
        assert_eq!(
            (r.instance.as_str(), r.tp, r.dtype),
            ("inf2.24xlarge", 8, WeightsDtype::Bf16)
        );
        // A dtype the project does not model is an error naming it and the flag, unless
        // the flag says what to project it at.
        said.settings.dtype = Some(FileDtype::read("q4_1"));
        let e = setting::chain_with_flags(
            &resolve(said.clone(), &Flags::default(), &p, &find).unwrap_err(),
        );
        assert!(
            e.contains("a.json") && e.contains("\"q4_1\"") && e.contains("--weights-dtype"),
            "{e}"
        );
        let int4 = Flags {
            weights_dtype: Some(WeightsDtype::Int4),
            ..Flags::default()
        };
        assert_eq!(
            resolve(said, &int4, &p, &find).unwrap().dtype,
            WeightsDtype::Int4
        );
    }

    /// Measurements made by the simulator itself with known parameters: the fit, started
    /// from elsewhere, must reproduce them (the machinery, not the model, is under test).
    #[test]
    fn the_fit_recovers_parameters_that_made_the_measurements() {
        let p = inf2();
        let mut truth = p.latency;
        truth.bandwidth_efficiency = 0.45;
        truth.compute_efficiency = 0.3;
        let loads = [
            (MeasuredLoad::Concurrency { concurrency: 1 }, 256.0, 128.0),
            (MeasuredLoad::Concurrency { concurrency: 8 }, 512.0, 128.0),
            (
                MeasuredLoad::Rate {
                    rate: 2.0,
                    burstiness: Some(1.0),
                },
                1024.0,
                64.0,
            ),
        ];
        let mut rs = Vec::new();
        for (i, (load, input, output)) in loads.into_iter().enumerate() {
            let m = measurement(&format!("f{i}.json"), load, input, output);
            let mut r = resolve(m, &flags(), &p, &find).unwrap();
            let (ttft, tpot) = predict(&r, &p, &truth);
            r.m.ttft.ms = ttft;
            r.m.tpot.ms = tpot;
            rs.push(r);
        }
        // Two parameters, which TPOT and TTFT set apart (with a third, such as the step
        // overhead, three measurements are matched as well by other combinations).
        let names: Vec<String> = ["bandwidth_efficiency", "compute_efficiency"]
            .map(String::from)
            .to_vec();
        let report = calibrate_from(&p, &rs, Vec::new(), Some(&names)).unwrap();
        assert!(
            report.after.ttft < 0.01 && report.after.tpot < 0.01,
            "{:?} {:?} {:?}",
            report.after,
            report.params,
            report
                .measurements
                .iter()
                .map(|m| (m.ttft_error, m.tpot_error))
                .collect::<Vec<_>>()
        );
        let got = |n: &str| report.params.iter().find(|x| x.name == n).unwrap().after;
        assert!(
            (got("bandwidth_efficiency") - 0.45).abs() < 0.01,
            "{:?} {:?}",
            report.params,
            report.measurements
        );
        assert!((got("compute_efficiency") - 0.3).abs() < 0.01);
        assert!(report.leave_one_source_out.error.is_some());
        assert!(report.leave_one_model_out.error.is_none(), "one model only");
    }

    #[test]
    fn only_parameters_the_measurements_tell_apart_are_fitted() {
        let p = inf2();
        let one = resolve(
            measurement(
                "a.json",
                MeasuredLoad::Concurrency { concurrency: 1 },
                128.0,
                128.0,
            ),
            &flags(),
            &p,
            &find,
        )
        .unwrap();
        let (names, out) = parameters(&p, std::slice::from_ref(&one), None).unwrap();
        assert_eq!(names, ["bandwidth_efficiency", "compute_efficiency"]);
        let why = out.join("\n");
        assert!(
            why.contains("decode_seq_ms: every measurement has one sequence in flight"),
            "{why}"
        );
        assert!(
            why.contains("collective_latency_us: every measurement ran at one TP degree"),
            "{why}"
        );
        assert!(
            why.contains("attention_efficiency: every measurement has the same prompt length"),
            "{why}"
        );
        assert!(
            why.contains("step_overhead_ms: 1 measurement(s) determine at most 2"),
            "{why}"
        );
        let e = parameters(&p, &[one], Some(&["speed".to_string()])).unwrap_err();
        assert!(e.to_string().starts_with("fit names \"speed\""), "{e}");
    }

    #[test]
    fn a_trace_replays_the_recorded_arrivals() {
        let p = inf2();
        let mut m = measurement("s.jsonl", MeasuredLoad::Trace, 100.0, 20.0);
        m.per_request = vec![
            RequestShape {
                prompt: 100,
                output: 20,
                start_s: Some(10.0),
            },
            RequestShape {
                prompt: 80,
                output: 30,
                start_s: Some(10.5),
            },
        ];
        let r = resolve(m, &flags(), &p, &find).unwrap();
        let Shape::Serving { load, .. } = &r.shape else {
            panic!("serving")
        };
        assert_eq!(load.arrivals, Arrivals::Trace);
        let Lengths::List(v) = &load.lengths else {
            panic!("list")
        };
        assert_eq!(v[1].arrival_s, Some(0.5));
        assert_eq!(load.requests, Some(2));
    }
}
