//! Loads a model onto the chosen device in the chosen dtype with the chosen thread count:
//! the part `generate` and `run` share.

pub use crate::inference::{EngineOptions, Kernels, MatmulPrecision, RunOn, WeightsDtype};
use crate::model::llama::{Llama, WeightsMode};
use crate::model::load::{self, ModelInfo, ModelRef};
use crate::model::tokenizer::Tokenizer;
use crate::paths::Home;
use anyhow::{bail, Result};
use tch::Device;

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

/// A model ready to run.
pub struct Engine {
    pub model: Llama,
    pub info: ModelInfo,
    pub tokenizer: Option<Tokenizer>,
    pub device: Device,
    /// The `--weights-dtype` the model runs in (never fp8: [`WeightsMode`] refuses it).
    pub dtype: WeightsDtype,
    pub matmul_precision: MatmulPrecision,
    pub threads: usize,
}

impl Engine {
    /// Resolves, loads and places the model.
    pub fn load(opts: &EngineOptions, home: &Home) -> Result<Self> {
        let device = select_device(opts.run_on)?;
        crate::model::mkl::set_libtorch_only(opts.kernels == Kernels::Libtorch);
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
        let mode = WeightsMode::try_from(opts.dtype)?;
        if matches!(mode, WeightsMode::Int8 | WeightsMode::Int4) && device != Device::Cpu {
            bail!("--weights-dtype {}: int8 and int4 weights run on the CPU only (libtorch's weight-only kernels); use --run-on cpu, or bf16/f16 on CUDA", opts.dtype.run_name());
        }
        let mut w = load::load(&r, home, opts.seed, (mode, device))?;
        let tokenizer = w.tokenizer.take();
        let (mut model, info) = load::build_model(w, device, mode)?;
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
