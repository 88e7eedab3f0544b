//! profiler: measure real LLM inference through libtorch and project latency and cost
//! per 1M tokens on AWS Neuron (Inferentia2, Trainium) and GPU instance types.
//!
//! This crate is the core, without libtorch: cards and profiles, projection, statistics,
//! samples and reports, metrics and their endpoint, and the command line. The inference
//! engine is the `profiler-engine` crate (`src/torch/`), built on this one.

pub mod calibration;
pub mod cli;
pub mod dtype;
pub mod generation;
pub mod inference;
pub mod jobs;
pub mod measure;
pub mod metrics;
pub mod model;
pub mod output;
pub mod paths;
pub mod projection;
pub mod push;
pub mod report;
pub mod schema;
pub mod serve;
pub mod server;
pub mod session;
pub mod signals;
pub mod simulation;
pub mod sysinfo;
pub mod toml_error;
pub mod workload;
