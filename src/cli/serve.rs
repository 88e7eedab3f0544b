//! `profiler serve`: the real engine behind an OpenAI-compatible HTTP endpoint, with
//! continuous batching (see [`crate::batching`] for the slots and the policy and
//! [`crate::serve`] for the HTTP side).

use super::EngineArgs;
use crate::output::Format;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Address to listen on: HOST:PORT, or PORT for 127.0.0.1 (loopback unless a host is
    /// named).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: String,
    /// Slots: sequences decoded together at most.
    #[arg(long, default_value_t = 4)]
    pub max_num_seqs: usize,
    /// Positions per slot (prompt plus generated tokens); the KV cache holds
    /// max-num-seqs × seq-len positions, allocated at start.
    #[arg(long, default_value_t = 2048)]
    pub seq_len: usize,
    /// Requests that may wait for a free slot; more get 503.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Write one JSON line per finished request to this new file (the `profiler run`
    /// samples format; `profiler report --samples FILE` summarises it).
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Format of the summary printed when the server stops.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// No start-up line on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ExportTokenizerArgs {
    /// Model card name, .gguf file or Hugging Face directory.
    #[arg(long, default_value = "llama")]
    pub model: String,
    /// Folder to write `tokenizer.json` and `tokenizer_config.json` into (created).
    #[arg(long)]
    pub out: PathBuf,
}
