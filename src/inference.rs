//! What inference is asked to do, without libtorch: where it runs (`--run-on`), how weights
//! are stored (`--weights-dtype`, a [`WeightsDtype`] that runs), how f32 products are
//! computed (`--matmul-precision`).
//! The commands parse these in every build; only the `torch` build runs them (`engine`).

pub use crate::dtype::WeightsDtype;
use serde::{Deserialize, Serialize};

/// Where inference runs (`--run-on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RunOn {
    Cpu,
    Cuda,
    /// CUDA when available, else the CPU.
    Auto,
}

/// How f32 matrix products are computed (`--matmul-precision`), named as PyTorch's
/// `set_float32_matmul_precision` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// IEEE f32 products throughout.
    Highest,
    /// Prompts' f32 products as three bf16 products accumulated in f32 (about 16
    /// significant bits per factor; see `model::bf16x3`), on CPUs with bf16 matrix
    /// instructions; one-token steps stay f32.
    High,
}

impl MatmulPrecision {
    /// Name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            MatmulPrecision::Highest => "highest",
            MatmulPrecision::High => "high",
        }
    }
}

/// Which kernels the CPU engine runs (`--kernels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// This project's own where they help: MKL routines libtorch carries but does not
    /// expose (each checked against libtorch at start), and the fused one-token step.
    Custom,
    /// libtorch's operators only.
    Libtorch,
}

/// Options shared by `generate` and `run`.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub model: String,
    pub run_on: RunOn,
    /// How weights are stored (`--weights-dtype`): dense f32, bf16 or f16 (activations
    /// alike), or weight-only int8 / int4 with bf16 activations; never fp8, which the flag
    /// refuses ([`WeightsDtype::parse_run_flag`]) and the engine cannot store.
    pub dtype: WeightsDtype,
    pub matmul_precision: MatmulPrecision,
    pub kernels: Kernels,
    /// libtorch intra-op threads; `None` keeps libtorch's default (all cores).
    pub threads: Option<usize>,
    /// Seed for synthetic weights.
    pub seed: i64,
}
