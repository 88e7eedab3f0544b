//! `profiler accuracy`: what a weights dtype costs against the f32 reference on given prompts.

use super::EngineArgs;
use crate::inference::DType;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AccuracyFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct AccuracyArgs {
    /// The model and the candidate's --weights-dtype.
    #[command(flatten)]
    engine: EngineArgs,
    /// Dtype of the reference run.
    #[arg(long, value_enum, default_value = "f32")]
    reference_dtype: DType,
    /// A prompt (repeat the flag for several).
    #[arg(long)]
    prompt: Vec<String>,
    /// Prompts from a workload file (one {"prompt": ...} a line).
    #[arg(long)]
    workload: Option<PathBuf>,
    /// Greedy tokens compared per prompt.
    #[arg(long, default_value_t = 32)]
    steps: usize,
    /// A disagreement where the reference's top-2 logit margin is below this is excused.
    #[arg(long, default_value_t = 0.1)]
    margin: f32,
    #[arg(long, value_enum, default_value = "table")]
    format: AccuracyFormat,
}

#[cfg(feature = "torch")]
mod exec;
#[cfg(feature = "torch")]
pub use exec::run;
