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
//!
//! Mixture of experts: by default every routed expert is sharded over the TP units along its
//! intermediate dimension, like a dense MLP: the default of vLLM and of vLLM on Neuron, where
//! expert parallelism is opt-in (`--enable-expert-parallel`; vLLM docs "Expert Parallel
//! Deployment"; Neuron docs, vllm-neuron design "Expert Parallelism (EP)", updated
//! 2026-06-23: "tensor parallelism ... shards each expert's weight matrices"). With an
//! expert-parallel degree `ep` (which divides the TP degree), the TP group's units form `ep`
//! groups of `tp/ep` units; each group holds `⌈E/ep⌉` whole experts, each expert sharded
//! over the group's `tp/ep` units (NxD Inference `moe_ep_degree` × `moe_tp_degree` =
//! `tp_degree`; vllm-neuron `ep_degree`, "MoE layers use EP for expert partitioning AND TP
//! for intermediate sharding"). Attention and dense layers stay TP-sharded over all units.
//! The slowest group sets the pace ("The overall MoE layer performance is determined by the
//! slowest EP group": NxD Inference "Deep dive: Mixture of Experts", updated 2025-12-01):
//! see [`ModelCost::slowest_group_experts`] and [`ModelCost::slowest_group_assignments`].
//! Shared experts are TP-sharded like a dense MLP; the router is replicated. Which experts a
//! step reads is in [`ModelCost::expected_experts`].
//!
//! Sliding-window and chunked attention layers keep and read at most `window` tokens of
//! KV cache per sequence ([`ModelCost::kv_bytes`]); for chunked layers this is an upper
//! bound (a token sees the `c mod window` tokens of its own chunk).

use super::dtype::WeightsDtype;
use crate::model::architecture::{Architecture, QuantScope};

/// Bytes of one KV-cache element. This project's assumption: the cache is kept in bf16/fp16
/// whatever the weights dtype (the published Neuron and GPU runs used here do so).
pub const KV_BYTES_PER_ELEMENT: f64 = 2.0;

/// Bytes of one activation element exchanged by the TP all-reduces (bf16/fp16).
pub const ACTIVATION_BYTES: f64 = 2.0;

/// Per-unit cost of a model sharded over `tp` units.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCost {
    pub tp: u32,
    /// Expert-parallel degree: groups of units the routed experts are spread over (1: every
    /// expert sharded over every unit).
    pub ep: u32,
    pub layers: f64,
    pub hidden: f64,
    pub head_dim: f64,
    /// Query heads per unit (after padding).
    pub heads: f64,
    /// KV heads per unit (after padding or replication).
    pub kv_heads: f64,
    /// Dense MLP intermediate width per unit.
    pub intermediate: f64,
    /// Vocabulary rows per unit.
    pub vocab: f64,
    pub tied_embeddings: bool,
    /// Bytes per parameter of the embeddings, LM head and (unless quantised) the layers.
    pub weight_bytes_per_param: f64,
    /// Parameters of all layers on one unit except the routed experts: attention, norms,
    /// dense MLPs, shared experts, routers.
    pub fixed_layer_params: f64,
    /// Bytes per parameter of [`Self::fixed_layer_params`].
    pub layer_bytes_per_param: f64,
    /// Layers with a mixture-of-experts MLP (0 for a dense model).
    pub moe_layers: f64,
    /// Routed experts per MoE layer (`E`).
    pub experts: f64,
    /// Routed experts one unit holds a shard of, per MoE layer: `⌈E/ep⌉`.
    pub local_experts: f64,
    /// Intermediate width of one routed expert's shard on one unit: `⌈I_e/(tp/ep)⌉`.
    pub expert_width: f64,
    /// Expected largest of `ep` standard normal draws (the busiest group's excess load in
    /// standard deviations), computed once.
    pub busiest_group_z: f64,
    /// Routed experts per token (`k`).
    pub experts_per_token: f64,
    /// Parameters of one routed expert's shard of one layer on one unit.
    pub expert_params: f64,
    /// Bytes per parameter of the routed experts.
    pub expert_bytes_per_param: f64,
    /// Sliding-window or chunked layers.
    pub windowed_layers: f64,
    /// Tokens a windowed layer keeps (infinite without windowed layers).
    pub window: f64,
}

fn ceil_div(a: usize, b: usize) -> f64 {
    a.div_ceil(b.max(1)) as f64
}

impl ModelCost {
    /// Cost of `arch` sharded over `tp` units with weights stored as `dtype`. A quantisation
    /// the checkpoint declares lowers the bytes of the weights it covers when it is smaller
    /// than `dtype` (gpt-oss experts stay MXFP4 when served in bf16).
    pub fn new(arch: &Architecture, tp: u32, dtype: WeightsDtype) -> Self {
        Self::sharded(arch, tp, 1, dtype)
    }

    /// As [`Self::new`] with the routed experts spread over `ep` groups of `tp/ep` units
    /// (assumed to divide; see [`crate::projection::step::Deployment::check_experts`]).
    pub fn sharded(arch: &Architecture, tp: u32, ep: u32, dtype: WeightsDtype) -> Self {
        let cfg = &arch.base;
        let t = tp.max(1) as usize;
        let h = cfg.hidden_size as f64;
        let hd = cfg.head_dim() as f64;
        let heads = ceil_div(cfg.num_attention_heads, t);
        let kv_heads = ceil_div(cfg.num_key_value_heads, t);
        let intermediate = ceil_div(cfg.intermediate_size, t);
        let a = &arch.attention;
        let (q, kv) = (heads * hd, kv_heads * hd);
        let mut attention = 2.0 * h * q + 2.0 * h * kv + a.norms_per_layer as f64 * h;
        if a.qkv_bias {
            attention += q + 2.0 * kv;
        }
        if a.o_bias {
            attention += h;
        }
        if a.qk_norm {
            attention += 2.0 * hd;
        }
        if a.sinks {
            attention += heads;
        }
        let layers = cfg.num_hidden_layers as f64;
        let moe_layers = arch.moe_layers() as f64;
        let mut fixed = layers * attention + (layers - moe_layers) * 3.0 * h * intermediate;
        let ep = if arch.experts.is_some() { ep.max(1) } else { 1 };
        let (mut experts, mut per_token, mut expert_params) = (0.0, 0.0, 0.0);
        let (mut local_experts, mut expert_width) = (0.0, 0.0);
        if let Some(e) = &arch.experts {
            let shared_width =
                ceil_div(e.shared_intermediate_size.unwrap_or(e.intermediate_size), t);
            let router = h * e.count as f64 + if e.router_bias { e.count as f64 } else { 0.0 };
            fixed += moe_layers * (e.shared as f64 * 3.0 * h * shared_width + router);
            let width = ceil_div(e.intermediate_size, (t / ep as usize).max(1));
            expert_params = 3.0 * h * width + if e.expert_bias { 2.0 * width + h } else { 0.0 };
            experts = e.count as f64;
            local_experts = ceil_div(e.count, ep as usize);
            expert_width = width;
            per_token = e.per_token as f64;
        }
        let bytes = dtype.bytes_per_param();
        let quant = |scope: QuantScope| {
            arch.quantization
                .as_ref()
                .filter(|q| q.scope == scope || q.scope == QuantScope::Layers)
                .map_or(bytes, |q| bytes.min(q.bits_per_weight / 8.0))
        };
        ModelCost {
            tp: tp.max(1),
            ep,
            layers,
            hidden: h,
            head_dim: hd,
            heads,
            kv_heads,
            intermediate,
            vocab: ceil_div(cfg.vocab_size, t),
            tied_embeddings: cfg.tie_word_embeddings,
            weight_bytes_per_param: bytes,
            fixed_layer_params: fixed,
            layer_bytes_per_param: arch
                .quantization
                .as_ref()
                .filter(|q| q.scope == QuantScope::Layers)
                .map_or(bytes, |q| bytes.min(q.bits_per_weight / 8.0)),
            moe_layers,
            experts,
            local_experts,
            expert_width,
            busiest_group_z: expected_max_std_normal(ep),
            experts_per_token: per_token,
            expert_params,
            expert_bytes_per_param: quant(QuantScope::Experts),
            windowed_layers: arch.windowed_layers() as f64,
            window: arch.attention.window.map_or(f64::INFINITY, |w| w as f64),
        }
    }

    /// Parameters of all decoder layers stored on one unit (its share of every routed
    /// expert).
    pub fn layer_params(&self) -> f64 {
        self.fixed_layer_params + self.moe_layers * self.local_experts * self.expert_params
    }

    /// Parameters of all decoder layers one token goes through on one unit (its `k` routed
    /// experts only, `k/ep` of them on average with expert parallelism); equal to
    /// [`Self::layer_params`] for a dense model.
    pub fn active_layer_params(&self) -> f64 {
        self.fixed_layer_params
            + self.moe_layers * self.experts_per_token / self.ep as f64 * self.expert_params
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

    /// Weight bytes stored on one unit (memory fit: every expert). Norms are counted at the
    /// weights dtype too.
    pub fn weight_bytes(&self) -> f64 {
        let outside_layers = self.stored_params() - self.layer_params();
        outside_layers * self.weight_bytes_per_param
            + self.fixed_layer_params * self.layer_bytes_per_param
            + self.moe_layers
                * self.local_experts
                * self.expert_params
                * self.expert_bytes_per_param
    }

    /// Expected number of distinct routed experts of one MoE layer that a step of `tokens`
    /// tokens touches: `E·(1 − (1 − k/E)^tokens)`. Assumption: each token picks its `k`
    /// experts uniformly and independently of the other tokens (a load-balanced router;
    /// real routers are skewed, which touches fewer). 0 for a dense model.
    pub fn expected_experts(&self, tokens: f64) -> f64 {
        if self.experts <= 0.0 {
            return 0.0;
        }
        let e = self.experts;
        e * (1.0 - (1.0 - self.experts_per_token / e).powf(tokens.max(1.0)))
    }

    /// Expected routed experts of one MoE layer touched by a step of `tokens` tokens in the
    /// busiest of the `ep` expert groups (the one whose unit reads the most expert weights).
    /// Each of a group's `m = ⌈E/ep⌉` experts is touched with `p = 1 − (1 − k/E)^tokens`;
    /// taking the `m` as independent, a group touches `Binomial(m, p)` of them and the
    /// busiest of `ep` independent groups `E[max] = Σ_{j=1..m} (1 − F(j−1)^ep)`, with `F` the
    /// binomial distribution function (an approximation: a token's `k` experts are distinct,
    /// which makes the groups slightly dependent). With `ep = 1` this is
    /// [`Self::expected_experts`].
    pub fn slowest_group_experts(&self, tokens: f64) -> f64 {
        if self.experts <= 0.0 {
            return 0.0;
        }
        let p = 1.0 - (1.0 - self.experts_per_token / self.experts).powf(tokens.max(1.0));
        if self.ep <= 1 {
            return self.local_experts * p;
        }
        expected_max_binomial(self.local_experts as u32, p, self.ep)
    }

    /// Expected (token, expert) assignments of a step of `tokens` tokens that land on the
    /// busiest of the `ep` expert groups: the group's share of the expert matmuls. The
    /// `tokens·k` assignments fall on each group with probability `1/ep` (uniform routing);
    /// the busiest group's count is taken from the normal approximation of the binomial,
    /// `μ + σ·c_ep` with `μ = tokens·k/ep`, `σ² = tokens·k·(1/ep)(1 − 1/ep)` and `c_ep` the
    /// expected largest of `ep` standard normal draws, capped at `tokens·min(k, ⌈E/ep⌉)`
    /// (a group holds at most that many of a token's experts). With `ep = 1`: `tokens·k`.
    pub fn slowest_group_assignments(&self, tokens: f64) -> f64 {
        let n = tokens.max(0.0) * self.experts_per_token;
        if self.ep <= 1 || n == 0.0 {
            return n;
        }
        let g = self.ep as f64;
        let mean = n / g;
        let spread = (n * (1.0 / g) * (1.0 - 1.0 / g)).sqrt();
        let cap = tokens * self.experts_per_token.min(self.local_experts);
        (mean + spread * self.busiest_group_z).clamp(mean, cap.max(mean))
    }

    /// Expected (token, expert) slots one unit computes in a prefill of `tokens` tokens when
    /// every routed expert a step touches computes whole blocks of `block` tokens (NxD
    /// Inference's blockwise matmul: "Each block contains tokens assigned to only one
    /// expert", blocks with only padding skipped by its dynamic loop; MoE deep dive, updated
    /// 2025-12-01). An expert receives `n ~ Binomial(tokens·k, 1/E)` tokens and computes
    /// `⌈n/block⌉` blocks, `E[⌈n/block⌉] = P(n > 0) + Σ_{j≥1} P(n > j·block)`, with
    /// `P(n > 0) = 1 − (1 − k/E)^tokens` and the rest from the normal approximation of the
    /// binomial (continuity-corrected). One unit computes its `⌈E/ep⌉` experts' blocks, and
    /// never fewer slots than its busiest-group assignments.
    pub fn blockwise_expert_slots(&self, tokens: f64, block: u32) -> f64 {
        let assignments = self.slowest_group_assignments(tokens);
        if self.experts <= 0.0 || block == 0 || tokens <= 0.0 {
            return assignments;
        }
        let b = block as f64;
        let n = tokens * self.experts_per_token;
        let mean = n / self.experts;
        let sd = (mean * (1.0 - 1.0 / self.experts)).sqrt();
        let mut blocks = 1.0 - (1.0 - self.experts_per_token / self.experts).powf(tokens);
        // Blocks far below the mean are certain (tail 1 to within 1e-15): counted at once.
        let sure = ((mean - 8.0 * sd - 0.5) / b).floor().max(0.0);
        blocks += sure;
        let mut j = sure + 1.0;
        while j * b < n {
            let tail = if sd > 0.0 {
                1.0 - std_normal_cdf((j * b + 0.5 - mean) / sd)
            } else if mean > j * b {
                1.0
            } else {
                0.0
            };
            if tail < 1e-12 && j * b > mean {
                break;
            }
            blocks += tail;
            j += 1.0;
        }
        (self.local_experts * b * blocks).max(assignments)
    }

    /// Weight bytes read from memory by one unit in a forward step over `tokens` tokens
    /// (the batch in a decode step, batch × prompt in a prefill): every layer's fixed part,
    /// the routed experts the step touches (in the busiest expert group), and the LM head;
    /// the embedding table is only gathered row by row.
    pub fn weight_bytes_per_step(&self, tokens: f64) -> f64 {
        self.fixed_layer_params * self.layer_bytes_per_param
            + self.moe_layers
                * self.slowest_group_experts(tokens)
                * self.expert_params
                * self.expert_bytes_per_param
            + self.lm_head_params() * self.weight_bytes_per_param
    }

    /// KV-cache bytes of one sequence at context `context` on one unit: K and V of this
    /// unit's KV heads, full-attention layers over the whole context, windowed layers over
    /// at most `window` tokens.
    pub fn kv_bytes(&self, context: f64) -> f64 {
        let full = self.layers - self.windowed_layers;
        let tokens = full * context + self.windowed_layers * context.min(self.window);
        2.0 * tokens * self.kv_heads * self.head_dim * KV_BYTES_PER_ELEMENT
    }

    /// Matrix-multiply FLOPs of one unit outside the routed experts for a step of `tokens`
    /// tokens of which `seqs` produce logits: 2 FLOPs per parameter per token (Kaplan et al.
    /// 2020, arXiv:2001.08361, Table 1), the LM head once per sequence.
    pub fn dense_matmul_flops(&self, tokens: f64, seqs: f64) -> f64 {
        2.0 * (tokens * self.fixed_layer_params + seqs * self.lm_head_params())
    }

    /// Matrix-multiply FLOPs of the routed experts of a step of `tokens` tokens on a unit of
    /// the busiest expert group: 2 per parameter per assignment.
    pub fn expert_matmul_flops(&self, tokens: f64) -> f64 {
        2.0 * self.moe_layers * self.slowest_group_assignments(tokens) * self.expert_params
    }

    /// Matrix-multiply FLOPs of one unit for a prefill of `batch` prompts of `tokens` each:
    /// the layers over every token (active parameters), and the LM head for the last token
    /// of each prompt only.
    pub fn prefill_matmul_flops(&self, batch: f64, tokens: f64) -> f64 {
        self.dense_matmul_flops(batch * tokens, batch) + self.expert_matmul_flops(batch * tokens)
    }

    /// Matrix-multiply FLOPs of one unit for one decode step of `batch` sequences.
    pub fn decode_matmul_flops(&self, batch: f64) -> f64 {
        self.dense_matmul_flops(batch, batch) + self.expert_matmul_flops(batch)
    }

    /// Attention FLOPs of one unit: `queries` query tokens against `keys` cached tokens,
    /// 2 FLOPs per multiply-add for Q·Kᵀ and again for A·V, over this unit's query heads
    /// (GQA shares K/V, not the dot products). `causal` halves the work of a prefill whose
    /// kernel skips the masked half. Windowed layers see at most `window` keys per query: a
    /// causal prefill of `s` tokens has `s²/2` pairs when `s ≤ W`, `W·s − W²/2` beyond.
    pub fn attention_flops(&self, batch: f64, queries: f64, keys: f64, causal: bool) -> f64 {
        let per_pair = 4.0 * batch * self.heads * self.head_dim;
        let full_layers = self.layers - self.windowed_layers;
        let full_pairs = if causal {
            queries * keys / 2.0
        } else {
            queries * keys
        };
        let w = self.window;
        let window_pairs = if self.windowed_layers == 0.0 {
            0.0
        } else if causal {
            if keys <= w {
                queries * keys / 2.0
            } else {
                queries / keys * (w * keys - w * w / 2.0)
            }
        } else {
            queries * keys.min(w)
        };
        per_pair * (full_layers * full_pairs + self.windowed_layers * window_pairs)
    }

    /// Bytes one all-reduce moves per unit for `tokens` activations of width `hidden`.
    pub fn allreduce_bytes(&self, tokens: f64) -> f64 {
        tokens * self.hidden * ACTIVATION_BYTES
    }
}

/// `Φ(x)`, the standard normal distribution function, from `erfc` by Abramowitz and Stegun
/// 7.1.26 (absolute error below 1.5e-7).
fn std_normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erfc = poly * (-z * z).exp();
    if x >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

/// `E[max]` of `groups` independent `Binomial(m, p)` draws: `Σ_{j=1..m} (1 − F(j−1)^groups)`.
fn expected_max_binomial(m: u32, p: f64, groups: u32) -> f64 {
    if p <= 0.0 || m == 0 {
        return 0.0;
    }
    if p >= 1.0 {
        return m as f64;
    }
    let g = groups as i32;
    let mut pmf = (1.0 - p).powi(m as i32);
    let mut cdf = 0.0;
    let mut sum = 0.0;
    for j in 0..m {
        cdf += pmf;
        sum += 1.0 - cdf.min(1.0).powi(g);
        pmf *= (m - j) as f64 / (j + 1) as f64 * p / (1.0 - p);
    }
    sum
}

/// Expected largest of `n` independent standard normal draws, `∫ x·d(Φ(x)ⁿ)`, summed over
/// a fine grid on [−10, 10] (0 for `n ≤ 1`).
fn expected_max_std_normal(n: u32) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    const STEPS: usize = 8000;
    let h = 20.0 / STEPS as f64;
    let (mut prev, mut sum) = (0.0, 0.0);
    for i in 1..=STEPS {
        let b = -10.0 + i as f64 * h;
        let pow = std_normal_cdf(b).powi(n as i32);
        sum += (b - 0.5 * h) * (pow - prev);
        prev = pow;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::LlamaConfig;

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
        let c = ModelCost::new(&tiny().into(), 1, WeightsDtype::Bf16);
        // per layer: q 8x8 + o 8x8 = 128; k,v 2x8x4 = 64; mlp 3x8x16 = 384; norms 16 -> 592
        assert_eq!(c.layer_params(), 2.0 * 592.0);
        assert_eq!(c.lm_head_params(), 80.0);
        // embeddings 80 + layers 1184 + head 80 + final norm 8
        assert_eq!(c.stored_params(), 1352.0);
        assert_eq!(c.stored_params() as u64, tiny().parameter_count());
        assert_eq!(c.weight_bytes(), 2704.0);
        // read per step: layers + head = 1264 params x 2 bytes
        assert_eq!(c.weight_bytes_per_step(1.0), 2528.0);
        // KV per token: 2 (K,V) x 2 layers x 1 head x 4 dims x 2 bytes
        assert_eq!(c.kv_bytes(1.0), 32.0);
    }

    #[test]
    fn tiny_model_flops_by_hand() {
        let c = ModelCost::new(&tiny().into(), 1, WeightsDtype::Bf16);
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
        let c = ModelCost::new(&cfg.into(), 24, WeightsDtype::Bf16);
        assert_eq!(c.heads, 2.0); // 40 heads padded to 48 over 24 units
        assert_eq!(c.kv_heads, 1.0); // 8 KV heads replicated to 24
        assert_eq!(c.intermediate, 1.0); // 16 / 24 rounded up
    }

    #[test]
    fn int4_halves_int8_bytes() {
        let a = ModelCost::new(&tiny().into(), 1, WeightsDtype::Int8).weight_bytes();
        let b = ModelCost::new(&tiny().into(), 1, WeightsDtype::Int4).weight_bytes();
        assert_eq!(a, 2.0 * b);
    }

    fn tiny_moe() -> Architecture {
        let mut a: Architecture = tiny().into();
        a.experts = Some(crate::model::architecture::Experts {
            count: 4,
            per_token: 2,
            intermediate_size: 4,
            shared: 0,
            shared_intermediate_size: None,
            layer_step: 1,
            dense_layers: vec![],
            router_bias: false,
            expert_bias: false,
        });
        a
    }

    #[test]
    fn moe_counts_by_hand() {
        let c = ModelCost::new(&tiny_moe(), 1, WeightsDtype::Bf16);
        // per layer: attention 208 (q,o 128; k,v 64; norms 16) + router 8x4 = 240
        assert_eq!(c.fixed_layer_params, 480.0);
        assert_eq!(c.expert_params, 96.0); // 3 x 8 x 4
        assert_eq!(c.layer_params(), 480.0 + 2.0 * 4.0 * 96.0);
        assert_eq!(c.active_layer_params(), 480.0 + 2.0 * 2.0 * 96.0);
        assert_eq!(c.stored_params() as u64, tiny_moe().parameter_count());
        // memory: embeddings 80 + head 80 + norm 8 + layers 1248, 2 bytes each
        assert_eq!(c.weight_bytes(), 2.0 * (168.0 + 1248.0));
        // distinct experts: 4 (1 - (1 - 2/4)^n): 2, 3, 3.5 for n = 1, 2, 3 tokens
        assert_eq!(c.expected_experts(1.0), 2.0);
        assert_eq!(c.expected_experts(2.0), 3.0);
        assert_eq!(c.expected_experts(3.0), 3.5);
        // a decode step of batch 2 reads the fixed part, 3 experts per layer and the head
        assert_eq!(
            c.weight_bytes_per_step(2.0),
            2.0 * (480.0 + 2.0 * 3.0 * 96.0 + 80.0)
        );
        // FLOPs from the active parameters: 2 x (864 + 80); prefill 2 x (3 x 864 + 80)
        assert_eq!(c.decode_matmul_flops(1.0), 1888.0);
        assert_eq!(c.prefill_matmul_flops(1.0, 3.0), 5344.0);
        // TP 2 halves each expert's intermediate width: 3 x 8 x 2
        assert_eq!(
            ModelCost::new(&tiny_moe(), 2, WeightsDtype::Bf16).expert_params,
            48.0
        );
    }

    #[test]
    fn expected_largest_normal_draws_match_their_closed_forms() {
        // E[max] of 2 and 3 standard normals: 1/√π and 3/(2√π) (David & Nagaraja, Order
        // Statistics, 3rd ed., §3.2); of 4 and 10: 1.02938 and 1.53875 (Harter 1961 tables).
        let pi = std::f64::consts::PI;
        for (n, want) in [
            (1, 0.0),
            (2, 1.0 / pi.sqrt()),
            (3, 1.5 / pi.sqrt()),
            (4, 1.02938),
            (10, 1.53875),
        ] {
            let got = expected_max_std_normal(n);
            assert!((got - want).abs() < 1e-4, "n = {n}: {got} vs {want}");
        }
        // one group: the binomial mean; two groups of Binomial(2, 1/2): P(G ≤ 0) = 1/4,
        // P(G ≤ 1) = 3/4, so E[max] = (1 − 1/16) + (1 − 9/16) = 1.375
        assert!((expected_max_binomial(2, 0.5, 1) - 1.0).abs() < 1e-12);
        assert!((expected_max_binomial(2, 0.5, 2) - 1.375).abs() < 1e-12);
        assert_eq!(expected_max_binomial(3, 1.0, 4), 3.0);
    }

    #[test]
    fn expert_parallelism_by_hand() {
        // tiny MoE (E = 4, k = 2, expert width 4) over TP 2: experts sharded over both
        // units (ep 1), or two groups of one unit each holding two whole experts (ep 2)
        let tp = ModelCost::new(&tiny_moe(), 2, WeightsDtype::Bf16);
        let ep = ModelCost::sharded(&tiny_moe(), 2, 2, WeightsDtype::Bf16);
        assert_eq!(
            (ep.local_experts, ep.expert_width, ep.expert_params),
            (2.0, 4.0, 96.0)
        );
        assert_eq!(
            (tp.local_experts, tp.expert_width, tp.expert_params),
            (4.0, 2.0, 48.0)
        );
        // per layer on one unit: attention q,o 2x8x4 + k,v 2x8x4 + norms 16 = 144, router
        // 32: fixed 2 x 176; the same expert weights are stored either way
        assert_eq!(ep.fixed_layer_params, 352.0);
        assert_eq!(ep.layer_params(), 352.0 + 2.0 * 2.0 * 96.0);
        assert_eq!(ep.layer_params(), tp.layer_params());
        // a decode step of one token: p = 1 − (1 − 2/4) = 1/2; TP reads X = 2 expert shards
        // of 48; the busier EP group 1.375 whole experts of 96 (see above)
        assert_eq!(tp.slowest_group_experts(1.0), 2.0);
        assert!((ep.slowest_group_experts(1.0) - 1.375).abs() < 1e-12);
        let bytes = |c: &ModelCost| c.weight_bytes_per_step(1.0) - 2.0 * (352.0 + 40.0);
        assert_eq!(bytes(&tp), 2.0 * 2.0 * 2.0 * 48.0);
        assert!((bytes(&ep) - 2.0 * 2.0 * 1.375 * 96.0).abs() < 1e-9);
        // its assignments: TP 2 per unit; EP mean 1, σ = √(2·½·½), busiest 1 + σ/√π
        assert_eq!(tp.slowest_group_assignments(1.0), 2.0);
        let want = 1.0 + 0.5f64.sqrt() / std::f64::consts::PI.sqrt();
        assert!((ep.slowest_group_assignments(1.0) - want).abs() < 1e-4);
        // a long prefill evens the groups out: within 1% of the mean at 10^5 tokens
        let n = 1e5;
        assert!(ep.slowest_group_assignments(n) / (n * 2.0 / 2.0) < 1.01);
        // a dense model ignores the expert-parallel degree
        let dense = ModelCost::sharded(&tiny().into(), 2, 2, WeightsDtype::Bf16);
        assert_eq!(dense, ModelCost::new(&tiny().into(), 2, WeightsDtype::Bf16));
    }

    #[test]
    fn blockwise_prefill_computes_whole_blocks_by_hand() {
        // Φ against tables: Φ(0) = 0.5, Φ(1.96) = 0.97500, Φ(−1) = 0.15866
        assert!((std_normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((std_normal_cdf(1.96) - 0.97500).abs() < 1e-5);
        assert!((std_normal_cdf(-1.0) - 0.15866).abs() < 1e-5);
        let c = ModelCost::new(&tiny_moe(), 1, WeightsDtype::Bf16);
        // one token (E = 4, k = 2), blocks of 4: each expert is touched with p = 1/2 and
        // then computes one whole block: 4 experts × 4 slots × 1/2 = 8 (against 2 tokens)
        assert!((c.blockwise_expert_slots(1.0, 4) - 8.0).abs() < 1e-12);
        // 8 tokens: n ~ Bin(16, 1/4), mean 4, σ = √3; E[blocks] = P(n>0) + P(n>4) +
        // P(n>8) + P(n>12) = (1 − 2⁻⁸) + (1 − Φ(0.2887)) + (1 − Φ(2.5981)) + ~0
        // = 0.99609 + 0.38641 + 0.00469 (tables: Φ(0.2887) = 0.61359, Φ(2.5981) = 0.99531)
        let want = 4.0 * 4.0 * (0.99609 + 0.38641 + 0.00469);
        assert!((c.blockwise_expert_slots(8.0, 4) - want).abs() < 2e-3);
        // blocks as large as the whole step: one block per touched expert
        let x = c.expected_experts(8.0);
        assert!((c.blockwise_expert_slots(8.0, 64) - 64.0 * x).abs() < 1e-9);
        // never below the tokens themselves
        assert!(c.blockwise_expert_slots(1e4, 4) >= 2e4);
    }

    #[test]
    fn mxfp4_experts_keep_their_bytes_under_bf16() {
        let mut a = tiny_moe();
        a.quantization = Some(crate::model::architecture::Quantization {
            method: "mxfp4".into(),
            bits_per_weight: 4.25,
            scope: crate::model::architecture::QuantScope::Experts,
        });
        let c = ModelCost::new(&a, 1, WeightsDtype::Bf16);
        // experts 2 layers x 4 x 96 at 4.25/8 bytes; the rest (168 + 480) at 2
        assert_eq!(c.weight_bytes(), 2.0 * 648.0 + 768.0 * 4.25 / 8.0);
        // int4 serving is below MXFP4 for the experts: int4 wins
        let c = ModelCost::new(&a, 1, WeightsDtype::Int4);
        assert_eq!(c.expert_bytes_per_param, 0.5);
    }

    #[test]
    fn sliding_window_by_hand() {
        let mut a: Architecture = tiny().into();
        a.attention.layer_pattern = vec![
            crate::model::architecture::LayerKind::Sliding,
            crate::model::architecture::LayerKind::Full,
        ];
        a.attention.window = Some(4);
        let c = ModelCost::new(&a, 1, WeightsDtype::Bf16);
        // K,V x 1 head x 4 dims x 2 bytes = 16 per token per layer: full layer 10 tokens,
        // sliding layer capped at 4
        assert_eq!(c.kv_bytes(10.0), 16.0 * (10.0 + 4.0));
        assert_eq!(c.kv_bytes(3.0), 16.0 * (3.0 + 3.0));
        // decode, 1 query over 10 keys: 4 x 2 heads x 4 dims x (10 + 4)
        assert_eq!(c.attention_flops(1.0, 1.0, 10.0, false), 32.0 * 14.0);
        // causal prefill of 10: full layer 10²/2 = 50 pairs, sliding 4·10 − 4²/2 = 32
        assert_eq!(
            c.attention_flops(1.0, 10.0, 10.0, true),
            32.0 * (50.0 + 32.0)
        );
        // within the window a sliding layer is a full one
        assert_eq!(c.attention_flops(1.0, 4.0, 4.0, true), 32.0 * 16.0);
    }

    #[test]
    fn every_shipped_card_counts_the_same_parameters_here() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        for card in crate::model::card::load_all(&dir).unwrap() {
            let c = ModelCost::new(&card.architecture, 1, WeightsDtype::Bf16);
            assert_eq!(
                c.stored_params() as u64,
                card.architecture.parameter_count(),
                "{}",
                card.name
            );
        }
    }
}
