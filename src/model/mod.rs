//! Models: architectures, cards, weights formats, tokenizer and the forward pass.

pub mod architecture;
pub mod bf16x3;
pub mod card;
pub mod config;
pub(crate) mod fused;
pub mod gguf;
pub mod hf_config;
pub mod kv_cache;
pub mod llama;
pub mod load;
pub(crate) mod mkl;
pub mod quant;
pub mod synthetic;
pub mod tokenizer;
