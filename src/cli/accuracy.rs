//! `profiler accuracy`: what a weights dtype costs against the f32 reference on given prompts.

use super::EngineArgs;
use crate::inference::WeightsDtype;
use crate::output::Format;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AccuracyArgs {
    /// The model and the candidate's --weights-dtype.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Dtype of the reference run.
    #[arg(long, value_parser = WeightsDtype::parse_run_flag, default_value = "f32")]
    pub reference_dtype: WeightsDtype,
    /// A prompt (repeat the flag for several).
    #[arg(long)]
    pub prompt: Vec<String>,
    /// Prompts from a workload file (one {"prompt": ...} a line).
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Greedy tokens compared per prompt.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// A disagreement where the reference's top-2 logit margin is below this is excused.
    #[arg(long, default_value_t = 0.1)]
    pub margin: f32,
    /// table or json.
    #[arg(long, default_value = "table", value_parser = Format::parser(&[Format::Table, Format::Json]))]
    pub format: Format,
}
