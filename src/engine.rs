//! Loads a model onto the chosen device in the chosen dtype with the chosen thread count:
//! the part `generate` and `run` share.

use crate::model::llama::{Llama, WeightsMode};
use crate::model::load::{self, ModelInfo, ModelRef};
use crate::model::tokenizer::Tokenizer;
use crate::paths::Home;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

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
    /// How the model stores its linear layers.
    pub fn mode(self) -> WeightsMode {
        match self {
            DType::F32 => WeightsMode::Dense(Kind::Float),
            DType::Bf16 => WeightsMode::Dense(Kind::BFloat16),
            DType::F16 => WeightsMode::Dense(Kind::Half),
            DType::Int8 => WeightsMode::Int8,
            DType::Int4 => WeightsMode::Int4,
        }
    }

    /// The libtorch kind of activations (and of weights, for the dense dtypes).
    pub fn kind(self) -> Kind {
        self.mode().activation_kind()
    }

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

/// Resolves `--run-on` to a device; asking for CUDA where there is none is an error.
pub fn select_device(run_on: RunOn) -> Result<Device> {
    match run_on {
        RunOn::Cpu => Ok(Device::Cpu),
        RunOn::Cuda if !tch::Cuda::is_available() => {
            bail!("--run-on cuda: CUDA is not available on this machine (no GPU or driver); use --run-on cpu or auto")
        }
        RunOn::Cuda => Ok(Device::Cuda(0)),
        RunOn::Auto => Ok(Device::cuda_if_available()),
    }
}

/// A human name for the device (CPU model, or "CUDA device 0").
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => crate::sysinfo::cpu_model(),
        Device::Cuda(i) => format!("CUDA device {i}"),
        other => format!("{other:?}"),
    }
}

/// Options shared by `generate` and `run`.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub model: String,
    pub run_on: RunOn,
    pub dtype: DType,
    pub matmul_precision: MatmulPrecision,
    /// libtorch intra-op threads; `None` keeps libtorch's default (all cores).
    pub threads: Option<usize>,
    /// Seed for synthetic weights.
    pub seed: i64,
}

/// A model ready to run.
pub struct Engine {
    pub model: Llama,
    pub info: ModelInfo,
    pub tokenizer: Option<Tokenizer>,
    pub device: Device,
    pub dtype: DType,
    pub matmul_precision: MatmulPrecision,
    pub threads: usize,
}

impl Engine {
    /// Resolves, loads and places the model.
    pub fn load(opts: &EngineOptions, home: &Home) -> Result<Self> {
        let device = select_device(opts.run_on)?;
        if let Some(n) = opts.threads {
            if n == 0 {
                bail!("--threads must be at least 1, got 0");
            }
            // More threads than cores only oversubscribes them; far more makes libtorch's
            // thread pool start for minutes.
            let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
            let most = (4 * cores).max(16);
            if n > most {
                bail!("--threads {n}: at most {most} (4 per core, {cores} cores here)");
            }
            tch::set_num_threads(n as i32);
        }
        let r: ModelRef = load::resolve(&opts.model, home)?;
        if matches!(opts.dtype, DType::Int8 | DType::Int4) && device != Device::Cpu {
            bail!("--weights-dtype {}: int8 and int4 weights run on the CPU only (libtorch's weight-only kernels); use --run-on cpu, or bf16/f16 on CUDA", opts.dtype.as_str());
        }
        let mut w = load::load(&r, home, opts.seed, opts.dtype == DType::Int4)?;
        let tokenizer = w.tokenizer.take();
        let (mut model, info) = load::build_model(w, device, opts.dtype.mode())?;
        if opts.matmul_precision == MatmulPrecision::High {
            model = model.split_f32_matmuls()?;
        }
        Ok(Engine {
            model,
            info,
            tokenizer,
            device,
            dtype: opts.dtype,
            matmul_precision: opts.matmul_precision,
            threads: tch::get_num_threads().max(1) as usize,
        })
    }

    /// The tokenizer, or a clear error for synthetic models that have none.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        match &self.tokenizer {
            Some(t) => Ok(t),
            None => bail!(
                "model {} has synthetic weights and no tokenizer: give token counts (--input-len) instead of text",
                self.info.name
            ),
        }
    }
}
