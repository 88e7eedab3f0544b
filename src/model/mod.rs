//! Models: architectures, cards, weights formats, tokenizer and the forward pass.

#[cfg(feature = "torch")]
pub mod bf16x3;
pub mod card;
pub mod config;
#[cfg(feature = "torch")]
pub(crate) mod fused;
pub mod gguf;
#[cfg(feature = "torch")]
pub mod kv_cache;
#[cfg(feature = "torch")]
pub mod llama;
#[cfg(feature = "torch")]
pub mod load;
#[cfg(feature = "torch")]
pub(crate) mod mkl;
#[cfg(feature = "torch")]
pub mod quant;
#[cfg(feature = "torch")]
pub mod synthetic;
pub mod tokenizer;
