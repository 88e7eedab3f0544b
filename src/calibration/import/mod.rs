//! Result files of benchmark tools, detected by content and read into [`Measurement`]s:
//! one per benchmark a file holds (a GuideLLM sweep holds several). What a file does not
//! say (instance, TP, compiled shapes) is left `None` for the command's flags to fill.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// The tool (and format) a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// `vllm bench serve --save-result` (and `benchmarks/benchmark_serving.py`) JSON.
    VllmBenchServe,
    /// GuideLLM's JSON report (`--output-path report.json`).
    GuideLlm,
    /// AIPerf's `profile_export_aiperf.json` summary.
    AiPerf,
    /// GenAI-Perf's `profile_export_genai_perf.json` summary.
    GenAiPerf,
    /// LLMPerf's `*_summary.json`.
    LlmPerf,
    /// NxD Inference's `benchmark_report.json` (`inference_demo --benchmark`).
    NxdInference,
    /// This tool's `run --format json` report.
    ProfilerReport,
    /// This tool's samples file (`run --samples` or `serve --samples`, JSON lines).
    ProfilerSamples,
}

/// Which statistic of the per-request distribution a figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stat {
    Median,
    Mean,
}

/// A measured latency and which statistic it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Observed {
    pub ms: f64,
    pub stat: Stat,
}

/// How the requests were offered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum MeasuredLoad {
    /// A static batch: `batch` sequences prefilled together and decoded in lockstep (NxD
    /// Inference's benchmark, this tool's `run`).
    StaticBatch { batch: u32 },
    /// Closed loop: `concurrency` requests in flight, a new one sent when one finishes (all
    /// sent at once where the file says the rate was unlimited and no cap on concurrency:
    /// then `concurrency` is the number of requests).
    Concurrency { concurrency: u32 },
    /// Open loop at `rate` requests/s, inter-arrival gaps gamma-distributed with shape
    /// `burstiness` (1: Poisson, vLLM's `--burstiness` convention), or evenly spaced
    /// (`None`).
    Rate { rate: f64, burstiness: Option<f64> },
    /// Arrivals at the recorded times of `per_request` (a samples file).
    Trace,
}

/// One request's lengths (tokens) and its send time from the first request (s) where the
/// file records them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RequestShape {
    pub prompt: u32,
    pub output: u32,
    pub start_s: Option<f64>,
}

/// Settings of the deployment the file states (each `None` where it does not).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileSettings {
    pub instance: Option<String>,
    pub tp: Option<u32>,
    /// Compiled batch (Neuron) or `--max-num-seqs` (vLLM).
    pub max_num_seqs: Option<u32>,
    pub seq_len: Option<u32>,
    /// Weights dtype as the file names it (`bf16`, `float16`, …).
    pub dtype: Option<String>,
}

/// One benchmark read from a result file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    /// The file, as given on the command line.
    pub file: String,
    pub tool: Tool,
    /// Which benchmark of the file, in words (`benchmark 2 of 3: poisson at 0.5 req/s`).
    pub label: String,
    /// The model as the file names it (a Hugging Face id or a served name).
    pub model: Option<String>,
    pub load: MeasuredLoad,
    /// Mean prompt and output tokens per request.
    pub input_tokens: f64,
    pub output_tokens: f64,
    /// Successful requests measured.
    pub requests: Option<u64>,
    /// Per-request lengths (and send times) where the file has them; empty otherwise.
    pub per_request: Vec<RequestShape>,
    /// Time to first token.
    pub ttft: Observed,
    /// Time per output token after the first (the inter-token latency of a request,
    /// averaged over its tokens).
    pub tpot: Observed,
    /// Output tokens per second over the benchmark, where the file gives it.
    pub output_tokens_per_s: Option<f64>,
    /// The date the benchmark ran (`YYYY-MM-DD`), where the file says.
    pub date: Option<String>,
    pub settings: FileSettings,
    /// Corrections made and figures missing, in words (e.g. LLMPerf's inter-token latency
    /// includes the first token, so TPOT is derived from its end-to-end latency).
    pub notes: Vec<String>,
}

/// Reads every benchmark of one result file, detecting its format by content. An unknown
/// or malformed file is one line naming the file and what was expected.
pub fn read(path: &Path) -> Result<Vec<Measurement>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// [`read`] on text; `file` names it in errors and in the measurements.
pub fn parse(text: &str, file: &str) -> Result<Vec<Measurement>> {
    let _ = (text, file);
    anyhow::bail!("{file}: reading result files is not written yet")
}
