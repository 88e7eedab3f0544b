//! Projection of latency and cost onto calibrated device profiles.

pub mod types;
