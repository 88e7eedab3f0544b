//! What inference is asked to do, without libtorch: where it runs (`--run-on`), how weights
//! are stored (`--weights-dtype`), how f32 products are computed (`--matmul-precision`).
//! The commands parse these in every build; only the `torch` build runs them (`engine`).

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

/// How weights are stored while the model runs (`--weights-dtype`): dense f32, bf16 or f16
/// (activations in the same dtype), or weight-only int8 / int4 with bf16 activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    Bf16,
    F16,
    /// Per-output-channel symmetric int8.
    Int8,
    /// Groups of 32 inputs with a scale and a zero point (GGUF Q4_0/Q4_1 used as they are).
    Int4,
}

impl DType {
    /// Name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
            DType::Int8 => "int8",
            DType::Int4 => "int4",
        }
    }

    /// Name of the activation dtype, for reports.
    pub fn activation_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 | DType::Int8 | DType::Int4 => "bf16",
        }
    }
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
    pub dtype: DType,
    pub matmul_precision: MatmulPrecision,
    pub kernels: Kernels,
    /// libtorch intra-op threads; `None` keeps libtorch's default (all cores).
    pub threads: Option<usize>,
    /// Seed for synthetic weights.
    pub seed: i64,
}

impl From<DType> for crate::projection::WeightsDtype {
    /// The projection's storage dtype of a run's weights (same bytes per parameter).
    fn from(d: DType) -> Self {
        use crate::projection::WeightsDtype as W;
        match d {
            DType::F32 => W::Fp32,
            DType::Bf16 => W::Bf16,
            DType::F16 => W::Fp16,
            DType::Int8 => W::Int8,
            DType::Int4 => W::Int4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::WeightsDtype;

    #[test]
    fn run_dtypes_convert_to_projection_dtypes_of_the_same_name() {
        for d in [
            DType::F32,
            DType::Bf16,
            DType::F16,
            DType::Int8,
            DType::Int4,
        ] {
            let w = WeightsDtype::from(d);
            assert_eq!(
                WeightsDtype::parse(d.as_str()).unwrap(),
                w,
                "{}",
                d.as_str()
            );
        }
    }
}
