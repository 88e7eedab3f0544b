//! What a Llama model costs to run, per tensor-parallel unit (NeuronCore or GPU): parameters,
//! bytes read per decode step, KV-cache bytes per token, and FLOPs of prefill and decode.
//! With `tp = 1` the numbers are those of the whole model.
//!
//! Sharding (Megatron-style tensor parallelism, Shoeybi et al. 2019, arXiv:1909.08053):
//! attention heads, the MLP intermediate dimension and the vocabulary are split over the TP
//! units; norms are replicated. Heads that do not divide evenly are padded up to a multiple
//! of the TP degree, and KV heads fewer than the TP degree are replicated so that each unit
//! holds at least one (NxD Inference GQA sharding "replicate to TP degree"; this project's
//! reading of the Neuron docs, also what vLLM does on GPUs).

use super::dtype::WeightsDtype;
use crate::model::config::LlamaConfig;

/// Bytes of one KV-cache element. This project's assumption: the cache is kept in bf16/fp16
/// whatever the weights dtype (the published Neuron and GPU runs used here do so).
pub const KV_BYTES_PER_ELEMENT: f64 = 2.0;

/// Bytes of one activation element exchanged by the TP all-reduces (bf16/fp16).
pub const ACTIVATION_BYTES: f64 = 2.0;

/// Per-unit cost of a model sharded over `tp` units.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCost {
    pub tp: u32,
    pub layers: f64,
    pub hidden: f64,
    pub head_dim: f64,
    /// Query heads per unit (after padding).
    pub heads: f64,
    /// KV heads per unit (after padding or replication).
    pub kv_heads: f64,
    /// MLP intermediate width per unit.
    pub intermediate: f64,
    /// Vocabulary rows per unit.
    pub vocab: f64,
    pub tied_embeddings: bool,
    pub weight_bytes_per_param: f64,
}

fn ceil_div(a: usize, b: usize) -> f64 {
    a.div_ceil(b.max(1)) as f64
}

impl ModelCost {
    /// Cost of `cfg` sharded over `tp` units with weights stored as `dtype`.
    pub fn new(cfg: &LlamaConfig, tp: u32, dtype: WeightsDtype) -> Self {
        let t = tp.max(1) as usize;
        ModelCost {
            tp: tp.max(1),
            layers: cfg.num_hidden_layers as f64,
            hidden: cfg.hidden_size as f64,
            head_dim: cfg.head_dim() as f64,
            heads: ceil_div(cfg.num_attention_heads, t),
            kv_heads: ceil_div(cfg.num_key_value_heads, t),
            intermediate: ceil_div(cfg.intermediate_size, t),
            vocab: ceil_div(cfg.vocab_size, t),
            tied_embeddings: cfg.tie_word_embeddings,
            weight_bytes_per_param: dtype.bytes_per_param(),
        }
    }

    /// Parameters of all decoder layers on one unit (q, k, v, o, gate, up, down, two norms).
    pub fn layer_params(&self) -> f64 {
        let h = self.hidden;
        let q = self.heads * self.head_dim;
        let kv = self.kv_heads * self.head_dim;
        let per_layer = 2.0 * h * q + 2.0 * h * kv + 3.0 * h * self.intermediate + 2.0 * h;
        self.layers * per_layer
    }

    /// Parameters of the LM head on one unit (vocabulary-parallel).
    pub fn lm_head_params(&self) -> f64 {
        self.vocab * self.hidden
    }

    /// Parameters stored on one unit: embeddings (shared with the head when tied), layers,
    /// head and final norm.
    pub fn stored_params(&self) -> f64 {
        let embedding = self.vocab * self.hidden;
        let head = if self.tied_embeddings {
            0.0
        } else {
            self.lm_head_params()
        };
        embedding + self.layer_params() + head + self.hidden
    }

    /// Weight bytes stored on one unit. Norms are counted at the weights dtype too.
    pub fn weight_bytes(&self) -> f64 {
        self.stored_params() * self.weight_bytes_per_param
    }

    /// Weight bytes read from memory by one unit per forward step: every layer and the LM
    /// head; the embedding table is only gathered row by row.
    pub fn weight_bytes_per_step(&self) -> f64 {
        (self.layer_params() + self.lm_head_params()) * self.weight_bytes_per_param
    }

    /// KV-cache bytes per token on one unit: K and V, every layer, this unit's KV heads.
    pub fn kv_bytes_per_token(&self) -> f64 {
        2.0 * self.layers * self.kv_heads * self.head_dim * KV_BYTES_PER_ELEMENT
    }

    /// Matrix-multiply FLOPs of one unit for a prefill of `batch` prompts of `tokens` each:
    /// 2 FLOPs per parameter per token through the layers, and the LM head for the last
    /// token of each prompt only (Kaplan et al. 2020, arXiv:2001.08361, Table 1).
    pub fn prefill_matmul_flops(&self, batch: f64, tokens: f64) -> f64 {
        2.0 * batch * (tokens * self.layer_params() + self.lm_head_params())
    }

    /// Matrix-multiply FLOPs of one unit for one decode step of `batch` sequences.
    pub fn decode_matmul_flops(&self, batch: f64) -> f64 {
        2.0 * batch * (self.layer_params() + self.lm_head_params())
    }

    /// Attention FLOPs of one unit: `queries` query tokens against `keys` cached tokens,
    /// 2 FLOPs per multiply-add for Q·Kᵀ and again for A·V, over this unit's query heads
    /// (GQA shares K/V, not the dot products). `causal` halves the work of a prefill whose
    /// kernel skips the masked half.
    pub fn attention_flops(&self, batch: f64, queries: f64, keys: f64, causal: bool) -> f64 {
        let full = 4.0 * batch * self.layers * self.heads * self.head_dim * queries * keys;
        if causal {
            full / 2.0
        } else {
            full
        }
    }

    /// Bytes one all-reduce moves per unit for `tokens` activations of width `hidden`.
    pub fn allreduce_bytes(&self, tokens: f64) -> f64 {
        tokens * self.hidden * ACTIVATION_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-checkable config: 2 layers, hidden 8, 2 heads of 4, 1 KV head, MLP 16, vocab 10.
    pub(crate) fn tiny() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 10,
            hidden_size: 8,
            intermediate_size: 16,
            num_hidden_layers: 2,
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
    fn tiny_model_counts_by_hand() {
        let c = ModelCost::new(&tiny(), 1, WeightsDtype::Bf16);
        // per layer: q 8x8 + o 8x8 = 128; k,v 2x8x4 = 64; mlp 3x8x16 = 384; norms 16 -> 592
        assert_eq!(c.layer_params(), 2.0 * 592.0);
        assert_eq!(c.lm_head_params(), 80.0);
        // embeddings 80 + layers 1184 + head 80 + final norm 8
        assert_eq!(c.stored_params(), 1352.0);
        assert_eq!(c.stored_params() as u64, tiny().parameter_count());
        assert_eq!(c.weight_bytes(), 2704.0);
        // read per step: layers + head = 1264 params x 2 bytes
        assert_eq!(c.weight_bytes_per_step(), 2528.0);
        // KV per token: 2 (K,V) x 2 layers x 1 head x 4 dims x 2 bytes
        assert_eq!(c.kv_bytes_per_token(), 32.0);
    }

    #[test]
    fn tiny_model_flops_by_hand() {
        let c = ModelCost::new(&tiny(), 1, WeightsDtype::Bf16);
        // decode, batch 1: 2 x (1184 + 80)
        assert_eq!(c.decode_matmul_flops(1.0), 2528.0);
        // prefill of 3 tokens: 2 x (3 x 1184 + 80), head on the last token only
        assert_eq!(c.prefill_matmul_flops(1.0, 3.0), 7264.0);
        // attention, 1 query over 5 keys: 4 x 2 layers x 2 heads x 4 dims x 5
        assert_eq!(c.attention_flops(1.0, 1.0, 5.0, false), 320.0);
        // causal prefill, batch 2, 4 queries over 4 keys: 4 x 2 x 2 layers x 2 heads x 4 x 16 / 2
        assert_eq!(c.attention_flops(2.0, 4.0, 4.0, true), 1024.0);
    }

    #[test]
    fn sharding_pads_heads_and_replicates_kv() {
        let mut cfg = tiny();
        cfg.num_attention_heads = 40;
        cfg.num_key_value_heads = 8;
        cfg.hidden_size = 160;
        let c = ModelCost::new(&cfg, 24, WeightsDtype::Bf16);
        assert_eq!(c.heads, 2.0); // 40 heads padded to 48 over 24 units
        assert_eq!(c.kv_heads, 1.0); // 8 KV heads replicated to 24
        assert_eq!(c.intermediate, 1.0); // 16 / 24 rounded up
    }

    #[test]
    fn int4_halves_int8_bytes() {
        let a = ModelCost::new(&tiny(), 1, WeightsDtype::Int8).weight_bytes();
        let b = ModelCost::new(&tiny(), 1, WeightsDtype::Int4).weight_bytes();
        assert_eq!(a, 2.0 * b);
    }
}
