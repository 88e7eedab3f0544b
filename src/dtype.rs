//! The one weights dtype of the project: what `--weights-dtype` (run, generate, serve,
//! accuracy, project, compare, simulate, plan, calibrate) and `--project-dtype` take, what
//! the projection sizes weights and picks peak rates with, and what the engine turns into
//! its storage ([`crate::inference`] says which dtypes run here).
//!
//! Two spellings are written, each by an explicit method: [`WeightsDtype::name`] (`fp32`,
//! `fp16` …, projections, profiles, calibration) and [`WeightsDtype::run_name`] (`f32`,
//! `f16` …, run reports, accuracy and serve, libtorch's short names).

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Storage dtype of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsDtype {
    Fp32,
    Bf16,
    Fp16,
    /// 8-bit floats (e4m3 or e5m2); projected only: libtorch here has no fp8 matmul.
    Fp8,
    /// Weight-only int8, one scale per output channel; bf16 activations.
    Int8,
    /// Weight-only int4 in groups of 32 inputs with a scale and a zero point (GGUF
    /// Q4_0/Q4_1); bf16 activations.
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
    /// Every dtype, in the order [`Self::ACCEPTED`] lists them.
    pub const ALL: [Self; 6] = [
        Self::Bf16,
        Self::Fp16,
        Self::Fp8,
        Self::Int8,
        Self::Int4,
        Self::Fp32,
    ];

    /// Every accepted dtype, for error messages.
    pub const ACCEPTED: &'static str = "bf16, fp16, fp8, int8, int4, fp32";

    /// The dtypes the engine runs (libtorch's dense kinds and this project's weight-only
    /// kernels), in their run spelling, for error messages.
    pub const RUNS: &'static str = "f32, bf16, f16, int8, int4";

    /// Parses `bf16|fp16|fp8|int8|int4|fp32` in any case, also `bfloat16`, `f16`, `float16`,
    /// `f8`, `float8`, `i8`, `i4`, `f32` and `float32`.
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

    /// [`Self::parse`] for a flag (clap's `value_parser`): any dtype, projected.
    pub fn parse_flag(s: &str) -> std::result::Result<Self, String> {
        Self::parse(s).map_err(|e| format!("{e:#}"))
    }

    /// [`Self::parse`] for the flags of commands that run the model (`--weights-dtype` of
    /// run, generate, serve and accuracy, `--reference-dtype`): only a dtype that
    /// [`Self::runs`], so that fp8 is refused when the command line is read.
    pub fn parse_run_flag(s: &str) -> std::result::Result<Self, String> {
        match Self::parse(s) {
            Ok(d) if d.runs() => Ok(d),
            Ok(d) => Err(format!(
                "{d} weights do not run here (libtorch has no {d} matrix multiply): expected one of {} ({d} is projected only: project, compare, simulate, plan, run --project-dtype)",
                Self::RUNS
            )),
            Err(_) => Err(format!(
                "weights dtype {:?} is not known: expected one of {}",
                s.trim(),
                Self::RUNS
            )),
        }
    }

    /// The dtype a file names, in the spellings tools write besides [`Self::parse`]'s
    /// (`torch.bfloat16`, `half`, `float`); `None` for one this project does not model.
    pub fn parse_file_spelling(s: &str) -> Option<Self> {
        let t = s.trim().trim_start_matches("torch.").to_ascii_lowercase();
        match t.as_str() {
            "half" => Some(Self::Fp16),
            "float" => Some(Self::Fp32),
            other => Self::parse(other).ok(),
        }
    }

    /// Whether the engine runs weights stored in this dtype (all but fp8).
    pub fn runs(self) -> bool {
        self != Self::Fp8
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

    /// Dtype of activations, norms and the KV cache: the weights' own for the dense
    /// floating dtypes, bf16 for the quantized ones (weight-only int8/int4; fp8 weights
    /// with bf16 activations, as Neuron and vLLM serve them by default).
    pub fn activation(self) -> Self {
        match self {
            Self::Fp32 => Self::Fp32,
            Self::Fp16 => Self::Fp16,
            Self::Bf16 | Self::Fp8 | Self::Int8 | Self::Int4 => Self::Bf16,
        }
    }

    /// The dtype a run's measurements are projected at when `--project-dtype` is not
    /// given: the run's own, except f32, projected at bf16 (no one serves in f32 on the
    /// projected devices).
    pub fn served_as(self) -> Self {
        match self {
            Self::Fp32 => Self::Bf16,
            other => other,
        }
    }

    /// Canonical lower-case name, as written in projections, profiles and calibration.
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

    /// Name in run reports (`environment.dtype`, `environment.weights_dtype`), accuracy
    /// and serve output: libtorch's short `f32`, `f16` for the dense floats, the same as
    /// [`Self::name`] for the rest. Kept apart so that run reports keep their spelling.
    pub fn run_name(self) -> &'static str {
        match self {
            Self::Fp32 => "f32",
            Self::Fp16 => "f16",
            other => other.name(),
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
        assert_eq!(WeightsDtype::parse("i8").unwrap(), WeightsDtype::Int8);
        assert_eq!(WeightsDtype::parse("float32").unwrap(), WeightsDtype::Fp32);
        assert_eq!(WeightsDtype::parse("int4").unwrap().bytes_per_param(), 0.5);
        assert_eq!(WeightsDtype::Int8.compute_rate(), ComputeRate::Bf16);
        assert_eq!(WeightsDtype::Fp8.compute_rate(), ComputeRate::Fp8);
    }

    #[test]
    fn unknown_dtype_lists_accepted() {
        let e = WeightsDtype::parse("int3").unwrap_err().to_string();
        assert!(e.contains("int3") && e.contains("bf16, fp16"), "{e}");
    }

    #[test]
    fn both_spellings_parse_back_to_the_same_dtype() {
        let names: Vec<_> = WeightsDtype::ALL.iter().map(|d| d.name()).collect();
        assert_eq!(names.join(", "), WeightsDtype::ACCEPTED);
        let runs: Vec<_> = [
            WeightsDtype::Fp32,
            WeightsDtype::Bf16,
            WeightsDtype::Fp16,
            WeightsDtype::Int8,
            WeightsDtype::Int4,
        ]
        .iter()
        .map(|d| d.run_name())
        .collect();
        assert_eq!(runs.join(", "), WeightsDtype::RUNS);
        for d in WeightsDtype::ALL {
            assert_eq!(WeightsDtype::parse(d.name()).unwrap(), d);
            assert_eq!(WeightsDtype::parse(d.run_name()).unwrap(), d);
            assert_eq!(d.to_string(), d.name());
        }
        assert_eq!(WeightsDtype::Fp32.name(), "fp32");
        assert_eq!(WeightsDtype::Fp32.run_name(), "f32");
        assert_eq!(WeightsDtype::Fp16.run_name(), "f16");
        assert_eq!(WeightsDtype::Int4.run_name(), "int4");
    }

    #[test]
    fn run_flags_refuse_fp8_in_one_line_listing_what_runs() {
        assert_eq!(WeightsDtype::parse_run_flag("f32"), Ok(WeightsDtype::Fp32));
        let e = WeightsDtype::parse_run_flag("float8").unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("fp8 weights do not run here"), "{e}");
        assert!(e.contains(WeightsDtype::RUNS), "{e}");
        assert!(WeightsDtype::parse_flag("fp8").is_ok());
        let e = WeightsDtype::parse_run_flag("f64").unwrap_err();
        assert!(e.contains("\"f64\" is not known"), "{e}");
        assert!(e.ends_with(WeightsDtype::RUNS), "{e}");
    }

    #[test]
    fn activations_and_projection_default() {
        assert_eq!(WeightsDtype::Int4.activation(), WeightsDtype::Bf16);
        assert_eq!(WeightsDtype::Fp16.activation(), WeightsDtype::Fp16);
        assert_eq!(WeightsDtype::Fp32.activation().run_name(), "f32");
        assert_eq!(WeightsDtype::Fp32.served_as(), WeightsDtype::Bf16);
        assert_eq!(WeightsDtype::Int8.served_as(), WeightsDtype::Int8);
    }

    #[test]
    fn file_spellings() {
        assert_eq!(
            WeightsDtype::parse_file_spelling("torch.bfloat16"),
            Some(WeightsDtype::Bf16)
        );
        assert_eq!(
            WeightsDtype::parse_file_spelling("half"),
            Some(WeightsDtype::Fp16)
        );
        assert_eq!(WeightsDtype::parse_file_spelling("q4_1"), None);
    }
}
