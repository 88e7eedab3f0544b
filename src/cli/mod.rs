//! Command-line layer: parses arguments, calls the library, prints results.

pub mod accuracy;
mod generate;
pub mod project;
mod report;
mod run;
mod serve;

use crate::engine::{DType, EngineOptions, MatmulPrecision, RunOn};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to stdout; a closed pipe or a full disk is an error, not a panic.
pub(crate) fn write_out(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .context("cannot write to stdout")
}

/// Writes a report to `--out` (when given) and to stdout. Both are tried, so that a report
/// that cannot be written to one still reaches the other; the first failure is returned.
pub(crate) fn emit_report(text: &str, out: Option<&Path>) -> Result<()> {
    let file = out.map(|p| {
        std::fs::write(p, text)
            .with_context(|| format!("cannot write the report to {}", p.display()))
    });
    let stdout = write_out(text.as_bytes());
    file.transpose()?;
    stdout
}

/// Exit status asked for by a command that finished its output (e.g. 130 after Ctrl-C).
#[derive(Debug)]
pub struct Exit(pub i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

#[derive(Parser, Debug)]
#[command(
    name = "profiler",
    version,
    about = "Measure real LLM inference through libtorch and project latency and cost per 1M tokens on AWS Neuron and GPU instances"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure real inference (TTFT, TPOT, e2e, tokens/s) and project it onto devices.
    Run(Box<run::RunArgs>),
    /// Generate text with a model (real inference).
    Generate(generate::GenerateArgs),
    /// Rebuild a run's report from its samples file.
    Report(report::ReportArgs),
    /// Project latency and cost of a model onto instance types (no inference).
    Project(project::ProjectArgs),
    /// Compare instance types side by side, sorted by cost per 1M tokens.
    Compare(project::CompareArgs),
    /// Fit a profile's latency-model parameters to measured points.
    Calibrate(project::CalibrateArgs),
    /// List the device profiles.
    Devices,
    /// List the model cards.
    Models,
    /// Serve the model over an OpenAI-compatible HTTP API, with continuous batching.
    Serve(Box<serve::ServeArgs>),
    /// Write a model's tokenizer as a Hugging Face tokenizer folder (for HTTP load
    /// generators that count tokens themselves).
    ExportTokenizer(serve::ExportTokenizerArgs),
    /// Compare a weights dtype (int8, int4, bf16 ...) with the f32 reference on prompts.
    Accuracy(accuracy::AccuracyArgs),
}

/// Model and execution options shared by `generate` and `run`.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Model card name (`profiler models`), a .gguf file, or a Hugging Face directory.
    #[arg(long, default_value = "llama")]
    pub model: String,
    /// Where inference runs.
    #[arg(long, value_enum, default_value = "auto")]
    pub run_on: RunOn,
    /// How weights are stored while the model runs: f32, bf16, f16 (activations alike), or
    /// int8 / int4 weight-only quantisation with bf16 activations (CPU).
    #[arg(
        long = "weights-dtype",
        visible_alias = "dtype",
        value_enum,
        default_value = "f32"
    )]
    pub dtype: DType,
    /// f32 matrix products: `highest` (IEEE f32) or `high` (prompts as three bf16
    /// products accumulated in f32, as PyTorch's "high" permits: faster on CPUs with bf16
    /// matrix instructions, about 16 significant bits per factor).
    #[arg(long, value_enum, default_value = "highest")]
    pub matmul_precision: MatmulPrecision,
    /// libtorch threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed for sampling and for synthetic weights.
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
}

impl EngineArgs {
    fn options(&self) -> EngineOptions {
        EngineOptions {
            model: self.model.clone(),
            run_on: self.run_on,
            dtype: self.dtype,
            matmul_precision: self.matmul_precision,
            threads: self.threads,
            seed: self.seed,
        }
    }
}

/// Parses the command line and runs the command.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(a) => run::run(*a),
        Command::Generate(a) => generate::run(a),
        Command::Report(a) => report::run(a),
        Command::Project(a) => project::project(a),
        Command::Compare(a) => project::compare(a),
        Command::Calibrate(a) => project::calibrate(a),
        Command::Devices => project::devices(),
        Command::Models => project::models(),
        Command::Accuracy(a) => accuracy::run(a),
        Command::Serve(a) => serve::run(*a),
        Command::ExportTokenizer(a) => serve::export_tokenizer(a),
    }
}
