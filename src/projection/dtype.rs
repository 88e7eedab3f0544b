//! Storage dtype of the weights (`--weights-dtype`): how many bytes a parameter takes and
//! which peak rate the matrix multiplies run at.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Storage dtype of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsDtype {
    Fp32,
    Bf16,
    Fp16,
    Fp8,
    Int8,
    Int4,
}

/// Which peak rate of the chip the matrix multiplies run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeRate {
    Fp32,
    Bf16,
    Fp8,
}

impl WeightsDtype {
    /// Every accepted spelling, for error messages.
    pub const ACCEPTED: &'static str = "bf16, fp16, fp8, int8, int4, fp32";

    /// Parses `bf16|fp16|fp8|int8|int4|fp32` (also `f16`, `f32`, `float16`, `bfloat16`).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "bf16" | "bfloat16" => Self::Bf16,
            "fp16" | "f16" | "float16" => Self::Fp16,
            "fp8" | "f8" | "float8" => Self::Fp8,
            "int8" | "i8" => Self::Int8,
            "int4" | "i4" => Self::Int4,
            "fp32" | "f32" | "float32" => Self::Fp32,
            other => bail!(
                "weights dtype {other:?} is not known: expected one of {}",
                Self::ACCEPTED
            ),
        })
    }

    /// Bytes one stored parameter takes (int4 packs two per byte; scales are ignored).
    pub fn bytes_per_param(self) -> f64 {
        match self {
            Self::Fp32 => 4.0,
            Self::Bf16 | Self::Fp16 => 2.0,
            Self::Fp8 | Self::Int8 => 1.0,
            Self::Int4 => 0.5,
        }
    }

    /// Rate the matrix multiplies run at. This project's assumption: fp8 weights use the
    /// chip's fp8 rate; int8/int4 are weight-only quantization, dequantized to bf16 before the
    /// multiply (as in Neuron int8 weight storage and GPU AWQ/GPTQ kernels).
    pub fn compute_rate(self) -> ComputeRate {
        match self {
            Self::Fp32 => ComputeRate::Fp32,
            Self::Fp8 => ComputeRate::Fp8,
            Self::Bf16 | Self::Fp16 | Self::Int8 | Self::Int4 => ComputeRate::Bf16,
        }
    }

    /// Canonical lower-case name, as written in projections.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
            Self::Fp8 => "fp8",
            Self::Int8 => "int8",
            Self::Int4 => "int4",
        }
    }
}

impl fmt::Display for WeightsDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases_and_sizes() {
        assert_eq!(WeightsDtype::parse("BF16").unwrap(), WeightsDtype::Bf16);
        assert_eq!(WeightsDtype::parse("f16").unwrap(), WeightsDtype::Fp16);
        assert_eq!(WeightsDtype::parse("int4").unwrap().bytes_per_param(), 0.5);
        assert_eq!(WeightsDtype::Int8.compute_rate(), ComputeRate::Bf16);
        assert_eq!(WeightsDtype::Fp8.compute_rate(), ComputeRate::Fp8);
    }

    #[test]
    fn unknown_dtype_lists_accepted() {
        let e = WeightsDtype::parse("int3").unwrap_err().to_string();
        assert!(e.contains("int3") && e.contains("bf16, fp16"), "{e}");
    }
}
