//! `profiler run`: measure real inference, then project the measured workload onto the
//! chosen device profiles.

use super::EngineArgs;
use crate::dtype::WeightsDtype;
use crate::output::Format;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Calibration profiles to project onto: names (comma-separated) or `all`.
    #[arg(long)]
    pub device: Option<String>,
    /// One prompt text for every request.
    #[arg(long, conflicts_with_all = ["workload", "input_len"])]
    pub prompt: Option<String>,
    /// JSONL file, one request per line: {"prompt": "...", "max_new_tokens": N}.
    #[arg(long, conflicts_with = "input_len")]
    pub workload: Option<PathBuf>,
    /// Prompts of exactly N tokens cut from the shipped corpus (default 128 when no
    /// --prompt or --workload is given).
    #[arg(long)]
    pub input_len: Option<usize>,
    /// Generate exactly N tokens per request, ignoring end-of-sequence (default 64 unless
    /// --max-new-tokens is given).
    #[arg(long)]
    pub output_len: Option<usize>,
    /// Upper limit of new tokens per request, stopping at end-of-sequence.
    #[arg(long, conflicts_with = "output_len")]
    pub max_new_tokens: Option<usize>,
    /// Sequences decoded together.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Counted requests (default 10 unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    pub requests: Option<usize>,
    /// Run for this long instead: 30s, 10m, 2h.
    #[arg(long)]
    pub duration: Option<String>,
    /// Batches run first and not counted.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Wrap text prompts in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Project this model (a card name or a Hugging Face config.json) instead of the
    /// measured one: the model that runs here is measured, and the projections are of
    /// this model at the measured batch and mean prompt and output lengths.
    #[arg(long, requires = "device")]
    pub project_model: Option<String>,
    /// Weights dtype assumed on the projected devices (default: the run's --weights-dtype,
    /// with f32 runs projected at bf16, the dtype Neuron and GPU serving use).
    #[arg(long, value_parser = WeightsDtype::parse_flag)]
    pub project_dtype: Option<WeightsDtype>,
    /// Output format on stdout.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// Also write the report to this file (format from --format).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write one JSON line per finished request to this new file as it finishes (an
    /// existing non-empty file is refused, not overwritten).
    #[arg(long)]
    pub samples: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464 or :9464).
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Push metrics to this Pushgateway (http://host:port) during and after the run.
    #[arg(long)]
    pub pushgateway: Option<String>,
    /// Seconds between Pushgateway pushes.
    #[arg(long, default_value_t = 10)]
    pub push_interval: u64,
    /// Skip the host micro-benchmarks and the projected-versus-measured self-check.
    #[arg(long)]
    pub no_host_check: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

impl RunArgs {
    /// The dtype projections assume: `--project-dtype`, else the run's own
    /// ([`WeightsDtype::served_as`]: f32 runs are projected at bf16).
    pub fn projected_dtype(&self) -> WeightsDtype {
        self.project_dtype
            .unwrap_or_else(|| self.engine.dtype.served_as())
    }
}
