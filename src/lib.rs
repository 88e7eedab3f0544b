//! profiler: measure real LLM inference through libtorch and project latency and cost
//! per 1M tokens on AWS Neuron (Inferentia2, Trainium) and GPU instance types.

pub mod generate;
pub mod model;
pub mod paths;
pub mod sysinfo;
pub mod measure;
pub mod report;
pub mod workload;
pub mod projection;
