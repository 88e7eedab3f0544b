//! A model's full architecture for projection: the Llama-style core ([`LlamaConfig`]) plus
//! what modern models add to it: mixture-of-experts MLPs, sliding-window or chunked
//! attention layers, attention biases and norms, and quantisation declared by the
//! checkpoint. Pure data and parameter counting; the latency model reads it.
//!
//! In a card these are optional tables beside `[architecture]` (`[experts]`, `[attention]`,
//! `[quantization]`); a card without them is the plain dense Llama model it always was.

use super::config::LlamaConfig;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Mixture-of-experts MLPs (`[experts]` in a card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experts {
    /// Routed experts per MoE layer (`num_experts`, `num_local_experts`).
    pub count: usize,
    /// Routed experts each token goes to (`num_experts_per_tok`).
    pub per_token: usize,
    /// Intermediate width of one routed expert (`moe_intermediate_size`; Mixtral's and
    /// Llama 4's `intermediate_size`).
    pub intermediate_size: usize,
    /// Shared experts every token goes through (Llama 4: 1).
    #[serde(default)]
    pub shared: usize,
    /// Intermediate width of one shared expert; the routed width when absent.
    #[serde(default)]
    pub shared_intermediate_size: Option<usize>,
    /// Every `layer_step`-th layer is MoE, counting from 1 (Llama 4
    /// `interleave_moe_layer_step`, Qwen `decoder_sparse_step`); the others are dense.
    #[serde(default = "one")]
    pub layer_step: usize,
    /// Layers (from 0) kept dense whatever the step (Qwen `mlp_only_layers`).
    #[serde(default)]
    pub dense_layers: Vec<usize>,
    /// The router has a bias (gpt-oss).
    #[serde(default)]
    pub router_bias: bool,
    /// Each expert's projections have biases (gpt-oss: gate/up and down).
    #[serde(default)]
    pub expert_bias: bool,
}

fn one() -> usize {
    1
}

fn two() -> usize {
    2
}

/// What one attention layer attends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// The whole context.
    Full,
    /// The last `window` tokens (Mistral, gpt-oss, Gemma 3 local layers).
    Sliding,
    /// The tokens of the same `window`-sized chunk (Llama 4 RoPE layers).
    Chunked,
}

/// Attention details beyond the core (`[attention]` in a card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attention {
    /// q, k and v projections carry biases (Qwen2, gpt-oss).
    #[serde(default)]
    pub qkv_bias: bool,
    /// The output projection carries a bias (gpt-oss).
    #[serde(default)]
    pub o_bias: bool,
    /// Weighted RMSNorm over each query and key head (Qwen3, Gemma 3): `head_dim` weights each.
    #[serde(default)]
    pub qk_norm: bool,
    /// One learned attention-sink logit per query head (gpt-oss).
    #[serde(default)]
    pub sinks: bool,
    /// Norm weight vectors of width `hidden_size` per layer (Gemma 3: 4).
    #[serde(default = "two")]
    pub norms_per_layer: usize,
    /// Tokens a sliding or chunked layer attends to (`sliding_window`, `attention_chunk_size`).
    #[serde(default)]
    pub window: Option<usize>,
    /// Kinds of the layers, repeated cyclically from layer 0 (`["sliding", "full"]` for
    /// gpt-oss); every layer full when empty. A list as long as the model lists each layer.
    #[serde(default)]
    pub layer_pattern: Vec<LayerKind>,
}

impl Default for Attention {
    fn default() -> Self {
        Attention {
            qkv_bias: false,
            o_bias: false,
            qk_norm: false,
            sinks: false,
            norms_per_layer: 2,
            window: None,
            layer_pattern: Vec::new(),
        }
    }
}

/// Which weights a declared quantisation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantScope {
    /// Routed experts only (gpt-oss MXFP4 keeps attention, router and embeddings in bf16).
    Experts,
    /// Every decoder-layer weight matrix (not the embeddings nor the LM head).
    Layers,
}

/// Quantisation the checkpoint declares (`quantization_config`; `[quantization]` in a card).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantization {
    /// `quant_method` as written in the config (`mxfp4`, `fp8`, `awq`, `gptq`, ...).
    pub method: String,
    /// Storage bits per weight including block scales (MXFP4: 4 + 8/32 = 4.25).
    pub bits_per_weight: f64,
    pub scope: QuantScope,
}

/// A full architecture: the dense core and its variants.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Architecture {
    /// Attention, embeddings, positions; `intermediate_size` is the width of the dense MLPs.
    pub base: LlamaConfig,
    pub experts: Option<Experts>,
    pub attention: Attention,
    pub quantization: Option<Quantization>,
}

/// Reads of the core fields go straight to [`LlamaConfig`]; parameter counts are this
/// type's own (they include experts and the other variants).
impl std::ops::Deref for Architecture {
    type Target = LlamaConfig;
    fn deref(&self) -> &LlamaConfig {
        &self.base
    }
}

impl From<LlamaConfig> for Architecture {
    fn from(base: LlamaConfig) -> Self {
        Architecture::dense(base)
    }
}

impl Architecture {
    /// A plain dense Llama model.
    pub fn dense(base: LlamaConfig) -> Self {
        Architecture {
            base,
            experts: None,
            attention: Attention::default(),
            quantization: None,
        }
    }

    /// Whether this is the plain Llama model the inference engine runs (no experts, no
    /// windowed layers, no biases or extra norms, no declared quantisation).
    pub fn is_plain_llama(&self) -> bool {
        self.experts.is_none()
            && self.attention == Attention::default()
            && self.quantization.is_none()
    }

    /// What makes this architecture more than a plain Llama model, for error messages.
    pub fn variant_summary(&self) -> String {
        let mut v = Vec::new();
        if let Some(e) = &self.experts {
            v.push(format!("{} experts", e.count));
        }
        if self.windowed_layers() > 0 {
            v.push(format!(
                "{} windowed attention layers",
                self.windowed_layers()
            ));
        }
        let a = &self.attention;
        if a.qkv_bias || a.o_bias {
            v.push("attention biases".into());
        }
        if a.qk_norm {
            v.push("q/k norms".into());
        }
        if a.sinks {
            v.push("attention sinks".into());
        }
        if a.norms_per_layer != 2 {
            v.push(format!("{} norms per layer", a.norms_per_layer));
        }
        if let Some(q) = &self.quantization {
            v.push(format!("{} quantisation", q.method));
        }
        v.join(", ")
    }

    /// Checks the core and the variants; `what` names the source in errors.
    pub fn validate(&self, what: &str) -> Result<()> {
        self.base.validate(what)?;
        let layers = self.base.num_hidden_layers;
        if let Some(e) = &self.experts {
            for (field, v) in [
                ("experts.count", e.count),
                ("experts.per_token", e.per_token),
                ("experts.intermediate_size", e.intermediate_size),
                ("experts.layer_step", e.layer_step),
            ] {
                if v == 0 {
                    bail!("{what}: field `{field}` must be a positive integer, got 0");
                }
            }
            if e.per_token > e.count {
                bail!(
                    "{what}: field `experts.per_token` ({}) must not exceed `experts.count` ({})",
                    e.per_token,
                    e.count
                );
            }
            if e.shared_intermediate_size == Some(0) {
                bail!("{what}: field `experts.shared_intermediate_size` must be a positive integer, got 0");
            }
            if let Some(l) = e.dense_layers.iter().find(|l| **l >= layers) {
                bail!("{what}: field `experts.dense_layers` names layer {l}, but the model has {layers} layers (0 to {})", layers - 1);
            }
            if self.moe_layers() == 0 {
                bail!("{what}: `[experts]` is given but no layer is a mixture-of-experts layer (check `layer_step` and `dense_layers`)");
            }
        }
        let a = &self.attention;
        if a.norms_per_layer == 0 {
            bail!("{what}: field `attention.norms_per_layer` must be a positive integer, got 0");
        }
        if a.layer_pattern.len() > layers {
            bail!(
                "{what}: field `attention.layer_pattern` lists {} layers, but the model has {layers}",
                a.layer_pattern.len()
            );
        }
        let windowed = a.layer_pattern.iter().any(|k| *k != LayerKind::Full);
        match a.window {
            Some(0) => bail!("{what}: field `attention.window` must be a positive number of tokens, got 0"),
            None if windowed => bail!("{what}: field `attention.window` is missing: `layer_pattern` has sliding or chunked layers"),
            Some(_) if !windowed => bail!("{what}: field `attention.window` is given but `layer_pattern` has no sliding or chunked layer"),
            _ => {}
        }
        if let Some(q) = &self.quantization {
            if q.method.trim().is_empty() {
                bail!("{what}: field `quantization.method` must not be empty");
            }
            if !(q.bits_per_weight > 0.0 && q.bits_per_weight <= 32.0) {
                bail!(
                    "{what}: field `quantization.bits_per_weight` must be in (0, 32], got {}",
                    q.bits_per_weight
                );
            }
            if q.scope == QuantScope::Experts && self.experts.is_none() {
                bail!("{what}: field `quantization.scope` is \"experts\" but the model has no `[experts]`");
            }
        }
        Ok(())
    }

    /// Whether layer `i` (from 0) has a mixture-of-experts MLP.
    pub fn is_moe_layer(&self, i: usize) -> bool {
        self.experts
            .as_ref()
            .is_some_and(|e| (i + 1).is_multiple_of(e.layer_step) && !e.dense_layers.contains(&i))
    }

    /// Number of mixture-of-experts layers.
    pub fn moe_layers(&self) -> usize {
        (0..self.base.num_hidden_layers)
            .filter(|i| self.is_moe_layer(*i))
            .count()
    }

    /// What layer `i` attends to.
    pub fn layer_kind(&self, i: usize) -> LayerKind {
        let p = &self.attention.layer_pattern;
        if p.is_empty() {
            LayerKind::Full
        } else {
            p[i % p.len()]
        }
    }

    /// Number of sliding-window or chunked layers.
    pub fn windowed_layers(&self) -> usize {
        (0..self.base.num_hidden_layers)
            .filter(|i| self.layer_kind(*i) != LayerKind::Full)
            .count()
    }

    /// Parameters of one layer's attention block, its norms included.
    pub fn attention_params(&self) -> u64 {
        let c = &self.base;
        let a = &self.attention;
        let h = c.hidden_size as u64;
        let hd = c.head_dim() as u64;
        let q = c.num_attention_heads as u64 * hd;
        let kv = c.num_key_value_heads as u64 * hd;
        let mut n = 2 * h * q + 2 * h * kv + a.norms_per_layer as u64 * h;
        if a.qkv_bias {
            n += q + 2 * kv;
        }
        if a.o_bias {
            n += h;
        }
        if a.qk_norm {
            n += 2 * hd;
        }
        if a.sinks {
            n += c.num_attention_heads as u64;
        }
        n
    }

    /// Parameters of one routed expert (gate, up, down and their biases).
    pub fn expert_params(&self) -> u64 {
        let Some(e) = &self.experts else { return 0 };
        let h = self.base.hidden_size as u64;
        let i = e.intermediate_size as u64;
        3 * h * i + if e.expert_bias { 2 * i + h } else { 0 }
    }

    /// Parameters of a MoE layer's MLP besides its routed experts: shared experts and router.
    pub fn moe_fixed_params(&self) -> u64 {
        let Some(e) = &self.experts else { return 0 };
        let h = self.base.hidden_size as u64;
        let si = e.shared_intermediate_size.unwrap_or(e.intermediate_size) as u64;
        let router = h * e.count as u64 + if e.router_bias { e.count as u64 } else { 0 };
        e.shared as u64 * 3 * h * si + router
    }

    /// Parameters of one dense MLP (gate, up, down).
    pub fn dense_mlp_params(&self) -> u64 {
        3 * self.base.hidden_size as u64 * self.base.intermediate_size as u64
    }

    /// Embedding table, final norm and (untied) LM head.
    pub fn embedding_and_head_params(&self) -> u64 {
        let c = &self.base;
        let vh = c.vocab_size as u64 * c.hidden_size as u64;
        vh + c.hidden_size as u64 + if c.tie_word_embeddings { 0 } else { vh }
    }

    /// All parameters: every expert of every layer.
    pub fn parameter_count(&self) -> u64 {
        self.count_with_experts(|e| e.count as u64)
    }

    /// Parameters one token goes through: the routed experts it is sent to only. The
    /// embedding table and the LM head are counted (as the Qwen3, Mixtral and Llama 4
    /// model cards count them; the gpt-oss card leaves the embedding table out).
    pub fn active_parameter_count(&self) -> u64 {
        self.count_with_experts(|e| e.per_token as u64)
    }

    fn count_with_experts(&self, experts: impl Fn(&Experts) -> u64) -> u64 {
        let layers = self.base.num_hidden_layers as u64;
        let moe = self.moe_layers() as u64;
        let mut n = self.embedding_and_head_params() + layers * self.attention_params();
        n += (layers - moe) * self.dense_mlp_params();
        if let Some(e) = &self.experts {
            n += moe * (self.moe_fixed_params() + experts(e) * self.expert_params());
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 10,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 4,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: None,
            max_position_embeddings: 64,
            tie_word_embeddings: false,
        }
    }

    #[test]
    fn dense_count_is_the_llama_count() {
        let a = Architecture::dense(core());
        assert_eq!(a.parameter_count(), core().parameter_count());
        assert_eq!(a.active_parameter_count(), a.parameter_count());
        assert!(a.is_plain_llama());
    }

    #[test]
    fn moe_counts_by_hand() {
        let mut a = Architecture::dense(core());
        a.experts = Some(Experts {
            count: 4,
            per_token: 2,
            intermediate_size: 4,
            shared: 1,
            shared_intermediate_size: None,
            layer_step: 2,
            dense_layers: vec![],
            router_bias: true,
            expert_bias: false,
        });
        a.validate("t").unwrap();
        // MoE layers 1 and 3; layers 0 and 2 dense.
        assert_eq!(a.moe_layers(), 2);
        assert!(!a.is_moe_layer(0) && a.is_moe_layer(1));
        // attention per layer: q,o 2x8x8 = 128, k,v 2x8x4 = 64, norms 16 -> 208
        assert_eq!(a.attention_params(), 208);
        // expert 3x8x4 = 96; shared 96 + router 8x4 + 4 = 132
        assert_eq!(a.expert_params(), 96);
        assert_eq!(a.moe_fixed_params(), 132);
        // embeddings 80 + head 80 + norm 8 + 4x208 + 2 dense x 384 + 2 x (132 + 4 x 96)
        assert_eq!(a.parameter_count(), 168 + 832 + 768 + 2 * (132 + 384));
        assert_eq!(
            a.active_parameter_count(),
            168 + 832 + 768 + 2 * (132 + 192)
        );
    }

    #[test]
    fn windows_and_errors() {
        let mut a = Architecture::dense(core());
        a.attention.layer_pattern = vec![LayerKind::Sliding, LayerKind::Full];
        let e = a.validate("x.toml").unwrap_err().to_string();
        assert!(e.contains("`attention.window` is missing"), "{e}");
        a.attention.window = Some(16);
        a.validate("x.toml").unwrap();
        assert_eq!(a.windowed_layers(), 2);
        assert_eq!(a.layer_kind(2), LayerKind::Sliding);
        assert!(!a.is_plain_llama());
        a.attention.layer_pattern = vec![LayerKind::Full; 5];
        let e = a.validate("x.toml").unwrap_err().to_string();
        assert!(e.contains("lists 5 layers"), "{e}");
    }
}
