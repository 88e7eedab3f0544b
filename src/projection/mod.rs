//! Projection of latency and cost onto calibrated device profiles.
//!
//! A device profile (`profiles/NAME.toml`, [`profile`]) gives a chip's published peaks, its
//! instances and prices, and the parameters of the analytical latency model ([`latency`]),
//! fitted on published measurements ([`calibrate`]) or assumed. [`project`] and [`compare`]
//! turn a model card into TTFT, TPOT, throughput and cost per 1M tokens; [`export`] renders
//! the reports.

pub mod bucket;
pub mod calibrate;
pub mod catalog;
pub mod compare;
pub mod dates;
pub mod dtype;
pub mod export;
pub mod host_steps;
pub mod interval;
pub mod latency;
pub mod lsq;
pub mod measured_decode;
pub mod model_cost;
pub mod neuron_config;
pub mod params;
pub mod plot;
pub mod points;
pub mod profile;
pub mod profile_file;
pub mod project;
pub mod setting;
pub mod step;
pub mod types;

pub use calibrate::{write_profile, CalibrationReport};
pub use compare::{compare, CompareReport, CompareRequest, Slo};
pub use dtype::WeightsDtype;
pub use plot::plot_svg;
pub use profile::{host_profile, PriceKind, Profile};
pub use project::{project, project_detailed, project_host, ProjectRequest, Projected};
