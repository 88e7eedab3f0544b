//! Llama-family architecture hyper-parameters, shared by inference and projection.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Llama-3 style RoPE frequency scaling (`rope_scaling` in Hugging Face `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeScaling {
    /// Only `"llama3"` is understood.
    pub rope_type: String,
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// Architecture of a Llama-family decoder (names follow Hugging Face `LlamaConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Defaults to `hidden_size / num_attention_heads` when absent.
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
}

impl LlamaConfig {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Checks the invariants the forward pass relies on; `what` names the source in errors.
    pub fn validate(&self, what: &str) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (field, v) in positive {
            if v == 0 {
                bail!("{what}: field `{field}` must be a positive integer, got 0");
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            bail!(
                "{what}: `num_attention_heads` ({}) must be a multiple of `num_key_value_heads` ({})",
                self.num_attention_heads,
                self.num_key_value_heads
            );
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "{what}: `hidden_size` ({}) must be a multiple of `num_attention_heads` ({}) when `head_dim` is absent",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            bail!(
                "{what}: head dimension {} must be even for RoPE",
                self.head_dim()
            );
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps.is_finite()) {
            bail!(
                "{what}: `rms_norm_eps` must be a positive number, got {}",
                self.rms_norm_eps
            );
        }
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            bail!(
                "{what}: `rope_theta` must be a positive number, got {}",
                self.rope_theta
            );
        }
        if let Some(s) = &self.rope_scaling {
            if s.rope_type != "llama3" {
                bail!(
                    "{what}: `rope_scaling.rope_type` {:?} is not supported (expected \"llama3\")",
                    s.rope_type
                );
            }
            if !(s.factor > 0.0
                && s.low_freq_factor > 0.0
                && s.high_freq_factor > s.low_freq_factor)
            {
                bail!("{what}: `rope_scaling` needs factor > 0 and high_freq_factor > low_freq_factor > 0");
            }
        }
        Ok(())
    }

    /// Number of parameters (embeddings, attention, MLP, norms, and the LM head when untied).
    pub fn parameter_count(&self) -> u64 {
        let h = self.hidden_size as u64;
        let hd = self.head_dim() as u64;
        let q = self.num_attention_heads as u64 * hd;
        let kv = self.num_key_value_heads as u64 * hd;
        let i = self.intermediate_size as u64;
        let v = self.vocab_size as u64;
        let per_layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers as u64 * per_layer + h + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 100000.0,
            rope_scaling: None,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
        }
    }

    #[test]
    fn smollm2_has_134_5m_parameters() {
        // Hugging Face reports 134,515,008 parameters for SmolLM2-135M.
        assert_eq!(smollm2().parameter_count(), 134_515_008);
    }

    #[test]
    fn rejects_heads_not_multiple_of_kv_heads() {
        let mut c = smollm2();
        c.num_key_value_heads = 4;
        let e = c.validate("x.toml").unwrap_err().to_string();
        assert!(e.contains("num_key_value_heads"), "{e}");
    }
}
