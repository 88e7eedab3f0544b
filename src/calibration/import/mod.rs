//! Result files of benchmark tools, detected by content and read into [`Measurement`]s:
//! one per benchmark a file holds (a GuideLLM sweep holds several). What a file does not
//! say (instance, TP, compiled shapes) is left `None` for the command's flags to fill.

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// The tool (and format) a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// `vllm bench serve --save-result` (and `benchmarks/benchmark_serving.py`) JSON.
    #[serde(rename = "vllm-bench-serve")]
    VllmBenchServe,
    /// GuideLLM's JSON report (`--output-path report.json`).
    #[serde(rename = "guidellm")]
    GuideLlm,
    /// AIPerf's `profile_export_aiperf.json` summary.
    #[serde(rename = "aiperf")]
    AiPerf,
    /// GenAI-Perf's `profile_export_genai_perf.json` summary.
    #[serde(rename = "genai-perf")]
    GenAiPerf,
    /// LLMPerf's `*_summary.json`.
    #[serde(rename = "llmperf")]
    LlmPerf,
    /// NxD Inference's `benchmark_report.json` (`inference_demo --benchmark`).
    #[serde(rename = "nxd-inference")]
    NxdInference,
    /// This tool's `run --format json` report.
    #[serde(rename = "profiler-report")]
    ProfilerReport,
    /// This tool's samples file (`run --samples` or `serve --samples`, JSON lines).
    #[serde(rename = "profiler-samples")]
    ProfilerSamples,
    /// A row of a calibration points CSV (`profiles/calibration/*.csv`).
    #[serde(rename = "points-csv")]
    PointsCsv,
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
    /// Weights dtype the file states, read with the file.
    pub dtype: Option<FileDtype>,
}

/// A weights dtype as a result file states it: read where the file is read, in the
/// spellings tools write (`bf16`, `float16`, `torch.bfloat16`, `f32` …).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FileDtype {
    /// One this project models.
    Known(crate::dtype::WeightsDtype),
    /// One it does not (a GGUF run's `q4_1`), kept as written: an error only where no
    /// `--weights-dtype` says what to project it at.
    Other(String),
}

impl FileDtype {
    /// Reads a file's dtype word.
    pub fn read(s: &str) -> Self {
        match crate::dtype::WeightsDtype::parse_file_spelling(s) {
            Some(d) => FileDtype::Known(d),
            None => FileDtype::Other(s.to_string()),
        }
    }
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
    let file = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {file}"))?;
    parse_bytes(&bytes, &file)
}

/// [`parse`] on the bytes of a file, refusing what is not UTF-8 text.
pub fn parse_bytes(bytes: &[u8], file: &str) -> Result<Vec<Measurement>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{file}: not UTF-8 text (byte {}); expected {EXPECTED}",
            e.valid_up_to()
        )
    })?;
    parse(text, file)
}

/// [`read`] on text; `file` names it in errors and in the measurements.
///
/// The format is told by content: one JSON document (vLLM, GuideLLM, AIPerf, GenAI-Perf,
/// LLMPerf, NxD Inference, this tool's report) or JSON lines (this tool's samples file,
/// AIPerf's per-request records, `vllm bench serve --append-result`). Python writes
/// `NaN` and `Infinity` for non-finite floats, which JSON lacks; they are read as numbers.
pub fn parse(text: &str, file: &str) -> Result<Vec<Measurement>> {
    if text.trim().is_empty() {
        anyhow::bail!("{file}: empty file; expected {EXPECTED}");
    }
    let result = match parse_json(text) {
        Ok(doc) => from_document(&doc, text, file),
        Err(whole) => from_lines(text, file).unwrap_or_else(|| {
            Err(format!(
                "not a JSON document ({whole}) nor JSON lines; expected {EXPECTED}"
            ))
        }),
    };
    // One line, whatever the file's own strings quoted in the message hold.
    let mut measurements = result.map_err(|e| {
        let e: String = e
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        anyhow::anyhow!("{file}: {e}")
    })?;
    for m in &mut measurements {
        if m.load == MeasuredLoad::Trace {
            // Replayed in order of sending.
            m.per_request.sort_by(|a, b| {
                a.start_s
                    .unwrap_or(0.0)
                    .total_cmp(&b.start_s.unwrap_or(0.0))
            });
        }
    }
    if measurements.is_empty() {
        anyhow::bail!("{file}: holds no benchmark");
    }
    Ok(measurements)
}

mod aiperf;
mod guidellm;
mod llmperf;
mod nxdi;
mod own;
mod vllm;

/// The formats and the keys that tell them, for the error on an unknown file.
const EXPECTED: &str = "a result file of vllm bench serve (median_ttft_ms, request_rate), \
GuideLLM (benchmarks), AIPerf or GenAI-Perf (time_to_first_token, input_config), \
LLMPerf (results_ttft_s_quantiles_p50), NxD Inference (context_encoding_model, \
token_generation_model), or this tool's run report (schema_version, workload) or samples \
file (JSON lines, a \"kind\":\"header\" line first)";

impl Measurement {
    /// What the file did not hold and the command must supply: `batch` (a static batch of
    /// size 0), `input_tokens` and `output_tokens` (0). Empty for every format but NxD
    /// Inference's report, which records latencies only.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.load == (MeasuredLoad::StaticBatch { batch: 0 }) {
            missing.push("batch");
        }
        if self.input_tokens == 0.0 {
            missing.push("input_tokens");
        }
        if self.output_tokens == 0.0 {
            missing.push("output_tokens");
        }
        missing
    }
}

/// One JSON document, with Python's `NaN` / `Infinity` / `-Infinity` read as strings (see
/// [`number`]). The error is serde's, position included.
fn parse_json(text: &str) -> std::result::Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(e) => match python_floats(text) {
            Some(fixed) => serde_json::from_str(&fixed).map_err(|_| e.to_string()),
            None => Err(e.to_string()),
        },
    }
}

/// `text` with Python's bare `NaN`, `Infinity` and `-Infinity` (outside strings) quoted,
/// or `None` when it holds none.
fn python_floats(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut changed = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push('"');
                out.push_str(t);
                out.push('"');
                rest = &rest[t.len()..];
                changed = true;
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    changed.then_some(out)
}

/// A whole-file JSON document, by its telltale keys.
fn from_document(
    doc: &Value,
    text: &str,
    file: &str,
) -> std::result::Result<Vec<Measurement>, String> {
    let Some(obj) = doc.as_object() else {
        return Err(format!(
            "a JSON {} at the top, expected an object: {EXPECTED}",
            kind_of(doc)
        ));
    };
    let has = |k: &str| obj.contains_key(k);
    if has("benchmarks") && (has("metadata") || has("config")) {
        guidellm::read(doc, file)
    } else if has("schema_version") && has("workload") && has("environment") {
        own::report(text, file)
    } else if has("time_to_first_token") && has("input_config") {
        aiperf::summary(doc, file)
    } else if obj.keys().any(|k| k.starts_with("results_ttft_s")) {
        llmperf::read(doc, file)
    } else if has("median_ttft_ms") || (has("backend") && has("request_rate")) {
        Ok(vec![vllm::read(doc, file, None)?])
    } else if nxdi::SUB_MODELS.iter().any(|k| has(k)) {
        nxdi::read(doc, file)
    } else {
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).take(6).collect();
        if obj.len() > keys.len() {
            keys.push("…");
        }
        Err(format!(
            "unknown JSON (keys {}); expected {EXPECTED}",
            keys.join(", ")
        ))
    }
}

/// A JSON-lines file, by its first line: `None` when that line is not a JSON object (the
/// caller then says the file is not JSON at all).
fn from_lines(text: &str, file: &str) -> Option<std::result::Result<Vec<Measurement>, String>> {
    let first = text.lines().find(|l| !l.trim().is_empty())?;
    let head = parse_json(first).ok()?;
    let head = head.as_object()?;
    Some(
        if head.get("kind").and_then(Value::as_str) == Some("header") {
            own::samples(text, file)
        } else if head.contains_key("metadata") && head.contains_key("metrics") {
            aiperf::records(text, file)
        } else if head.contains_key("median_ttft_ms") {
            vllm::appended(text, file)
        } else {
            Err(format!(
                "JSON lines of an unknown kind (line 1 has keys {}); expected {EXPECTED}",
                head.keys()
                    .take(6)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        },
    )
}

/// `null`, `true`, `a number`, … for messages.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The value at a dot-separated `path` (array elements by index), `None` where absent or
/// `null`.
fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = v;
    for key in path.split('.') {
        at = match at {
            Value::Object(m) => m.get(key)?,
            Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!at.is_null()).then_some(at)
}

/// A JSON number, or a string holding one (`"550"`, `"inf"`, Python's `"NaN"`).
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The number at `path`; the error names the field and what it holds.
fn number(v: &Value, path: &str) -> std::result::Result<f64, String> {
    opt_number(v, path)?.ok_or_else(|| format!("field {path} is missing"))
}

/// The number at `path`, `None` where absent or `null`.
fn opt_number(v: &Value, path: &str) -> std::result::Result<Option<f64>, String> {
    match field(v, path) {
        None => Ok(None),
        // GenAI-Perf writes an unset setting as "".
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(x) => as_number(x)
            .map(Some)
            .ok_or_else(|| format!("field {path} is {}, expected a number", short(x))),
    }
}

/// A latency at `path` in the file's unit, times `to_ms`: finite and above 0 (a median of
/// 0 is what tools write when nothing was measured, e.g. TTFT of a non-streamed run).
fn latency(v: &Value, path: &str, to_ms: f64) -> std::result::Result<f64, String> {
    let x = number(v, path)?;
    positive(x * to_ms).ok_or_else(|| {
        format!("field {path} is {x}, expected a latency above 0 (was it streamed?)")
    })
}

/// A mean token count at `path`: finite and at least 1.
fn tokens(v: &Value, path: &str) -> std::result::Result<f64, String> {
    let x = number(v, path)?;
    (x.is_finite() && x >= 1.0)
        .then_some(x)
        .ok_or_else(|| format!("field {path} is {x}, expected a token count of at least 1"))
}

/// A whole number at `path` of at least `min` (`16` and `16.0` alike).
fn whole(v: &Value, path: &str, min: u64) -> std::result::Result<u64, String> {
    let x = number(v, path)?;
    whole_of(x, min).ok_or_else(|| format!("field {path} is {x}, expected a whole number ≥ {min}"))
}

fn whole_of(x: f64, min: u64) -> Option<u64> {
    (x.is_finite() && x.fract() == 0.0 && x >= min as f64 && x < 1e15).then_some(x as u64)
}

/// A request rate at `path`: finite and above 0.
fn rate(v: &Value, path: &str) -> std::result::Result<f64, String> {
    let x = number(v, path)?;
    positive(x).ok_or_else(|| format!("field {path} is {x}, expected a rate above 0 requests/s"))
}

fn positive(x: f64) -> Option<f64> {
    (x.is_finite() && x > 0.0).then_some(x)
}

/// The string at `path`, where it is a non-empty string.
fn text_at(v: &Value, path: &str) -> Option<String> {
    field(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A value shortened for a one-line message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// The median of the finite values (the mean of the two middle ones for an even count, as
/// NumPy's `median`); `None` when there is none.
fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    crate::measure::stats::percentile_sorted(&sorted, 0.5)
}

/// The UTC date (`YYYY-MM-DD`) of a Unix time in seconds, where it is a plausible one.
fn date_of_unix(secs: f64) -> Option<String> {
    if !(secs.is_finite() && (0.0..1e11).contains(&secs)) {
        return None;
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs);
    Some(crate::measure::rfc3339::format_utc(t)[..10].to_string())
}

/// Send times relative to the earliest, in the order given.
fn relative(starts: &[f64]) -> Vec<f64> {
    let first = starts.iter().copied().fold(f64::INFINITY, f64::min);
    starts.iter().map(|s| s - first).collect()
}

/// `x` without trailing zeros, for labels (`0.5`, `4`).
fn num_label(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests;
