//! Models: architectures, cards, weights formats, tokenizer and the forward pass.

pub mod card;
pub mod config;
