//! Measurement: the loop that runs and times requests on any engine ([`runner`], against a
//! [`clock`]), what one finished request measured ([`samples`]), how a set of
//! measurements is summarised and checked for outliers ([`stats`]), and the UTC timestamp
//! format the reports use ([`rfc3339`]).

pub mod clock;
pub mod rfc3339;
pub mod runner;
pub mod samples;
pub mod stats;
