//! profiler: measure real LLM inference through libtorch and project latency and cost
//! per 1M tokens on AWS Neuron (Inferentia2, Trainium) and GPU instance types.

pub mod accuracy;
pub mod batching;
pub mod cli;
pub mod engine;
pub mod generate;
pub mod hostbench;
pub mod jobs;
pub mod measure;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod projection;
pub mod push;
pub mod report;
pub mod runner;
pub mod serve;
pub mod server;
pub mod signals;
pub mod sysinfo;
pub mod toml_error;
pub mod workload;

/// Version of the tch crate this binary is built with.
pub const TCH_VERSION: &str = "0.24.0";
/// Version of the torch (libtorch) this binary was built against.
pub const TORCH_VERSION: &str = match option_env!("PROFILER_TORCH_VERSION") {
    Some(v) => v,
    None => "unknown",
};
