//! Storage dtype of the weights (`--weights-dtype`): the project's one dtype type, kept in
//! [`crate::dtype`] and named here where the projection used it.

pub use crate::dtype::{ComputeRate, WeightsDtype};
