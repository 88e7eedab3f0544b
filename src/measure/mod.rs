//! Measurement bookkeeping: what one finished request measured ([`samples`]), how a set of
//! measurements is summarised and checked for outliers ([`stats`]), and the UTC timestamp
//! format the reports use ([`rfc3339`]).

pub mod rfc3339;
pub mod samples;
pub mod stats;
