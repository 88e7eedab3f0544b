//! `profiler project`: a model card projected onto every instance of the chosen profiles
//! (or one instance), with throughput, cost per 1M tokens and energy.
//!
//! Cost per 1M output tokens is the formula of the Neuron performance pages:
//! `hourly price / 3600 / output tokens per second × 1e6` (aws-neuron-sdk
//! `general/benchmarks/inf2/inf2-performance.rst`, commit 78169c6c, 2024-04-30); the whole
//! instance is billed even when the TP group uses part of it. Energy (this project's
//! definition) is an upper bound: the TDP of the chips of the TP group for the time the
//! tokens take.

use super::dtype::WeightsDtype;
use super::interval::ErrorBar;
use super::latency::{deployment, estimate, Estimate, Target};
use super::model_cost::ModelCost;
use super::profile::{self, CalibrationStatus, DeviceKind, Instance, PriceKind, Profile};
use super::setting::{Setting, SettingError};
use super::step::StepModel;
use super::types::{Intervals, Projection};
use crate::model::card::ModelCard;
use anyhow::{bail, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What to project.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRequest {
    /// One instance only (searched in every chosen profile).
    pub instance: Option<String>,
    /// TP degree; the instance's natural degree when `None`.
    pub tp: Option<u32>,
    pub batch: u32,
    pub input_len: u32,
    pub output_len: u32,
    pub dtype: WeightsDtype,
    pub price: PriceKind,
    /// Compiled positions (`--seq-len`); by default input + output rounded up.
    pub seq_len: Option<u32>,
    /// Compiled batch / continuous-batching slots (`--max-num-seqs`); by default the batch.
    pub max_num_seqs: Option<u32>,
    /// Prompts per context-encoding call (`--ctx-batch-size`); by default the batch.
    pub ctx_batch_size: Option<u32>,
    /// Context-encoding and token-generation buckets (`--buckets`).
    pub buckets: Option<Vec<u32>>,
    /// Data-parallel replicas on the instance (`--dp`).
    pub dp: u32,
    /// Expert-parallel degree inside the TP group (`--ep-degree`; 1: experts TP-sharded).
    pub ep: u32,
}

impl ProjectRequest {
    /// Batch 1, on-demand prices, every instance at its natural TP degree.
    pub fn new(input_len: u32, output_len: u32, dtype: WeightsDtype) -> Self {
        ProjectRequest {
            instance: None,
            tp: None,
            batch: 1,
            input_len,
            output_len,
            dtype,
            price: PriceKind::OnDemand,
            seq_len: None,
            max_num_seqs: None,
            ctx_batch_size: None,
            buckets: None,
            dp: 1,
            ep: 1,
        }
    }

    /// The static-batch target of this request on `profile` (buckets apply to static
    /// shapes only).
    fn target(&self, profile: &Profile, tp: u32, batch: u32) -> Target {
        let mut t = Target::new(
            tp,
            batch.max(1),
            self.input_len.max(1),
            self.output_len.max(1),
            self.dtype,
        );
        t.compiled_seq_len = self.seq_len;
        t.max_num_seqs = self.max_num_seqs;
        t.ctx_batch_size = self.ctx_batch_size;
        t.ep = self.ep;
        if profile.runtime.static_shapes.is_some() {
            t.buckets = self.buckets.clone();
        }
        t
    }
}

/// A projection plus the numbers its JSON contract does not carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Projected {
    #[serde(flatten)]
    pub projection: Projection,
    /// `batch × (input + output) / e2e`.
    pub total_tokens_per_s: f64,
    /// Interval of `total_tokens_per_s` (see [`super::interval`]).
    #[serde(default)]
    pub total_tokens_per_s_low: Option<f64>,
    #[serde(default)]
    pub total_tokens_per_s_high: Option<f64>,
    /// Largest batch whose KV cache fits beside the weights at these lengths.
    pub max_batch_that_fits: u32,
    /// Prompt length after padding to its bucket.
    pub padded_input_len: u32,
    /// KV-cache length reserved per sequence (the compiled sequence length on Neuron).
    pub kv_cache_len: u32,
    pub price_kind: String,
    /// `None` where the profile has no price of that kind for the instance.
    pub price_usd_per_hour: Option<f64>,
    pub calibration_status: String,
    /// Data-parallel replicas the throughput and cost count.
    pub dp: u32,
    /// Compiled batch (continuous-batching slots) of one replica.
    pub max_num_seqs: u32,
    /// Expert-parallel degree inside the TP group (1: routed experts TP-sharded).
    #[serde(default = "super::step::single_expert_group")]
    pub ep_degree: u32,
}

/// What `profiler project --format json` writes (schema version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectReport {
    pub schema_version: u32,
    /// The model card's name.
    pub model: String,
    pub model_parameters: u64,
    pub projections: Vec<Projected>,
}

impl ProjectReport {
    /// The report of `rows` for `model`.
    pub fn new(model: &str, model_parameters: u64, rows: &[Projected]) -> Self {
        ProjectReport {
            schema_version: 1,
            model: model.to_string(),
            model_parameters,
            projections: rows.to_vec(),
        }
    }
}

/// `price / 3600 / tokens_per_s × 1e6`: USD per 1M tokens at a sustained rate.
pub fn cost_per_million(price_usd_per_hour: f64, tokens_per_s: f64) -> f64 {
    price_usd_per_hour / 3600.0 / tokens_per_s * 1e6
}

/// kWh per 1M tokens of `chips` chips at `tdp_watts` each, at a sustained rate.
pub fn energy_kwh_per_million(tdp_watts: f64, chips: f64, tokens_per_s: f64) -> f64 {
    tdp_watts * chips * (1e6 / tokens_per_s) / 3.6e6
}

/// Projects `card` on one instance of `profile` at TP `tp` and batch `batch`.
pub fn project_one(
    card: &ModelCard,
    profile: &Profile,
    inst: &Instance,
    tp: u32,
    batch: u32,
    req: &ProjectRequest,
) -> Projected {
    let target = req.target(profile, tp, batch);
    let e = estimate(&card.architecture, profile, &profile.latency, &target);
    let slots = deployment(profile, &target).max_num_seqs;
    let mut p = build(card, profile, inst, &target, &e, req.price, req.dp.max(1));
    p.max_num_seqs = slots;
    if profile.runtime.static_shapes.is_some() && slots > target.batch {
        p.projection.notes.push(format!(
            "compiled for {slots} slots: every decode step runs {slots} rows however many are busy"
        ));
    }
    if req.dp > 1 {
        p.projection.notes.push(format!(
            "{} data-parallel replicas: throughput and cost count all of them",
            req.dp
        ));
    }
    p
}

/// Refuses compile and serving settings no instance can run for `req`: a compiled length
/// below the request, a batch above the slots. One line naming the setting.
pub fn check_settings(req: &ProjectRequest) -> Result<()> {
    let total = req.input_len as u64 + req.output_len as u64;
    if let Some(s) = req.seq_len {
        if (s as u64) < total {
            bail!(SettingError::new(
                Setting::SeqLen,
                format!(
                    " {s} is below input + output = {} + {} = {total} tokens",
                    req.input_len, req.output_len
                )
            ));
        }
    }
    if let Some(m) = req.max_num_seqs {
        if m < req.batch {
            bail!(
                SettingError::new(Setting::Batch, format!(" {} is more than ", req.batch))
                    .then(Setting::MaxNumSeqs, format!(" {m}"))
            );
        }
    }
    Ok(())
}

/// Refuses compile and serving settings `profile` cannot run for `req` at TP `tp` on
/// `inst`: one line naming the setting.
pub fn check_compile(
    card: &ModelCard,
    profile: &Profile,
    inst: &Instance,
    tp: u32,
    req: &ProjectRequest,
) -> Result<()> {
    check_settings(req)?;
    let units = profile.units(inst);
    let dp = req.dp.max(1);
    if dp as u64 * tp as u64 > units as u64 {
        bail!(replicas_beyond(dp, tp, profile, inst));
    }
    let target = req.target(profile, tp, req.batch);
    let dep = deployment(profile, &target);
    dep.validate(profile)?;
    if req.seq_len.is_some() {
        dep.check_positions(&card.architecture)?;
    }
    dep.check_experts(&card.architecture)?;
    StepModel::new(&card.architecture, profile, &profile.latency, &dep)
        .check_request(req.input_len, req.output_len)
}

/// "dp × tp = n units, more than the instance has": `dp` replicas of TP `tp` that `inst`
/// cannot hold.
pub fn replicas_beyond(dp: u32, tp: u32, profile: &Profile, inst: &Instance) -> SettingError {
    let units = profile.units(inst);
    SettingError::new(Setting::Dp, format!(" {dp} × ")).then(
        Setting::Tp,
        format!(
            " {tp} = {} {}s, more than the {units} of {}",
            dp as u64 * tp as u64,
            profile.runtime.tp_unit,
            inst.name
        ),
    )
}

fn build(
    card: &ModelCard,
    profile: &Profile,
    inst: &Instance,
    t: &Target,
    e: &Estimate,
    kind: PriceKind,
    dp: u32,
) -> Projected {
    let b = t.batch as f64 * dp as f64;
    let e2e_s = e.e2e_ms / 1e3;
    let out_tps = b * t.output_len as f64 / e2e_s;
    let total_tps = b * (t.input_len + t.output_len) as f64 / e2e_s;
    let price = inst.price(kind);
    let cost = |tps: f64| price.map(|p| cost_per_million(p.usd_per_hour, tps));
    let chips = (t.tp as f64 * dp as f64 / profile.runtime.tp_units_per_chip as f64).ceil();
    let energy_of = |tps: f64| {
        profile
            .chip
            .tdp_watts
            .map(|w| energy_kwh_per_million(w, chips, tps))
    };
    let energy = energy_of(total_tps);

    // Intervals: TTFT and TPOT by the profile's error bar, the rest through them (e2e
    // grows with both; throughput falls as e2e grows; cost and energy fall with throughput).
    let outside = profile
        .calibration
        .outside(&inst.name, t.tp, t.dtype, Some(t.batch));
    let bar = ErrorBar::of(&profile.calibration, outside.is_some());
    let (ttft_lo, ttft_hi) = ErrorBar::span(e.ttft_ms, bar.ttft);
    let (tpot_lo, tpot_hi) = ErrorBar::span(e.tpot_ms, bar.tpot);
    let steps = t.output_len.max(1).saturating_sub(1) as f64;
    let (e2e_lo, e2e_hi) = (ttft_lo + steps * tpot_lo, ttft_hi + steps * tpot_hi);
    let rate = |tokens: f64, e2e_ms: f64| b * tokens / (e2e_ms / 1e3);
    let out_len = t.output_len as f64;
    let all_len = (t.input_len + t.output_len) as f64;
    let (out_lo, out_hi) = (rate(out_len, e2e_hi), rate(out_len, e2e_lo));
    let (total_lo, total_hi) = (rate(all_len, e2e_hi), rate(all_len, e2e_lo));
    let intervals = Intervals {
        ttft_ms_low: Some(ttft_lo),
        ttft_ms_high: Some(ttft_hi),
        tpot_ms_low: Some(tpot_lo),
        tpot_ms_high: Some(tpot_hi),
        e2e_ms_low: Some(e2e_lo),
        e2e_ms_high: Some(e2e_hi),
        output_tokens_per_s_low: Some(out_lo),
        output_tokens_per_s_high: Some(out_hi),
        cost_usd_per_million_output_tokens_low: cost(out_hi),
        cost_usd_per_million_output_tokens_high: cost(out_lo),
        cost_usd_per_million_tokens_low: cost(total_hi),
        cost_usd_per_million_tokens_high: cost(total_lo),
        energy_kwh_per_million_tokens_low: energy_of(total_hi),
        energy_kwh_per_million_tokens_high: energy_of(total_lo),
        interval_basis: Some(bar.basis),
    };

    let mut sources = Vec::new();
    let mut add = |s: &str| {
        if !s.is_empty() && !sources.iter().any(|x: &String| x == s) {
            sources.push(s.to_string());
        }
    };
    add(&card.source);
    for (field, src) in &profile.field_sources {
        if field.starts_with("chip.")
            || field.starts_with("runtime.")
            || field.starts_with("latency.")
        {
            add(src);
        }
    }
    if let Some(p) = price {
        add(&p.source);
    }
    if let Some(p) = &profile.calibration.points {
        let shown = p
            .strip_prefix(
                profile
                    .path
                    .parent()
                    .unwrap_or(Path::new(""))
                    .parent()
                    .unwrap_or(Path::new("")),
            )
            .unwrap_or(p);
        add(&format!("calibration points: {}", shown.display()));
    }

    let mut notes = Vec::new();
    if !e.fits {
        notes.push(format!(
            "does not fit: needs {:.1} GiB per {} (weights + KV cache for batch {} × {} tokens), {:.1} GiB usable; latency shown as if it fitted",
            e.memory_per_unit_bytes / GIB,
            profile.runtime.tp_unit,
            t.batch,
            e.kv_len,
            e.usable_memory_per_unit_bytes / GIB
        ));
    }
    if e.padded_input_len != t.input_len {
        notes.push(format!(
            "prompt padded from {} to its {}-token bucket",
            t.input_len, e.padded_input_len
        ));
    }
    if profile.runtime.static_shapes.is_some() {
        notes.push(format!(
            "compiled sequence length {} sizes the KV cache",
            e.kv_len
        ));
    }
    let host = profile.kind == DeviceKind::Host;
    if price.is_none() && !host {
        notes.push(format!(
            "no {} price for {}: cost not projected",
            kind.name(),
            inst.name
        ));
    }
    let units = profile.units(inst);
    if t.tp * dp < units {
        notes.push(format!(
            "TP {} × {dp} replica(s) uses {} of the {} {}s; the whole instance is billed",
            t.tp,
            t.tp * dp,
            units,
            profile.runtime.tp_unit
        ));
    }
    notes.extend(expert_notes(card, profile, t));
    if matches!(t.dtype, WeightsDtype::Int8 | WeightsDtype::Int4) {
        notes.push("int weights are weight-only quantization: matmuls run at the bf16 rate".into());
    }
    if let Some(why) = outside {
        notes.push(why);
    }
    if host {
        notes.push("host profile: rates measured by start-up micro-benchmarks".into());
    } else if profile.calibration.status == CalibrationStatus::Assumed {
        notes.push(format!(
            "uncalibrated profile: efficiencies assumed, see [calibration] in {}.toml",
            profile.name
        ));
    }

    Projected {
        projection: Projection {
            profile: profile.name.clone(),
            instance: inst.name.clone(),
            tp: t.tp,
            batch: t.batch,
            input_len: t.input_len,
            output_len: t.output_len,
            weights_dtype: t.dtype.name().to_string(),
            fits: e.fits,
            memory_required_bytes: (e.memory_per_unit_bytes * t.tp as f64) as u64,
            memory_available_bytes: (e.usable_memory_per_unit_bytes * t.tp as f64) as u64,
            ttft_ms: e.ttft_ms,
            tpot_ms: e.tpot_ms,
            e2e_ms: e.e2e_ms,
            output_tokens_per_s: out_tps,
            cost_usd_per_million_output_tokens: cost(out_tps),
            cost_usd_per_million_tokens: cost(total_tps),
            energy_kwh_per_million_tokens: energy,
            intervals,
            calibration_mape: profile.calibration.error,
            sources,
            notes,
        },
        total_tokens_per_s: total_tps,
        total_tokens_per_s_low: Some(total_lo),
        total_tokens_per_s_high: Some(total_hi),
        max_batch_that_fits: e.max_batch,
        padded_input_len: e.padded_input_len,
        kv_cache_len: e.kv_len,
        price_kind: kind.name().to_string(),
        price_usd_per_hour: price.map(|p| p.usd_per_hour),
        calibration_status: match profile.calibration.status {
            CalibrationStatus::Fitted => "fitted".into(),
            CalibrationStatus::Assumed => "assumed".into(),
        },
        dp,
        max_num_seqs: t.batch,
        ep_degree: t.ep.max(1),
    }
}

const GIB: f64 = 1073741824.0;

/// What the projection assumes of a mixture-of-experts model's routed experts: how they
/// are spread, and a sharded width that leaves the matrix engine partly idle.
pub fn expert_notes(card: &ModelCard, profile: &Profile, t: &Target) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(q) = &card.architecture.quantization {
        if profile.runtime.dequantizes(&q.method) {
            notes.push(format!(
                "{} has no kernels here: the checkpoint's {} weights are dequantized to {} at load and counted so",
                q.method,
                q.method,
                t.dtype.name()
            ));
        }
    }
    let Some(e) = &card.architecture.experts else {
        return notes;
    };
    let c = ModelCost::sharded(
        &profile.runtime.serves(&card.architecture),
        t.tp,
        t.ep,
        t.dtype,
    );
    notes.push(if t.ep > 1 {
        format!(
            "expert parallelism {}: {} groups of {} {}s, {} of the {} routed experts each; the busiest group sets the pace (uniform routing assumed)",
            t.ep,
            t.ep,
            t.tp / t.ep,
            profile.runtime.tp_unit,
            c.local_experts,
            e.count
        )
    } else {
        format!(
            "routed experts sharded over the TP group; a step reads the experts its tokens pick, uniform routing assumed ({} of {} per token)",
            e.per_token, e.count
        )
    });
    if let Some(b) = profile.runtime.moe_block_size {
        notes.push(format!(
            "prefill computes every routed expert it touches in whole {b}-token blocks (blockwise matmul)"
        ));
    }
    if let Some(w) = profile.chip.matmul_tile_width {
        if c.expert_width < w as f64 {
            notes.push(format!(
                "each routed expert is {} wide per {} (below the matrix engine's {w}): its matmuls run at {:.0}% of the rate{}",
                c.expert_width,
                profile.runtime.tp_unit,
                100.0 * c.expert_width / w as f64,
                if t.ep < t.tp { "; an expert-parallel degree keeps the experts whole" } else { "" }
            ));
        }
    }
    notes
}

/// Projects `card` on the local machine (a [`super::profile::host_profile`]) for the
/// workload a run measured, so the run can show projected against measured.
pub fn project_host(
    card: &ModelCard,
    host: &Profile,
    batch: u32,
    input_len: u32,
    output_len: u32,
    dtype: WeightsDtype,
) -> Projected {
    let req = ProjectRequest::new(input_len.max(1), output_len.max(1), dtype);
    match host.instances.first() {
        Some(inst) => project_one(card, host, inst, 1, batch, &req),
        None => unreachable_host(card, host, batch, &req),
    }
}

/// A host profile always has its one instance; this keeps [`project_host`] panic-free if a
/// caller empties it.
fn unreachable_host(
    card: &ModelCard,
    host: &Profile,
    batch: u32,
    req: &ProjectRequest,
) -> Projected {
    let inst = Instance {
        name: "host".into(),
        accelerators: 1,
        vcpus: 1,
        host_memory_bytes: 0.0,
        on_demand: None,
        reserved: None,
        capacity_block: None,
        note: None,
    };
    project_one(card, host, &inst, 1, batch, req)
}

/// The natural TP degree of `inst` when it holds `dp` replicas: the largest allowed degree
/// with `dp × tp` within the instance (the natural degree with one replica).
pub fn natural_tp_for(profile: &Profile, inst: &Instance, dp: u32) -> u32 {
    if dp <= 1 {
        return profile.natural_tp(inst);
    }
    let units = profile.units(inst);
    profile
        .runtime
        .tp_degrees
        .iter()
        .copied()
        .filter(|&t| t as u64 * dp as u64 <= units as u64)
        .max()
        .unwrap_or(profile.natural_tp(inst))
}

/// Refuses a sequence longer than the model's positions: the model cannot serve it, and
/// its latency and cost would be extrapolations of nothing.
pub fn check_positions(card: &ModelCard, input_len: u32, output_len: u32) -> Result<()> {
    let total = input_len as u64 + output_len as u64;
    let max = card.architecture.max_position_embeddings as u64;
    if total > max {
        bail!(
            SettingError::new(Setting::InputLen, format!(" {input_len} + ")).then(
                Setting::OutputLen,
                format!(
                    " {output_len} = {total} tokens, more than the {max} positions of {}",
                    card.name
                )
            )
        );
    }
    Ok(())
}

/// Projects `card` on the given profiles: one instance when the request names one, else
/// every instance at its natural TP degree (or at `req.tp` where the instance allows it).
pub fn project_profiles(
    card: &ModelCard,
    profiles: &[Profile],
    req: &ProjectRequest,
) -> Result<Vec<Projected>> {
    if req.batch == 0 || req.input_len == 0 || req.output_len == 0 {
        bail!(SettingError::new(Setting::Batch, ", ")
            .then(Setting::InputLen, " and ")
            .then(Setting::OutputLen, " must be positive"));
    }
    check_positions(card, req.input_len, req.output_len)?;
    let mut out = Vec::new();
    if let Some(name) = &req.instance {
        let found = profiles.iter().find_map(|p| {
            p.instances
                .iter()
                .find(|i| i.name.eq_ignore_ascii_case(name))
                .map(|i| (p, i))
        });
        let Some((p, inst)) = found else {
            let all: Vec<&str> = profiles
                .iter()
                .flat_map(|p| p.instances.iter().map(|i| i.name.as_str()))
                .collect();
            bail!(SettingError::new(
                Setting::Instance,
                format!(
                    " {name:?} is not in the chosen profiles: expected one of {}",
                    all.join(", ")
                )
            ));
        };
        let tp = match req.tp {
            Some(tp) => {
                p.check_tp(inst, tp)?;
                tp
            }
            None => natural_tp_for(p, inst, req.dp),
        };
        check_compile(card, p, inst, tp, req)?;
        out.push(project_one(card, p, inst, tp, req.batch, req));
        return Ok(out);
    }
    let mut first_err = None;
    for p in profiles {
        for inst in &p.instances {
            let tp = match req.tp {
                Some(tp) if p.check_tp(inst, tp).is_ok() => tp,
                Some(_) => continue,
                None => natural_tp_for(p, inst, req.dp),
            };
            // Settings one instance cannot run (replicas beyond it, a prompt beyond its
            // buckets) leave it out; they are an error only when nothing is left.
            if let Err(e) = check_compile(card, p, inst, tp, req) {
                first_err.get_or_insert(e);
                continue;
            }
            out.push(project_one(card, p, inst, tp, req.batch, req));
        }
    }
    if out.is_empty() {
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    if out.is_empty() {
        bail!(SettingError::new(
            Setting::Tp,
            format!(
                " {} is not allowed on any instance of the chosen profiles",
                req.tp.unwrap_or(0)
            )
        ));
    }
    Ok(out)
}

/// `profiler project`: loads the profiles named by `selection` (`all` or a comma list)
/// from `profiles_dir` and projects `card` on them.
pub fn project_detailed(
    profiles_dir: &Path,
    card: &ModelCard,
    selection: &str,
    req: &ProjectRequest,
) -> Result<Vec<Projected>> {
    let profiles = profile::load_selection(profiles_dir, selection)?;
    project_profiles(card, &profiles, req)
}

/// Like [`project_detailed`], returning the contract records only.
pub fn project(
    profiles_dir: &Path,
    card: &ModelCard,
    selection: &str,
    req: &ProjectRequest,
) -> Result<Vec<Projection>> {
    Ok(project_detailed(profiles_dir, card, selection, req)?
        .into_iter()
        .map(|p| p.projection)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::card;
    use std::path::PathBuf;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn card(name: &str) -> ModelCard {
        card::find(&root().join("models"), name).unwrap()
    }

    fn req(input: u32, output: u32) -> ProjectRequest {
        ProjectRequest::new(input, output, WeightsDtype::Bf16)
    }

    #[test]
    fn cost_formula_matches_the_neuron_docs_worked_example() {
        // Llama-2-7b on inf2.48xlarge at 156.1 output tokens/s and $12.981/h: the Neuron
        // tables give $23.10 per 1M output tokens.
        let c = cost_per_million(12.981, 156.1);
        assert!((c - 23.10).abs() < 0.005, "{c}");
        // 1 kW for an hour at 1M tokens per hour is 1 kWh per 1M tokens.
        let e = energy_kwh_per_million(500.0, 2.0, 1e6 / 3600.0);
        assert!((e - 1.0).abs() < 1e-12, "{e}");
    }

    #[test]
    fn parameter_counts_of_llama_3_1() {
        let p8 = card("llama-3.1-8b").architecture.parameter_count() as f64;
        let p70 = card("llama-3.1-70b").architecture.parameter_count() as f64;
        assert!((p8 / 8.03e9 - 1.0).abs() < 0.005, "{p8}");
        assert!((p70 / 70.6e9 - 1.0).abs() < 0.005, "{p70}");
    }

    #[test]
    fn projections_outside_the_calibration_points_say_so() {
        let profiles = vec![profile::load(&root().join("profiles"), "inf2-profile").unwrap()];
        let note = |rows: &[Projected], n: &str| -> Option<String> {
            rows.iter()
                .find(|r| r.projection.instance == n)
                .unwrap()
                .projection
                .notes
                .iter()
                .find(|x| x.starts_with("calibration error not measured"))
                .cloned()
        };
        let bf16 = project_profiles(&card("llama-3.1-8b"), &profiles, &req(128, 128)).unwrap();
        // The points ran on inf2.48xlarge at TP 24 with bf16 and int8 weights.
        assert_eq!(note(&bf16, "inf2.48xlarge"), None);
        let small = note(&bf16, "inf2.xlarge").unwrap();
        assert!(small.contains("inf2.xlarge at TP 2"), "{small}");
        assert!(small.contains("points: inf2.48xlarge at TP 24"), "{small}");
        let mut r = req(128, 128);
        r.dtype = WeightsDtype::Int4;
        let int4 = project_profiles(&card("llama-3.1-8b"), &profiles, &r).unwrap();
        let big = note(&int4, "inf2.48xlarge").unwrap();
        assert!(big.contains("int4 weights"), "{big}");
        assert!(!big.contains("TP 24 ("), "{big}");
        // int8 runs are among the points (Llama-3-8B).
        r.dtype = WeightsDtype::Int8;
        let int8 = project_profiles(&card("llama-3.1-8b"), &profiles, &r).unwrap();
        assert_eq!(note(&int8, "inf2.48xlarge"), None);
        // A profile parsed from text has not read its points and claims nothing.
        let text = std::fs::read_to_string(root().join("profiles/inf2-profile.toml")).unwrap();
        let parsed = Profile::parse(&text, &root().join("profiles/inf2-profile.toml")).unwrap();
        assert!(parsed.calibration.runs.is_none());
    }

    #[test]
    fn llama_70b_bf16_fits_inf2_48xlarge_not_xlarge() {
        let profiles = vec![profile::load(&root().join("profiles"), "inf2-profile").unwrap()];
        let rows = project_profiles(&card("llama-3.1-70b"), &profiles, &req(128, 128)).unwrap();
        let get = |n: &str| rows.iter().find(|r| r.projection.instance == n).unwrap();
        let small = get("inf2.xlarge");
        assert!(!small.projection.fits);
        assert!(small.projection.memory_required_bytes > 140_000_000_000);
        assert!(small.projection.notes[0].starts_with("does not fit"));
        let big = get("inf2.48xlarge");
        assert!(big.projection.fits);
        assert_eq!(big.projection.tp, 24);
        assert!(big.max_batch_that_fits >= 1);
    }

    #[test]
    fn projection_is_consistent() {
        let profiles = vec![profile::load(&root().join("profiles"), "inf2-profile").unwrap()];
        let mut r = req(100, 200);
        r.instance = Some("inf2.48xlarge".into());
        r.batch = 4;
        let p = &project_profiles(&card("llama-3.1-8b"), &profiles, &r).unwrap()[0];
        let x = &p.projection;
        assert!((x.e2e_ms - (x.ttft_ms + 199.0 * x.tpot_ms)).abs() < 1e-6);
        assert!((x.output_tokens_per_s - 4.0 * 200.0 / (x.e2e_ms / 1e3)).abs() < 1e-6);
        let want = 12.98127 / 3600.0 / x.output_tokens_per_s * 1e6;
        assert!((x.cost_usd_per_million_output_tokens.unwrap() - want).abs() < 1e-9);
        assert_eq!(p.padded_input_len, 128);
        assert!(x.calibration_mape.is_some());
        assert!(x.energy_kwh_per_million_tokens.is_none());
        assert!(x.sources.iter().any(|s| s.contains("inf2_instances.js")));
    }

    #[test]
    fn intervals_by_hand_on_inf2() {
        // inf2-profile.toml [calibration]: leave-one-source-out TTFT 0.3456, TPOT 0.4088;
        // leave-one-model-out TTFT 0.2482, TPOT 0.08324. The larger of each: factors 1.3456
        // and 1.4088; squared on an instance the points did not run on.
        let profiles = vec![profile::load(&root().join("profiles"), "inf2-profile").unwrap()];
        let mut r = req(100, 200);
        r.batch = 4;
        let rows = project_profiles(&card("llama-3.1-8b"), &profiles, &r).unwrap();
        let get = |n: &str| rows.iter().find(|x| x.projection.instance == n).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
        for (inst, ft, fp, price) in [
            ("inf2.48xlarge", 1.3456, 1.4088, 12.98127),
            ("inf2.xlarge", 1.3456 * 1.3456, 1.4088 * 1.4088, 0.7582),
        ] {
            let p = get(inst);
            let (x, i) = (&p.projection, &p.projection.intervals);
            assert!(close(i.ttft_ms_low.unwrap(), x.ttft_ms / ft), "{inst}");
            assert!(close(i.ttft_ms_high.unwrap(), x.ttft_ms * ft), "{inst}");
            assert!(close(i.tpot_ms_low.unwrap(), x.tpot_ms / fp), "{inst}");
            assert!(close(i.tpot_ms_high.unwrap(), x.tpot_ms * fp), "{inst}");
            let e2e_hi = x.ttft_ms * ft + 199.0 * x.tpot_ms * fp;
            let e2e_lo = x.ttft_ms / ft + 199.0 * x.tpot_ms / fp;
            assert!(close(i.e2e_ms_high.unwrap(), e2e_hi), "{inst}");
            let out_lo = 4.0 * 200.0 / (e2e_hi / 1e3);
            assert!(close(i.output_tokens_per_s_low.unwrap(), out_lo), "{inst}");
            let total_hi = 4.0 * 300.0 / (e2e_lo / 1e3);
            assert!(
                close(p.total_tokens_per_s_high.unwrap(), total_hi),
                "{inst}"
            );
            // Cost is highest where throughput is lowest.
            let cost_hi = price / 3600.0 / out_lo * 1e6;
            let got = i.cost_usd_per_million_output_tokens_high.unwrap();
            assert!(close(got, cost_hi), "{inst}: {got} {cost_hi}");
            let cost_lo = price / 3600.0 / total_hi * 1e6;
            assert!(
                close(i.cost_usd_per_million_tokens_low.unwrap(), cost_lo),
                "{inst}"
            );
        }
        assert!(get("inf2.xlarge")
            .projection
            .intervals
            .interval_basis
            .as_deref()
            .unwrap()
            .contains("outside the calibrated runs"));
        // An assumed profile: a factor 2.3 either way on every metric.
        let h200 = vec![profile::load(&root().join("profiles"), "h200-profile").unwrap()];
        let p = &project_profiles(&card("llama-3.1-8b"), &h200, &req(128, 128)).unwrap()[0];
        let x = &p.projection;
        assert!(close(x.intervals.ttft_ms_high.unwrap(), x.ttft_ms * 2.3));
        assert!(close(x.intervals.tpot_ms_low.unwrap(), x.tpot_ms / 2.3));
    }

    #[test]
    fn gpu_projection_has_energy_and_natural_tp() {
        let profiles = vec![
            profile::load(&root().join("profiles"), "h200-profile").unwrap(),
            profile::load(&root().join("profiles"), "h100-profile").unwrap(),
        ];
        let rows = project_profiles(&card("llama-3.1-8b"), &profiles, &req(128, 128)).unwrap();
        for p in &rows {
            assert_eq!(p.projection.tp, 8);
            assert!(p.projection.energy_kwh_per_million_tokens.unwrap() > 0.0);
        }
        // An assumed GPU profile has no calibration error; the fitted H100 has its fit's.
        let mape = |name: &str| {
            rows.iter()
                .find(|p| p.projection.profile == name)
                .unwrap()
                .projection
                .calibration_mape
        };
        assert!(mape("h200-profile").is_none());
        assert!(mape("h100-profile").is_some());
    }

    #[test]
    fn host_profile_projects_without_price() {
        let h = profile::host_profile(2e11, 2e10, 64 << 30, "test cpu");
        let r = req(16, 8);
        let p = project_host(
            &card("llama-3.2-1b"),
            &h,
            1,
            r.input_len,
            r.output_len,
            r.dtype,
        );
        let x = &p.projection;
        assert!(x.fits && x.cost_usd_per_million_tokens.is_none());
        // Decode is bandwidth-bound: ~2.5 GB of bf16 weights at 20 GB/s is ~0.12 s.
        assert!(x.tpot_ms > 100.0 && x.tpot_ms < 150.0, "{}", x.tpot_ms);
        assert!(x.notes.iter().any(|n| n.starts_with("host profile")));
    }

    #[test]
    fn bad_requests_are_errors() {
        let profiles = vec![profile::load(&root().join("profiles"), "inf2-profile").unwrap()];
        let mut r = req(128, 128);
        r.instance = Some("p5.48xlarge".into());
        let e = project_profiles(&card("llama-3.1-8b"), &profiles, &r)
            .unwrap_err()
            .to_string();
        assert!(e.contains("inf2.48xlarge"), "{e}");
        r.instance = Some("inf2.48xlarge".into());
        r.tp = Some(32);
        assert!(project_profiles(&card("llama-3.1-8b"), &profiles, &r).is_err());
    }
}
