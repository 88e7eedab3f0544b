//! `profiler generate`: one prompt in, a continuation out.

use super::EngineArgs;
use crate::output::Format;
use clap::Args;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Text to continue.
    #[arg(long)]
    pub prompt: String,
    /// Wrap the prompt in the model's chat template as one user message.
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Keep generating past the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// text (the continuation alone) or json.
    #[arg(long, default_value = "text", value_parser = Format::parser(&[Format::Table, Format::Json]))]
    pub format: Format,
}
