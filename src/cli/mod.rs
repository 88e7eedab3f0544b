//! Command-line layer: parses arguments, calls the library, prints results.

pub mod accuracy;
mod calibrate;
mod engine_handoff;
pub mod generate;
pub mod names;
pub mod project;
mod report;
pub mod run;
pub mod serve;
mod simulate;

use crate::inference::{Kernels, MatmulPrecision, RunOn, WeightsDtype};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to stdout; a closed pipe or a full disk is an error, not a panic.
pub fn write_out(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|_| out.flush())
        .context("cannot write to stdout")
}

/// Writes a report to `--out` (when given) and to stdout. Both are tried, so that a report
/// that cannot be written to one still reaches the other; the first failure is returned.
pub fn emit_report(text: &str, out: Option<&Path>) -> Result<()> {
    let file = out.map(|p| {
        std::fs::write(p, text)
            .with_context(|| format!("cannot write the report to {}", p.display()))
    });
    let stdout = write_out(text.as_bytes());
    file.transpose()?;
    stdout
}

/// Runs `command` as a process's main: a panic prints one line, an error prints the first
/// line of its chain (libtorch messages carry C++ backtraces after it), the settings the
/// library names in it named by their flags, and the process
/// exits with 0, 1, or the status an [`Exit`] asks for.
pub fn main_with(command: fn() -> Result<()>) {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let first = msg.lines().next().unwrap_or("").to_string();
        eprintln!("error: internal error: {first}");
    }));
    let code = match command() {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(code)) => *code,
            None => {
                let msg = names::Names::flags().error_text(&e);
                eprintln!("error: {}", msg.lines().next().unwrap_or(""));
                1
            }
        },
    };
    std::process::exit(code);
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
    bin_name = "profiler",
    version,
    about = "Measure real LLM inference through libtorch and project latency and cost per 1M tokens on AWS Neuron and GPU instances"
)]
#[doc(hidden)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
#[doc(hidden)]
pub enum Command {
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
    /// Simulate serving a request stream on one instance (continuous batching; no inference).
    Simulate(Box<simulate::SimulateArgs>),
    /// Capacity plan: the cheapest fleet of each instance type for a rate within SLOs.
    Plan(Box<simulate::PlanArgs>),
    /// Fit a profile's latency-model parameters to measured points, or to benchmark
    /// result files (`--from`) and write a new profile.
    Calibrate(calibrate::CalibrateArgs),
    /// List the device profiles (or, with --stale DAYS, their figures older than DAYS).
    Devices(project::DevicesArgs),
    /// List the model cards, or show one (`--show NAME|PATH`).
    Models(project::ModelsArgs),
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
    /// int8 / int4 weight-only quantisation with bf16 activations (CPU); fp8 is refused.
    #[arg(
        long = "weights-dtype",
        visible_alias = "dtype",
        value_parser = WeightsDtype::parse_run_flag,
        default_value = "f32"
    )]
    pub dtype: WeightsDtype,
    /// f32 matrix products: `highest` (IEEE f32) or `high` (prompts as three bf16
    /// products accumulated in f32, as PyTorch's "high" permits: faster on CPUs with bf16
    /// matrix instructions, about 16 significant bits per factor).
    #[arg(long, value_enum, default_value = "highest")]
    pub matmul_precision: MatmulPrecision,
    /// CPU kernels: `custom` (this project's MKL routines, each checked against libtorch at
    /// start, and the fused one-token step) or `libtorch` (its operators only).
    #[arg(long, value_enum, default_value = "custom")]
    pub kernels: Kernels,
    /// libtorch threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed for sampling and for synthetic weights.
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
}

impl EngineArgs {
    pub fn options(&self) -> crate::inference::EngineOptions {
        crate::inference::EngineOptions {
            model: self.model.clone(),
            run_on: self.run_on,
            dtype: self.dtype,
            matmul_precision: self.matmul_precision,
            kernels: self.kernels,
            threads: self.threads,
            seed: self.seed,
        }
    }
}

impl Command {
    /// Whether the command runs inference (and so needs libtorch).
    fn runs_inference(&self) -> bool {
        matches!(
            self,
            Command::Run(_)
                | Command::Generate(_)
                | Command::Accuracy(_)
                | Command::Serve(_)
                | Command::ExportTokenizer(_)
        )
    }
}

/// The `profiler` command: commands that run no inference run here without libtorch;
/// the others are handed to `profiler-engine` (see [`engine_handoff`]).
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    if cli.command.runs_inference() {
        return engine_handoff::exec();
    }
    run_core(cli.command)
}

/// Commands that need no tensor.
#[doc(hidden)]
pub fn run_core(command: Command) -> Result<()> {
    match command {
        Command::Report(a) => report::run(a),
        Command::Project(a) => project::project(a),
        Command::Compare(a) => project::compare(a),
        Command::Simulate(a) => simulate::simulate(*a),
        Command::Plan(a) => simulate::plan(*a),
        Command::Calibrate(a) => calibrate::calibrate(a),
        Command::Devices(a) => project::devices(a),
        Command::Models(a) => project::models(a),
        Command::Run(_)
        | Command::Generate(_)
        | Command::Accuracy(_)
        | Command::Serve(_)
        | Command::ExportTokenizer(_) => {
            anyhow::bail!("internal: an inference command reached the commands without libtorch")
        }
    }
}
