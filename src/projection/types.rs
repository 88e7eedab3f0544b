//! The projection record: one target (profile, instance, TP degree, batch, lengths) and
//! what the latency model projects for it. Its JSON form is a documented contract.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A projected (never measured) latency, throughput and cost for one deployment target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Projection {
    /// Profile name, e.g. `inf2-profile`.
    pub profile: String,
    /// Instance type, e.g. `inf2.48xlarge`.
    pub instance: String,
    /// Tensor-parallel degree (NeuronCores or GPUs the model is sharded over).
    pub tp: u32,
    pub batch: u32,
    pub input_len: u32,
    pub output_len: u32,
    /// Storage dtype of the weights (`bf16`, `fp16`, `fp8`, `int8`, ...).
    pub weights_dtype: String,
    /// Whether weights + KV cache fit in the accelerator memory of the TP group.
    pub fits: bool,
    /// Memory the model needs on the TP group, bytes (weights + KV cache at this batch).
    pub memory_required_bytes: u64,
    /// Usable accelerator memory of the TP group, bytes.
    pub memory_available_bytes: u64,
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    pub e2e_ms: f64,
    pub output_tokens_per_s: f64,
    /// USD per 1M output tokens; `None` (JSON `null`) where the instance has no price of
    /// the kind asked for, or for the local host.
    pub cost_usd_per_million_output_tokens: Option<f64>,
    /// USD per 1M tokens (prompt + output); `None` as above.
    pub cost_usd_per_million_tokens: Option<f64>,
    /// `None` where the profile has no published TDP.
    pub energy_kwh_per_million_tokens: Option<f64>,
    /// The interval of each projected number (`X_low`, `X_high` beside `X` in JSON).
    #[serde(flatten)]
    pub intervals: Intervals,
    /// Mean absolute percentage error of the profile on its calibration points
    /// (`None` where the profile has no calibration points).
    pub calibration_mape: Option<CalibrationError>,
    /// Addresses (with dates) of the sources behind the numbers used.
    pub sources: Vec<String>,
    /// Assumptions or caveats worth reading next to the numbers.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Calibration error of a profile, per metric, as fractions (0.1 = 10%).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CalibrationError {
    pub ttft: f64,
    pub tpot: f64,
    /// Number of calibration points the error was measured on.
    pub points: u32,
}

/// A held-out error (leave-one-source-out or leave-one-model-out): the error of points
/// projected by a fit that did not see their group, or why it could not be computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeldOut {
    /// `None` where it cannot be computed (see `reason`).
    pub error: Option<CalibrationError>,
    /// Number of groups (sources or models) among the points.
    pub groups: u32,
    /// Why there is no error (one group only, too few points left to fit ...).
    pub reason: Option<String>,
}

impl HeldOut {
    /// An error that could not be computed, and why.
    pub fn none(groups: u32, reason: impl Into<String>) -> Self {
        Self {
            error: None,
            groups,
            reason: Some(reason.into()),
        }
    }
}

/// The interval of each projected number of a [`Projection`]: the measured value is expected
/// within `[X_low, X_high]` (see [`super::interval`] for how wide and why). `None` where `X`
/// is unknown (no price, no TDP) and in reports written before intervals existed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Intervals {
    #[serde(default)]
    pub ttft_ms_low: Option<f64>,
    #[serde(default)]
    pub ttft_ms_high: Option<f64>,
    #[serde(default)]
    pub tpot_ms_low: Option<f64>,
    #[serde(default)]
    pub tpot_ms_high: Option<f64>,
    #[serde(default)]
    pub e2e_ms_low: Option<f64>,
    #[serde(default)]
    pub e2e_ms_high: Option<f64>,
    #[serde(default)]
    pub output_tokens_per_s_low: Option<f64>,
    #[serde(default)]
    pub output_tokens_per_s_high: Option<f64>,
    #[serde(default)]
    pub cost_usd_per_million_output_tokens_low: Option<f64>,
    #[serde(default)]
    pub cost_usd_per_million_output_tokens_high: Option<f64>,
    #[serde(default)]
    pub cost_usd_per_million_tokens_low: Option<f64>,
    #[serde(default)]
    pub cost_usd_per_million_tokens_high: Option<f64>,
    #[serde(default)]
    pub energy_kwh_per_million_tokens_low: Option<f64>,
    #[serde(default)]
    pub energy_kwh_per_million_tokens_high: Option<f64>,
    /// Where the interval's width comes from (validation error, widening, assumption).
    #[serde(default)]
    pub interval_basis: Option<String>,
}

impl Intervals {
    /// `(X_low, X_high)` of the cost per 1M tokens, when both are known.
    pub fn cost(&self) -> Option<(f64, f64)> {
        Some((
            self.cost_usd_per_million_tokens_low?,
            self.cost_usd_per_million_tokens_high?,
        ))
    }
}
