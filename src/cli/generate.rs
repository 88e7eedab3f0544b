//! `profiler generate`: one prompt in, a continuation out.

use super::EngineArgs;
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TextFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Text to continue.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt in the model's chat template as one user message.
    #[arg(long)]
    chat: bool,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Keep generating past the end-of-sequence token.
    #[arg(long)]
    ignore_eos: bool,
    #[arg(long, value_enum, default_value = "text")]
    format: TextFormat,
}

#[cfg(feature = "torch")]
mod exec;
#[cfg(feature = "torch")]
pub use exec::run;
