//! The cost of one engine step (a prefill, a decode step, or a vLLM-style mixed step) for a
//! deployment: how a model is compiled and served (TP, replicas, slots, compiled length,
//! context-encoding batch, buckets, chunked prefill). [`super::latency::estimate`] (one
//! static batch) and the serving simulator both build on it, so they agree by construction.
//!
//! Per TP unit, with the roofline and all-reduce terms of [`super::latency`]:
//! * a prefill of `r` rows of `s` tokens: `t_prefill + max(compute, weights + KV writes)
//!   + collectives(r·s)`;
//! * a decode step over rows with attention lengths `aᵢ`: `t_step + rows·t_seq
//!   + max(compute, weights + Σaᵢ·kv) + collectives(rows)`, where `t_seq` is the fitted
//!   per-sequence cost ([`super::params::LatencyParams::decode_seq_ms`]).
//!
//! Static shapes (Neuron): a graph runs its compiled shape whatever is busy. The
//! token-generation graph runs all `max_num_seqs` rows (NxD Inference compiles it for
//! `tkg_batch_size`, default `batch_size`) with attention over the bucket of the longest
//! context; the context-encoding graph encodes `ctx_batch_size` rows (vLLM on Neuron sets 1)
//! padded to the bucket of the longest prompt. Sources: NxD Inference `NeuronConfig`
//! (neuronx-distributed-inference `src/neuronx_distributed_inference/models/config.py`:
//! `ctx_batch_size` and `tkg_batch_size` default to `batch_size`), its feature guide
//! (Bucketing: the smallest bucket that fits; default buckets powers of two from 128 to
//! the maximum length), and vLLM's Neuron model loader
//! (`vllm/model_executor/model_loader/neuronx_distributed.py`, `_get_default_neuron_config`:
//! `ctx_batch_size=1`, `batch_size=max_num_seqs`, `seq_len=max_model_len`,
//! `is_continuous_batching=True`).

use super::bucket::Buckets;
use super::dtype::WeightsDtype;
use super::model_cost::ModelCost;
use super::params::LatencyParams;
use super::profile::Profile;
use super::setting::{Setting, SettingError};
use crate::model::architecture::Architecture;
use crate::model::config::LlamaConfig;
use anyhow::{bail, Result};

/// vLLM's token budget per step with chunked prefill for an OpenAI-compatible server on a
/// GPU below 70 GiB (`EngineArgs.get_batch_defaults`, `vllm/engine/arg_utils.py`:
/// `UsageContext.OPENAI_API_SERVER: 2048`; 8192 on GPUs of 70 GiB or more but A100).
pub const DEFAULT_MAX_NUM_BATCHED_TOKENS: u32 = 2048;

/// vLLM's budget on GPUs with 70 GiB or more that are not A100 (same source).
pub const LARGE_GPU_MAX_NUM_BATCHED_TOKENS: u32 = 8192;

const GIB: f64 = 1073741824.0;

/// The expert-parallel degree of a report written without one (every expert TP-sharded):
/// the serde default of `ep_degree`.
pub fn single_expert_group() -> u32 {
    1
}

/// How a model is compiled and served on one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// Tensor-parallel degree of one replica.
    pub tp: u32,
    /// Data-parallel replicas on the instance.
    pub dp: u32,
    /// Expert-parallel degree inside one replica's TP group (1: routed experts TP-sharded;
    /// see [`super::model_cost`]).
    pub ep: u32,
    /// Continuous-batching slots of one replica (the compiled batch on Neuron).
    pub max_num_seqs: u32,
    /// Compiled positions (Neuron) or maximum model length (GPU).
    pub seq_len: u32,
    /// Prompts encoded together by one context-encoding call (Neuron).
    pub ctx_batch_size: u32,
    /// Buckets for context encoding and token generation; `None`: the framework default.
    pub buckets: Option<Vec<u32>>,
    /// GPU: prefill chunks mixed into decode steps (vLLM's default).
    pub chunked_prefill: bool,
    /// GPU: token budget of one step.
    pub max_num_batched_tokens: u32,
    pub dtype: WeightsDtype,
}

impl Deployment {
    /// Refuses what the model cannot take: a compiled length beyond its positions, an
    /// expert-parallel degree for a dense model or above its experts.
    pub fn check_model(&self, arch: &Architecture) -> Result<()> {
        self.check_positions(&arch.base)?;
        self.check_experts(arch)
    }

    /// Refuses an expert-parallel degree for a dense model or above its routed experts.
    pub fn check_experts(&self, arch: &Architecture) -> Result<()> {
        if self.ep > 1 {
            let Some(e) = &arch.experts else {
                bail!(SettingError::new(
                    Setting::EpDegree,
                    format!(
                        " {} applies to mixture-of-experts models; this one is dense",
                        self.ep
                    )
                ));
            };
            if self.ep as usize > e.count {
                bail!(SettingError::new(
                    Setting::EpDegree,
                    format!(
                        " {} is more than the model's {} routed experts",
                        self.ep, e.count
                    )
                ));
            }
        }
        Ok(())
    }

    /// Refuses a compiled length beyond the model's positions.
    pub fn check_positions(&self, cfg: &LlamaConfig) -> Result<()> {
        let max_pos = cfg.max_position_embeddings as u64;
        if self.seq_len as u64 > max_pos {
            bail!(SettingError::new(
                Setting::SeqLen,
                format!(
                    " {} is more than the model's {max_pos} positions",
                    self.seq_len
                )
            ));
        }
        Ok(())
    }

    /// Checks the settings against each other and the profile; one line naming the
    /// setting.
    pub fn validate(&self, profile: &Profile) -> Result<()> {
        for (setting, v) in [
            (Setting::Tp, self.tp),
            (Setting::Dp, self.dp),
            (Setting::EpDegree, self.ep),
            (Setting::MaxNumSeqs, self.max_num_seqs),
            (Setting::SeqLen, self.seq_len),
            (Setting::CtxBatchSize, self.ctx_batch_size),
            (Setting::MaxNumBatchedTokens, self.max_num_batched_tokens),
        ] {
            if v == 0 {
                bail!(SettingError::new(setting, " must be at least 1"));
            }
        }
        if !self.tp.is_multiple_of(self.ep) {
            bail!(
                SettingError::new(Setting::EpDegree, format!(" {} does not divide ", self.ep))
                    .then(
                        Setting::Tp,
                        format!(
                            " {}: the expert groups split the TP group into equal parts",
                            self.tp
                        )
                    )
            );
        }
        if self.ctx_batch_size > self.max_num_seqs {
            bail!(SettingError::new(
                Setting::CtxBatchSize,
                format!(" {} is more than ", self.ctx_batch_size)
            )
            .then(
                Setting::MaxNumSeqs,
                format!(
                    " {}: a context-encoding call cannot hold more prompts than there are slots",
                    self.max_num_seqs
                )
            ));
        }
        if let Some(b) = &self.buckets {
            let buckets = |text: String| SettingError::new(Setting::Buckets, text);
            if b.is_empty() {
                bail!(buckets(
                    " is empty: expected increasing token counts, e.g. 128,512,2048".into()
                ));
            }
            if b[0] == 0 {
                bail!(buckets(
                    ": a bucket of 0 tokens (expected at least 1)".into()
                ));
            }
            if let Some(w) = b.windows(2).find(|w| w[1] <= w[0]) {
                bail!(buckets(format!(
                    " must increase: {} is followed by {}",
                    w[0], w[1]
                )));
            }
            let last = *b.last().unwrap_or(&0);
            if last > self.seq_len {
                bail!(buckets(format!(": bucket {last} is above ")).then(
                    Setting::SeqLen,
                    format!(" {} (the compiled positions)", self.seq_len)
                ));
            }
            if profile.runtime.static_shapes.is_none() {
                bail!(buckets(format!(
                    " applies to static-shape (Neuron) profiles; {} runs dynamic shapes",
                    profile.name
                )));
            }
        }
        Ok(())
    }
}

/// Per-unit hardware rates at the deployment's dtype.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    pub flops: f64,
    pub bandwidth: f64,
    pub link: f64,
    /// Usable memory of one unit, bytes.
    pub memory: f64,
}

impl Unit {
    pub fn of(profile: &Profile, dtype: WeightsDtype) -> Self {
        let per = profile.runtime.tp_units_per_chip.max(1) as f64;
        let chip = &profile.chip;
        Unit {
            flops: chip.peak_flops(dtype.compute_rate()) / per,
            bandwidth: chip.memory_bandwidth / per,
            link: chip
                .interconnect_bandwidth
                .map_or(f64::INFINITY, |b| b / per),
            memory: chip.memory_bytes / per * profile.runtime.usable_memory_fraction,
        }
    }
}

/// Seconds of one all-reduce of `bytes` over `tp` units.
fn allreduce_s(tp: u32, bytes: f64, link: f64, alpha_us: f64) -> f64 {
    if tp <= 1 {
        return 0.0;
    }
    let steps = (tp as f64).log2().ceil();
    let t = tp as f64;
    alpha_us * 1e-6 * steps + 2.0 * (t - 1.0) / t * bytes / link
}

/// Step costs of one replica of a deployment.
#[derive(Debug, Clone)]
pub struct StepModel {
    pub cost: ModelCost,
    pub unit: Unit,
    pub params: LatencyParams,
    pub causal: bool,
    /// Neuron-style static shapes.
    pub static_shapes: bool,
    pub dep: Deployment,
    /// Context-encoding buckets, ascending (empty without static shapes).
    pub ctx_buckets: Vec<u32>,
    /// Token-generation buckets, ascending, the last one `seq_len` (empty without static
    /// shapes).
    pub tkg_buckets: Vec<u32>,
    /// Factors on the time of steps with prompt work and of decode-only steps: 1 for the
    /// projection itself, the ends of the profile's error bar for its interval (see
    /// [`super::interval`] and [`StepModel::scaled`]).
    pub prefill_scale: f64,
    pub decode_scale: f64,
    /// Static shapes: the unscaled decode step over each token-generation bucket (a step
    /// depends on nothing else there), computed once; the simulator asks for it every step.
    tkg_step_s: Vec<f64>,
    /// Decode steps timed on this machine's model (the host profile of `simulate
    /// --host-check`), which then price decode steps instead of the roofline and per-row cost.
    measured: Option<super::measured_decode::MeasuredDecode>,
    /// Share of the matrix engine a routed expert's matmuls use: `min(1, w / tile)` for a
    /// sharded expert width `w` below the chip's tile width ("sharded intermediate
    /// dimensions are >= 128 for good tensor engine utilization": NxD Inference "Deep dive:
    /// Mixture of Experts", Configuring TP and EP, updated 2025-12-01); 1 otherwise.
    expert_matmul_share: f64,
    /// Tokens per block of the routed experts' prefill kernel (Neuron blockwise matmul;
    /// see [`ModelCost::blockwise_expert_slots`]), from the profile.
    moe_block: Option<u32>,
}

impl StepModel {
    /// The step model of `dep` (assumed validated) on `profile` with parameters `params`.
    pub fn new(
        cfg: &Architecture,
        profile: &Profile,
        params: &LatencyParams,
        dep: &Deployment,
    ) -> Self {
        let shapes = profile.runtime.static_shapes;
        let (ctx, tkg) = match (shapes, &dep.buckets) {
            (None, _) => (Vec::new(), Vec::new()),
            (Some(s), None) => {
                let all = Buckets::new(s.bucket_min, dep.seq_len).all();
                (all.clone(), all)
            }
            (Some(_), Some(b)) => {
                let mut tkg = b.clone();
                if tkg.last().is_none_or(|&l| l < dep.seq_len) {
                    tkg.push(dep.seq_len);
                }
                (b.clone(), tkg)
            }
        };
        let cost = ModelCost::sharded(&profile.runtime.serves(cfg), dep.tp, dep.ep, dep.dtype);
        let expert_matmul_share = match profile.chip.matmul_tile_width {
            Some(w) if cost.expert_width > 0.0 => (cost.expert_width / w as f64).min(1.0),
            _ => 1.0,
        };
        let mut m = StepModel {
            cost,
            expert_matmul_share,
            moe_block: profile.runtime.moe_block_size,
            unit: Unit::of(profile, dep.dtype),
            params: *params,
            causal: profile.runtime.causal_prefill_attention,
            static_shapes: shapes.is_some(),
            dep: dep.clone(),
            ctx_buckets: ctx,
            tkg_buckets: tkg,
            prefill_scale: 1.0,
            decode_scale: 1.0,
            tkg_step_s: Vec::new(),
            measured: profile
                .measured_decode
                .clone()
                .filter(|_| shapes.is_none() && dep.tp == 1),
        };
        let rows = m.compiled_rows() as f64;
        m.tkg_step_s = m
            .tkg_buckets
            .iter()
            .map(|&b| m.decode_rows_s(rows, b as f64))
            .collect();
        m
    }

    /// The same model with every step with prompt work taking `prefill` times as long and
    /// every decode-only step `decode` times: the slow (or, below 1, fast) end of an
    /// interval. A step mixing prompt chunks and decodes takes the prefill factor.
    pub fn scaled(&self, prefill: f64, decode: f64) -> StepModel {
        StepModel {
            prefill_scale: self.prefill_scale * prefill,
            decode_scale: self.decode_scale * decode,
            ..self.clone()
        }
    }

    /// Largest prompt the context-encoding graphs accept.
    pub fn max_prompt(&self) -> u32 {
        self.ctx_buckets.last().copied().unwrap_or(self.dep.seq_len)
    }

    /// The context bucket a prompt is padded to (the prompt itself without static shapes);
    /// `None` when it exceeds every bucket.
    pub fn ctx_bucket(&self, prompt: u32) -> Option<u32> {
        if !self.static_shapes {
            return Some(prompt);
        }
        self.ctx_buckets.iter().copied().find(|&b| b >= prompt)
    }

    /// The token-generation bucket a decode step at context `ctx` attends over (the context
    /// itself without static shapes, or beyond the largest bucket).
    pub fn tkg_bucket(&self, ctx: u32) -> u32 {
        self.tkg_buckets
            .iter()
            .copied()
            .find(|&b| b >= ctx)
            .unwrap_or(ctx)
    }

    /// Refuses a request the deployment cannot serve: longer than the compiled length, or
    /// a prompt beyond the largest context bucket.
    pub fn check_request(&self, input: u32, output: u32) -> Result<()> {
        let total = input as u64 + output as u64;
        if total > self.dep.seq_len as u64 {
            bail!(SettingError::new(
                Setting::SeqLen,
                format!(
                    " {} is below input + output = {input} + {output} = {total} tokens",
                    self.dep.seq_len
                )
            ));
        }
        if self.static_shapes && input > self.max_prompt() {
            bail!(
                "a {input}-token prompt is longer than the largest context-encoding bucket ({})",
                self.max_prompt()
            );
        }
        Ok(())
    }

    /// Compute time of `dense` matmul FLOPs, `expert` routed-expert matmul FLOPs and `attn`
    /// attention FLOPs on one unit.
    fn compute_s(&self, dense: f64, expert: f64, attn: f64) -> f64 {
        let p = &self.params;
        let mm_rate = self.unit.flops * p.compute_efficiency;
        dense / mm_rate
            + expert / (mm_rate * self.expert_matmul_share)
            + attn / (self.unit.flops * p.attention_efficiency)
    }

    fn mem_s(&self, bytes: f64) -> f64 {
        bytes / (self.unit.bandwidth * self.params.bandwidth_efficiency)
    }

    fn collectives_s(&self, tokens: f64) -> f64 {
        2.0 * self.cost.layers
            * allreduce_s(
                self.dep.tp,
                self.cost.allreduce_bytes(tokens),
                self.unit.link,
                self.params.collective_latency_us,
            )
    }

    /// One prefill call encoding `rows` prompts of `len` tokens each (already padded).
    pub fn prefill_s(&self, rows: f64, len: f64) -> f64 {
        let c = &self.cost;
        let expert = match self.moe_block {
            Some(b) => {
                2.0 * c.moe_layers * c.blockwise_expert_slots(rows * len, b) * c.expert_params
            }
            None => c.expert_matmul_flops(rows * len),
        };
        let compute = self.compute_s(
            c.dense_matmul_flops(rows * len, rows),
            expert,
            c.attention_flops(rows, len, len, self.causal),
        );
        let mem = self.mem_s(c.weight_bytes_per_step(rows * len) + rows * c.kv_bytes(len));
        (self.params.prefill_overhead_ms * 1e-3 + compute.max(mem) + self.collectives_s(rows * len))
            * self.prefill_scale
    }

    /// One decode step of `rows` sequences that read `kv_read` bytes of KV cache and do
    /// `attn_flops` of attention between them.
    fn decode_step_s(&self, rows: f64, kv_read: f64, attn_flops: f64) -> f64 {
        if let Some(m) = &self.measured {
            // The timed step of this many rows, plus (or less) the KV bytes read beyond (or
            // short of) the timed context, at the memory rate.
            let timed_kv = rows * self.cost.kv_bytes(m.context);
            let t = m.step_s(rows) + self.mem_s(kv_read) - self.mem_s(timed_kv);
            return t.max(0.0) * self.decode_scale;
        }
        let c = &self.cost;
        let compute = self.compute_s(
            c.dense_matmul_flops(rows, rows),
            c.expert_matmul_flops(rows),
            attn_flops,
        );
        let mem = self.mem_s(c.weight_bytes_per_step(rows) + kv_read);
        let p = &self.params;
        ((p.step_overhead_ms + rows * p.decode_seq_ms) * 1e-3
            + compute.max(mem)
            + self.collectives_s(rows))
            * self.decode_scale
    }

    /// One decode step of `rows` sequences, each attending over `a` cached tokens.
    pub fn decode_rows_s(&self, rows: f64, a: f64) -> f64 {
        let c = &self.cost;
        self.decode_step_s(
            rows,
            rows * c.kv_bytes(a),
            c.attention_flops(rows, 1.0, a, false),
        )
    }

    /// One decode step of one sequence per entry of `contexts` (its attention length).
    fn decode_contexts_s(&self, contexts: &[u32]) -> f64 {
        let c = &self.cost;
        let (kv, attn) = contexts.iter().fold((0.0, 0.0), |(kv, attn), &x| {
            let x = x as f64;
            (
                kv + c.kv_bytes(x),
                attn + c.attention_flops(1.0, 1.0, x, false),
            )
        });
        self.decode_step_s(contexts.len() as f64, kv, attn)
    }

    /// Rows a static decode step runs: the compiled batch.
    pub fn compiled_rows(&self) -> u32 {
        self.dep.max_num_seqs
    }

    /// One context-encoding call on a static-shape deployment for `prompts` (at most
    /// `ctx_batch_size` of them): the compiled `ctx_batch_size` rows padded to the bucket of
    /// the longest prompt. Without static shapes: the prompts batched as they are.
    pub fn encode_s(&self, prompts: &[u32]) -> f64 {
        let longest = prompts.iter().copied().max().unwrap_or(1).max(1);
        if self.static_shapes {
            let len = self.ctx_bucket(longest).unwrap_or(self.max_prompt());
            self.prefill_s(self.dep.ctx_batch_size as f64, len as f64)
        } else {
            let chunks: Vec<(u32, u32)> = prompts.iter().map(|&p| (p.max(1), 0)).collect();
            self.mixed_step_s(&[], &chunks)
        }
    }

    /// One decode step for the busy slots at contexts `contexts` (tokens already cached,
    /// the new token's position included). Static shapes: the compiled batch over the bucket
    /// of the longest context, however many slots are busy. Otherwise the busy rows only.
    pub fn decode_s(&self, contexts: &[u32]) -> f64 {
        if self.static_shapes {
            let longest = contexts.iter().copied().max().unwrap_or(1);
            // The step of the longest context's bucket, as computed at construction (the
            // scale applied to it is the one `decode_rows_s` applies, so the result is the
            // same number).
            if let Some(i) = self.tkg_buckets.iter().position(|&b| b >= longest) {
                if let Some(t) = self.tkg_step_s.get(i) {
                    return t * self.decode_scale;
                }
            }
            let rows = self.compiled_rows() as f64;
            let a = self.tkg_bucket(longest) as f64;
            self.decode_rows_s(rows, a)
        } else {
            self.decode_contexts_s(contexts)
        }
    }

    /// A vLLM-style step (dynamic shapes): one token for each decoding sequence at contexts
    /// `decode`, and prefill chunks `(new tokens, tokens already cached)`. Matmuls run over
    /// every token of the step, the LM head once per sequence, attention per sequence
    /// (causal within a chunk), and the KV bytes read and written. Equals [`Self::decode_s`]
    /// without chunks and [`Self::prefill_s`] for one whole prompt alone.
    pub fn mixed_step_s(&self, decode: &[u32], chunks: &[(u32, u32)]) -> f64 {
        if chunks.is_empty() {
            return self.decode_contexts_s(decode);
        }
        let c = &self.cost;
        let n_dec = decode.len() as f64;
        let mut tokens = n_dec;
        let mut attn_flops = 0.0;
        let mut kv_read = 0.0;
        for &x in decode {
            attn_flops += c.attention_flops(1.0, 1.0, x as f64, false);
            kv_read += c.kv_bytes(x as f64);
        }
        for &(q, k) in chunks {
            let (q, k) = (q as f64, k as f64);
            tokens += q;
            attn_flops +=
                c.attention_flops(1.0, q, k, false) + c.attention_flops(1.0, q, q, self.causal);
            kv_read += c.kv_bytes(k + q);
        }
        let seqs = n_dec + chunks.len() as f64;
        let compute = self.compute_s(
            c.dense_matmul_flops(tokens, seqs),
            c.expert_matmul_flops(tokens),
            attn_flops,
        );
        let mem = self.mem_s(c.weight_bytes_per_step(tokens) + kv_read);
        let p = &self.params;
        let overhead = if n_dec > 0.0 {
            p.prefill_overhead_ms.max(p.step_overhead_ms) + n_dec * p.decode_seq_ms
        } else {
            p.prefill_overhead_ms
        };
        (overhead * 1e-3 + compute.max(mem) + self.collectives_s(tokens)) * self.prefill_scale
    }

    /// Weight bytes on one unit.
    pub fn weight_bytes(&self) -> f64 {
        self.cost.weight_bytes()
    }

    /// KV-cache bytes per token on one unit, at a context within every attention window
    /// (every layer stores the token): the paged KV pool's unit, an upper bound for models
    /// with windowed layers at long contexts.
    pub fn kv_bytes_per_token(&self) -> f64 {
        self.cost.kv_bytes(1.0)
    }

    /// KV-cache bytes of one sequence of `len` tokens on one unit (windowed layers capped).
    pub fn kv_bytes_seq(&self, len: u32) -> f64 {
        self.cost.kv_bytes(len as f64)
    }

    /// Tokens of KV cache one unit holds beside its weights (0 when the weights do not fit).
    pub fn kv_capacity_tokens(&self) -> f64 {
        let kv = self.kv_bytes_per_token();
        if kv <= 0.0 {
            return f64::INFINITY;
        }
        ((self.unit.memory - self.weight_bytes()) / kv)
            .max(0.0)
            .floor()
    }

    /// Memory one unit needs with static shapes: weights + KV for every slot at the
    /// compiled length.
    pub fn static_memory_bytes(&self) -> f64 {
        self.weight_bytes() + self.dep.max_num_seqs as f64 * self.kv_bytes_seq(self.dep.seq_len)
    }

    /// Refuses a deployment whose weights and KV cache do not fit: with static shapes all
    /// slots at the compiled length, otherwise at least one sequence of `seq_len`.
    pub fn check_fits(&self, unit_name: &str) -> Result<()> {
        let w = self.weight_bytes();
        if w > self.unit.memory {
            bail!(
                "the weights need {:.1} GiB per {unit_name} at TP {}, {:.1} GiB usable",
                w / GIB,
                self.dep.tp,
                self.unit.memory / GIB
            );
        }
        let per_seq = self.kv_bytes_seq(self.dep.seq_len);
        let fit = if per_seq > 0.0 {
            ((self.unit.memory - w) / per_seq).floor()
        } else {
            f64::INFINITY
        };
        let need = if self.static_shapes {
            self.dep.max_num_seqs as f64
        } else {
            1.0
        };
        if fit < need {
            bail!(SettingError::new(
                Setting::MaxNumSeqs,
                format!(
                    " {}: the KV cache of {} × {} tokens needs {:.2} GiB per {unit_name} beside {:.2} GiB of weights, {:.2} GiB usable (at most {} sequences of ",
                    self.dep.max_num_seqs,
                    need,
                    self.dep.seq_len,
                    need * per_seq / GIB,
                    w / GIB,
                    self.unit.memory / GIB,
                    fit,
                )
            )
            .then(Setting::SeqLen, format!(" {} fit)", self.dep.seq_len)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::profile::tests::GOOD;
    use std::path::Path;

    pub(crate) fn cfg_8b() -> LlamaConfig {
        LlamaConfig {
            vocab_size: 128256,
            hidden_size: 4096,
            intermediate_size: 14336,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 500000.0,
            rope_scaling: None,
            max_position_embeddings: 131072,
            tie_word_embeddings: false,
        }
    }

    fn dep() -> Deployment {
        Deployment {
            tp: 8,
            dp: 1,
            ep: 1,
            max_num_seqs: 8,
            seq_len: 4096,
            ctx_batch_size: 1,
            buckets: None,
            chunked_prefill: true,
            max_num_batched_tokens: 2048,
            dtype: WeightsDtype::Bf16,
        }
    }

    fn neuron() -> Profile {
        let mut text = GOOD.replace(
            "decode_seq_ms = { value = 0.0",
            "decode_seq_ms = { value = 0.3",
        );
        text = text.replace("[2, 4, 8, 12, 24]", "[1, 2, 4, 8, 12, 24]");
        Profile::parse(&text, Path::new("test-profile.toml")).unwrap()
    }

    fn gpu() -> Profile {
        let text = GOOD
            .replace("[runtime.static_shapes]\nbucket_min = { value = 128, source = \"doc\" }\nseq_len_multiple = { value = 128, source = \"doc\" }\n", "")
            .replace("kind = \"neuron\"", "kind = \"gpu\"")
            .replace("prefill_attention = \"full\"", "prefill_attention = \"causal\"");
        Profile::parse(&text, Path::new("test-profile.toml")).unwrap()
    }

    #[test]
    fn static_decode_step_does_not_depend_on_busy_slots() {
        let p = neuron();
        let m = StepModel::new(&cfg_8b().into(), &p, &p.latency, &dep());
        let one = m.decode_s(&[1000]);
        let all = m.decode_s(&[1000; 8]);
        assert_eq!(one, all);
        // The same bucket (1024) for any longest context in (512, 1024].
        assert_eq!(m.decode_s(&[513, 10]), m.decode_s(&[1024]));
        assert!(m.decode_s(&[1025]) > m.decode_s(&[1024]));
        // The compiled batch costs rows × t_seq more than the roofline terms.
        let mut d = dep();
        d.max_num_seqs = 1;
        let m1 = StepModel::new(&cfg_8b().into(), &p, &p.latency, &d);
        assert!(m.decode_s(&[1000]) - m1.decode_s(&[1000]) >= 7.0 * 0.3e-3);
    }

    #[test]
    fn dynamic_decode_step_grows_with_busy_rows() {
        let p = gpu();
        let m = StepModel::new(&cfg_8b().into(), &p, &p.latency, &dep());
        assert!(m.decode_s(&[1000; 8]) > m.decode_s(&[1000]));
        // A mixed step without chunks is a decode step; one whole prompt alone a prefill.
        assert_eq!(m.mixed_step_s(&[100, 200], &[]), m.decode_s(&[100, 200]));
        let a = m.mixed_step_s(&[], &[(700, 0)]);
        let b = m.prefill_s(1.0, 700.0);
        assert!((a - b).abs() < 1e-12 * b, "{a} vs {b}");
        // Adding a chunk to a decode step costs more than the decode step.
        assert!(m.mixed_step_s(&[100], &[(512, 0)]) > m.decode_s(&[100]));
    }

    #[test]
    fn prompts_are_padded_and_refused_beyond_the_buckets() {
        let p = neuron();
        let mut d = dep();
        d.buckets = Some(vec![128, 512, 2048]);
        let m = StepModel::new(&cfg_8b().into(), &p, &p.latency, &d);
        assert_eq!(m.ctx_bucket(300), Some(512));
        assert_eq!(m.ctx_bucket(2049), None);
        assert_eq!(m.tkg_buckets, vec![128, 512, 2048, 4096]);
        assert_eq!(m.encode_s(&[300]), m.encode_s(&[512]));
        let e = m.check_request(3000, 10).unwrap_err().to_string();
        assert!(e.contains("largest context-encoding bucket (2048)"), "{e}");
        let e = m.check_request(2000, 3000).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("seq_len 4096 is below input + output"),
            "{e}"
        );
        let named = crate::projection::setting::chain_with_flags(&e);
        assert!(
            named.starts_with("--seq-len 4096 is below input + output"),
            "{named}"
        );
        assert!(m.check_request(2000, 2000).is_ok());
    }

    #[test]
    fn bad_deployments_are_named() {
        let p = neuron();
        let cfg = cfg_8b();
        let mut d = dep();
        d.buckets = Some(vec![512, 256]);
        let e = d.validate(&p).unwrap_err().to_string();
        assert!(
            e.contains("buckets must increase: 512 is followed by 256"),
            "{e}"
        );
        d.buckets = Some(vec![128, 8192]);
        let e = d.validate(&p).unwrap_err().to_string();
        assert!(e.contains("bucket 8192 is above seq_len 4096"), "{e}");
        let mut d = dep();
        d.ctx_batch_size = 9;
        assert!(d
            .validate(&p)
            .unwrap_err()
            .to_string()
            .starts_with("ctx_batch_size 9 is more than max_num_seqs 8"));
        let mut d = dep();
        d.max_num_seqs = 4096;
        let m = StepModel::new(&cfg.clone().into(), &p, &p.latency, &d);
        let e = m.check_fits("NeuronCore").unwrap_err().to_string();
        assert!(
            e.starts_with("max_num_seqs 4096") && e.contains("sequences of seq_len 4096 fit)"),
            "{e}"
        );
    }

    #[test]
    fn static_memory_counts_every_slot_at_the_compiled_length() {
        let p = neuron();
        let m = StepModel::new(&cfg_8b().into(), &p, &p.latency, &dep());
        // 8 KV heads over TP 8: one per unit; K and V, 32 layers, 128 dims, 2 bytes.
        let kv = 2.0 * 32.0 * 128.0 * 2.0;
        assert_eq!(m.kv_bytes_per_token(), kv);
        assert_eq!(
            m.static_memory_bytes(),
            m.weight_bytes() + 8.0 * 4096.0 * kv
        );
    }
}
