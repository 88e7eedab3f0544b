//! profiler-engine: the parts of profiler that run inference through libtorch (crate `tch`):
//! weights loading, the Llama forward pass and its CPU kernels, generation, the measurement
//! loop, the host self-check, and the commands `run`, `generate` and `accuracy`.
//!
//! It is built on the core crate `profiler` (which needs no libtorch) and mirrors its module
//! tree: each module here holds the core's items (re-exported) and the engine's own, so that
//! `crate::model::card` and `crate::model::llama` name the same things in both layers.

pub use profiler::{
    dtype, generation, inference, jobs, metrics, output, paths, projection, push, report, schema,
    serve, server, session, signals, simulation, sysinfo, toml_error, workload,
};

pub mod accuracy;
pub mod batching;
pub mod engine;
pub mod generate;
pub mod hostbench;
pub mod run;

/// Model cards, configurations, GGUF and tokenizer (core), and weights loading, the forward
/// pass and its kernels (here).
pub mod model {
    pub use profiler::model::*;

    pub mod bf16x3;
    pub(crate) mod fused;
    pub mod guard;
    pub mod kv_cache;
    pub mod llama;
    pub mod load;
    pub mod mkl;
    pub mod quant;
    pub mod source;
    pub mod synthetic;
}

/// Measurement bookkeeping (core), and the CUDA allocator's peak memory (here).
pub mod measure {
    pub use profiler::measure::*;

    pub mod cuda_memory;
}

/// The command line (core), and the commands that run inference (here).
pub mod cli {
    pub use profiler::cli::*;

    mod engine_main;
    pub use engine_main::run_engine;

    pub mod run {
        pub use profiler::cli::run::*;
        mod exec;
        mod progress;
        pub(crate) use exec::environment;
        pub use exec::run;
    }

    pub mod serve {
        pub use profiler::cli::serve::*;
        mod exec;
        pub use exec::{export_tokenizer, run};
    }

    pub mod generate {
        pub use profiler::cli::generate::*;
        mod exec;
        pub use exec::run;
    }

    pub mod accuracy {
        pub use profiler::cli::accuracy::*;
        mod exec;
        pub use exec::run;
    }
}

/// Version of the tch crate this binary is built with.
pub const TCH_VERSION: &str = "0.24.0";
/// Version of the torch (libtorch) this binary was built against.
pub const TORCH_VERSION: &str = match option_env!("PROFILER_TORCH_VERSION") {
    Some(v) => v,
    None => "unknown",
};
