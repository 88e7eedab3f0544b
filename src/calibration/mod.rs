//! Calibration from users' own measurements: result files of the benchmark tools people
//! already run ([`import`]) become calibration points, static runs projected through
//! [`crate::projection::latency`] and serving runs replayed through [`crate::simulation`];
//! the base profile's parameters are fitted on them and written out as a new profile.
//!
//! Sits above both the projection and the simulation (it needs the two), so neither
//! depends on it.

pub mod import;
