//! What a run produces, shared by the code that measures (`measure`, `runner`) and the code
//! that reports (`report`): the run's [`Environment`] and [`Workload`], one
//! [`RequestSample`] per finished request, and the samples file's header and end lines.
//! Types only: computing, writing and reading them live in `measure` and `report`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The machine, software and model a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Environment {
    /// CPU model name (from `/proc/cpuinfo` on Linux).
    pub cpu_model: String,
    /// Logical CPU cores of the machine.
    pub cores: u32,
    /// Intra-op threads libtorch was told to use.
    pub threads: u32,
    /// `cpu` or `cuda`.
    pub run_on: String,
    /// Name of the device that ran the model (the CPU model, or the GPU name).
    pub device_name: String,
    /// Dtype of activations, norms and the KV cache (`f32`, `bf16`, `f16`).
    pub dtype: String,
    /// How the weights were stored while running (`--weights-dtype`: `f32`, `bf16`, `f16`,
    /// `int8`, `int4`).
    pub weights_dtype: String,
    /// `--matmul-precision`: `highest` (IEEE f32 products) or `high` (prompts' f32 products
    /// as three bf16 products). Absent in reports of earlier versions.
    #[serde(default)]
    pub matmul_precision: Option<String>,
    /// `--kernels`: `libtorch`, or `custom: …` naming the custom kernels that ran (MKL
    /// routines that passed their start-up check, the fused one-token step) and why any
    /// other did not. Absent in reports of earlier versions.
    #[serde(default)]
    pub kernels: Option<String>,
    pub tch_version: String,
    pub torch_version: String,
    pub profiler_version: String,
    /// Git commit the profiler was built from; `None` outside a git checkout.
    pub git_commit: Option<String>,
    /// Model card name, or the path given to `--model`.
    pub model: String,
    /// `gguf`, `safetensors` or `synthetic` (random weights: timings only, no real text).
    pub weights_kind: String,
    /// SHA-256 of the weights file; `None` for synthetic weights.
    pub weights_sha256: Option<String>,
    /// Bytes of the linear layers' weights as stored (codes and scales included): what a
    /// decode step reads at least once. Absent in reports of earlier versions.
    #[serde(default)]
    pub weights_bytes: Option<u64>,
    /// The command line, as typed (arguments shell-quoted where needed).
    pub command_line: String,
    /// Start of the run, RFC 3339 UTC (see [`crate::measure::rfc3339::format_utc`]).
    pub started_at: String,
}

/// What the run was asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Workload {
    /// Where prompts came from, e.g. `--input-len 128 (shipped corpus)` or `--workload w.jsonl`.
    pub prompt_source: String,
    /// Prompt length in tokens when fixed by `--input-len`; `None` for free-text prompts.
    pub input_len: Option<u32>,
    /// Tokens to generate per request (the default for workload lines that set none).
    pub output_len: u32,
    /// Sequences decoded together.
    pub batch: u32,
    /// Requests asked (`--requests`); `None` when the run was bounded by `--duration`.
    pub requests: Option<u64>,
    /// Duration asked (`--duration`), seconds; `None` when bounded by `--requests`.
    pub duration_s: Option<f64>,
    /// Warm-up requests run first and not counted.
    pub warmup: u32,
    pub seed: i64,
    /// Whether generation ignored end-of-sequence tokens (exact output lengths).
    pub ignore_eos: bool,
}

/// Version of the samples-file layout, written in its header line.
pub const SAMPLES_SCHEMA_VERSION: u32 = 1;

/// What one finished request measured. Times are milliseconds of wall-clock time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSample {
    /// Position of the request among the counted requests (0-based; warm-up not counted).
    pub index: u64,
    /// When its end-to-end span began, in ms after the first counted request began.
    pub start_offset_ms: f64,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Time to turn the prompt text into tokens (not part of TTFT or e2e).
    pub tokenize_ms: f64,
    /// Time to first token: prefill plus the first sampled token. `None` only for a request
    /// that failed before its first token.
    pub ttft_ms: Option<f64>,
    /// End-to-end latency: from the prompt tokens being submitted to the last token.
    pub e2e_ms: f64,
    /// Time per output token, see [`RequestSample::tpot`]; `None` when fewer than 2 tokens.
    pub tpot_ms: Option<f64>,
    /// Wall time of each decode step after the first token (one step per further token).
    pub decode_step_ms: Vec<f64>,
    /// Number of sequences decoded together with this one (rows of the batch, itself included).
    pub batch: u32,
    /// Whether the request finished normally.
    #[serde(flatten)]
    pub status: SampleStatus,
}

/// Outcome of a request: serialised as `"status":"ok"` or `"status":"error","message":".."`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum SampleStatus {
    Ok,
    Error { message: String },
}

impl RequestSample {
    /// TPOT = (e2e − TTFT) / (output tokens − 1), the usual definition (e.g. NVIDIA NIM
    /// "LLM Inference Benchmarking: Fundamental Concepts", inter-token latency); `None` when
    /// fewer than two tokens were produced, where it is undefined.
    pub fn tpot(e2e_ms: f64, ttft_ms: f64, output_tokens: u64) -> Option<f64> {
        (output_tokens >= 2).then(|| (e2e_ms - ttft_ms) / (output_tokens - 1) as f64)
    }

    /// Whether the request finished normally.
    pub fn is_ok(&self) -> bool {
        self.status == SampleStatus::Ok
    }

    /// Checks the invariants a report relies on; the error names the offending field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let times = [
            ("start_offset_ms", Some(self.start_offset_ms)),
            ("tokenize_ms", Some(self.tokenize_ms)),
            ("ttft_ms", self.ttft_ms),
            ("e2e_ms", Some(self.e2e_ms)),
            ("tpot_ms", self.tpot_ms),
        ];
        for (field, value) in times {
            if let Some(v) = value {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(format!("field `{field}` is {v}, expected a time ≥ 0"));
                }
            }
        }
        if let Some(v) = self
            .decode_step_ms
            .iter()
            .find(|v| !(v.is_finite() && **v >= 0.0))
        {
            return Err(format!(
                "field `decode_step_ms` holds {v}, expected times ≥ 0"
            ));
        }
        if self.batch == 0 {
            return Err("field `batch` is 0, expected at least 1".into());
        }
        if self.is_ok() {
            let Some(ttft) = self.ttft_ms else {
                return Err("field `ttft_ms` is null in an ok sample, expected a time".into());
            };
            if self.e2e_ms < ttft {
                return Err(format!(
                    "field `e2e_ms` is {}, expected at least `ttft_ms` ({ttft})",
                    self.e2e_ms
                ));
            }
            // The counts and times of one request must tell one story: a step per token
            // after the first, e2e = TTFT + the steps, TPOT from them.
            let n = self.output_tokens;
            if n == 0 {
                return Err(
                    "field `output_tokens` is 0 in an ok sample, expected at least 1".into(),
                );
            }
            if self.decode_step_ms.len() as u64 != n - 1 {
                return Err(format!(
                    "field `decode_step_ms` holds {} steps, expected {} (one per output token after the first)",
                    self.decode_step_ms.len(),
                    n - 1
                ));
            }
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0);
            let sum: f64 = ttft + self.decode_step_ms.iter().sum::<f64>();
            if !close(self.e2e_ms, sum) {
                return Err(format!(
                    "field `e2e_ms` is {}, expected `ttft_ms` plus the decode steps ({sum})",
                    self.e2e_ms
                ));
            }
            match (self.tpot_ms, Self::tpot(self.e2e_ms, ttft, n)) {
                (None, None) => {}
                (Some(t), Some(want)) if close(t, want) => {}
                (t, want) => {
                    return Err(format!(
                        "field `tpot_ms` is {t:?}, expected {want:?}: (e2e − TTFT) / (output tokens − 1), null below 2 tokens"
                    ))
                }
            }
        }
        Ok(())
    }
}

/// First line of a samples file: what ran and on what, so the report can be rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplesHeader {
    pub schema_version: u32,
    pub environment: Environment,
    pub workload: Workload,
}

/// Facts known only when a run ends (last line of a samples file, absent after `kill -9`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    /// Peak resident set size of the process, bytes (`None` where unknown).
    pub peak_rss_bytes: Option<u64>,
    /// Peak CUDA memory allocated by the caching allocator, bytes (`None` off CUDA).
    pub cuda_peak_allocated_bytes: Option<u64>,
    /// The run was stopped (Ctrl-C, SIGTERM) before it did all that was asked.
    pub interrupted: bool,
    /// Warnings raised while running (the statistical ones are recomputed from samples).
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn environment() -> Environment {
        Environment {
            cpu_model: "Test CPU".into(),
            cores: 2,
            threads: 2,
            run_on: "cpu".into(),
            device_name: "Test CPU".into(),
            dtype: "f32".into(),
            weights_dtype: "q8_0".into(),
            tch_version: "0.24.0".into(),
            torch_version: "2.11.0".into(),
            profiler_version: "0.1.0".into(),
            git_commit: Some("c3c4a10".into()),
            model: "tiny-llama".into(),
            weights_kind: "gguf".into(),
            weights_sha256: None,
            weights_bytes: None,
            matmul_precision: Some("highest".into()),
            kernels: Some("libtorch".into()),
            command_line: "profiler run --model tiny-llama --device inf2-profile".into(),
            started_at: "2024-05-01T12:44:56Z".into(),
        }
    }

    pub(crate) fn workload() -> Workload {
        Workload {
            prompt_source: "--input-len 16 (shipped corpus)".into(),
            input_len: Some(16),
            output_len: 8,
            batch: 1,
            requests: Some(4),
            duration_s: None,
            warmup: 1,
            seed: 0,
            ignore_eos: true,
        }
    }
}
