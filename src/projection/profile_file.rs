//! Serde mirror of a device profile file (`profiles/NAME.toml`), exactly as written.
//! Every number is a `{ value = …, source = "key" }` pair whose key names an entry of the
//! file's `[sources]` table (an address and its date). [`super::profile`] validates it.

use anyhow::Result;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A number and the key of its source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Num {
    pub value: f64,
    pub source: String,
}

/// A quantity with a unit (`GB`, `GiB`, `GB/s`, `GiB/s`, `TB/s`) and the key of its source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qty {
    pub value: f64,
    pub unit: String,
    pub source: String,
}

/// A list of integers and the key of its source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntList {
    pub value: Vec<i64>,
    pub source: String,
}

/// A list of names with its source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrList {
    pub value: Vec<String>,
    pub source: String,
}

/// `[chip]`: one accelerator chip.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChipFile {
    pub name: String,
    pub cores: Num,
    pub bf16_tflops: Num,
    #[serde(default)]
    pub fp8_tflops: Option<Num>,
    #[serde(default)]
    pub int8_tops: Option<Num>,
    #[serde(default)]
    pub fp32_tflops: Option<Num>,
    pub memory: Qty,
    pub memory_bandwidth: Qty,
    #[serde(default)]
    pub interconnect_bandwidth: Option<Qty>,
    #[serde(default)]
    pub tdp_watts: Option<Num>,
    /// Width of the matrix engine's tile (Neuron: 128); see [`super::profile::Chip`].
    #[serde(default)]
    pub matmul_tile_width: Option<Num>,
    #[serde(default)]
    pub note: Option<String>,
}

/// `[runtime.static_shapes]`: Neuron-style compiled shapes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticShapesFile {
    pub bucket_min: Num,
    pub seq_len_multiple: Num,
}

/// `[runtime]`: how the software stack runs the model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFile {
    pub tp_unit: String,
    pub tp_units_per_chip: Num,
    pub tp_degrees: IntList,
    pub usable_memory_fraction: Num,
    pub prefill_attention: String,
    /// Checkpoint quantisation methods (`quant_method`) the runtime cannot run, dequantized
    /// to the serving dtype at load.
    #[serde(default)]
    pub dequantized_formats: Option<StrList>,
    /// Tokens per block of the mixture-of-experts prefill kernel (Neuron blockwise matmul).
    #[serde(default)]
    pub moe_block_size: Option<Num>,
    #[serde(default)]
    pub static_shapes: Option<StaticShapesFile>,
}

/// `[latency]`: the parameters of the latency model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyFile {
    pub bandwidth_efficiency: Num,
    pub compute_efficiency: Num,
    pub attention_efficiency: Num,
    pub step_overhead_ms: Num,
    pub prefill_overhead_ms: Num,
    pub collective_latency_us: Num,
    pub decode_seq_ms: Num,
}

/// `[calibration]`: whether the latency parameters were fitted, on what, and how well.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationFile {
    pub status: String,
    pub note: String,
    #[serde(default)]
    pub points: Option<String>,
    #[serde(default)]
    pub fitted: Option<Vec<String>>,
    #[serde(default)]
    pub ttft_mape: Option<f64>,
    #[serde(default)]
    pub tpot_mape: Option<f64>,
    #[serde(default)]
    pub point_count: Option<i64>,
    #[serde(default)]
    pub leave_one_source_out: Option<HeldOutFile>,
    #[serde(default)]
    pub leave_one_model_out: Option<HeldOutFile>,
    /// The measurements a profile written by `calibrate --from` was fitted on (instead of
    /// a `points` file).
    #[serde(default)]
    pub measurements: Option<Vec<MeasurementFile>>,
}

/// `[[calibration.measurements]]`: one benchmark of a user's result file, as `calibrate
/// --from --write-profile` records it: where it came from (file, sha256, tool, date), what
/// ran (model, instance, TP, dtype, load, lengths), and measured and fitted latencies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementFile {
    pub file: String,
    pub sha256: String,
    pub tool: String,
    pub label: String,
    #[serde(default)]
    pub date: Option<String>,
    pub model: String,
    pub instance: String,
    pub tp: i64,
    pub weights_dtype: String,
    pub load: String,
    /// Sequences in flight: the static batch or the concurrency (absent for an open-loop
    /// rate, whose batch the file does not fix).
    #[serde(default)]
    pub in_flight: Option<i64>,
    pub input_tokens: f64,
    pub output_tokens: f64,
    pub measured_ttft_ms: f64,
    pub measured_tpot_ms: f64,
    pub projected_ttft_ms: f64,
    pub projected_tpot_ms: f64,
}

/// `[calibration].leave_one_source_out` / `leave_one_model_out`: a held-out error
/// (`ttft_mape`, `tpot_mape`, `point_count`) or the `reason` there is none; `groups` is the
/// number of sources or models among the points.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldOutFile {
    pub groups: i64,
    #[serde(default)]
    pub ttft_mape: Option<f64>,
    #[serde(default)]
    pub tpot_mape: Option<f64>,
    #[serde(default)]
    pub point_count: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// An hourly price with its region, date and source key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceFile {
    pub usd_per_hour: f64,
    pub region: String,
    pub date: String,
    pub source: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// `[[instances]]`: one instance type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceFile {
    pub name: String,
    pub accelerators: Num,
    pub vcpus: Num,
    pub host_memory: Qty,
    #[serde(default)]
    pub on_demand: Option<PriceFile>,
    #[serde(default)]
    pub reserved: Option<PriceFile>,
    #[serde(default)]
    pub capacity_block: Option<PriceFile>,
    #[serde(default)]
    pub note: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFile {
    pub name: String,
    pub description: String,
    pub kind: String,
    pub sources: BTreeMap<String, String>,
    pub chip: ChipFile,
    pub runtime: RuntimeFile,
    pub latency: LatencyFile,
    pub calibration: CalibrationFile,
    pub instances: Vec<InstanceFile>,
}

/// Parses the text; a syntax error, unknown key or missing field becomes one line naming
/// the file, the line and the key.
pub fn parse(text: &str, what: &str) -> Result<ProfileFile> {
    toml::from_str(text).map_err(|e| crate::toml_error::describe(text, what, &e))
}
