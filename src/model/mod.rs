//! Models: architectures, cards, the GGUF format and the tokenizer. Weights loading and the
//! forward pass are in the engine crate (`src/torch/`), beside these files' siblings.

pub mod architecture;
pub mod card;
pub mod config;
pub mod gguf;
pub mod hf_config;
pub mod tokenizer;
