//! The analytical latency model: time to first token, time per output token and memory for
//! one target (profile, TP degree, batch, lengths, weights dtype).
//!
//! Every tensor-parallel unit works on its shard in parallel, so a step takes what one unit
//! takes (see [`super::model_cost`]). Per unit, with peak FLOP/s `F`, peak memory bandwidth
//! `BW`, link bandwidth `LINK` and the profile's parameters (`e_*`, `t_*`, `α`):
//!
//! * roofline (Williams et al. 2009, CACM 52(4)): a phase takes the longer of its compute
//!   time and its memory time: `max(mm/(F·e_c) + attn/(F·e_a), bytes/(BW·e_bw))`;
//! * two all-reduces per layer (after attention and after the MLP; Shoeybi et al. 2019),
//!   each `α·⌈log₂ tp⌉ + 2(tp−1)/tp · bytes/LINK` (latency-bandwidth model of a reduce,
//!   Thakur et al. 2005, IJHPCA 19(1); the log₂ step count is this project's assumption);
//! * `TTFT = t_prefill + max(compute, weights + KV writes) + collectives` over the prompt,
//!   padded to its bucket where the runtime has static shapes;
//! * one decode step at context `c` = `t_step + max(compute, weights + B·a·kv) + collectives`
//!   where `a` is the attention length: `c`, or its token-generation bucket with static shapes;
//!   TPOT is the mean over the output as the context grows.

use super::bucket::compiled_seq_len;
use super::dtype::WeightsDtype;
use super::params::LatencyParams;
use super::profile::Profile;
use super::step::{Deployment, StepModel, DEFAULT_MAX_NUM_BATCHED_TOKENS};
use crate::model::architecture::Architecture;
use serde::Serialize;

/// One deployment target: a static batch of `batch` identical requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub tp: u32,
    /// Expert-parallel degree inside the TP group (1: experts TP-sharded).
    pub ep: u32,
    pub batch: u32,
    pub input_len: u32,
    pub output_len: u32,
    pub dtype: WeightsDtype,
    /// Compiled sequence length when known (static shapes); derived from the lengths when
    /// `None`.
    pub compiled_seq_len: Option<u32>,
    /// Compiled batch (static shapes: the decode step runs it whatever is busy); `batch`
    /// when `None`.
    pub max_num_seqs: Option<u32>,
    /// Prompts encoded per context-encoding call (static shapes); `batch` when `None`.
    pub ctx_batch_size: Option<u32>,
    /// Context-encoding and token-generation buckets; the framework default when `None`.
    pub buckets: Option<Vec<u32>>,
}

impl Target {
    /// A static batch with every compile setting at its default.
    pub fn new(tp: u32, batch: u32, input_len: u32, output_len: u32, dtype: WeightsDtype) -> Self {
        Target {
            tp,
            ep: 1,
            batch,
            input_len,
            output_len,
            dtype,
            compiled_seq_len: None,
            max_num_seqs: None,
            ctx_batch_size: None,
            buckets: None,
        }
    }
}

/// What the model projects for a target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Time to the first token of the batch: every prompt of it encoded
    /// (`⌈batch / ctx_batch_size⌉` context-encoding calls with static shapes).
    pub ttft_ms: f64,
    /// Mean decode-step time over the output (the first decode step when output is 1).
    pub tpot_ms: f64,
    /// `TTFT + (output − 1) · TPOT`.
    pub e2e_ms: f64,
    /// Prompt length after padding to its bucket (the input length without static shapes).
    pub padded_input_len: u32,
    /// KV-cache length reserved per sequence: the compiled sequence length with static
    /// shapes, input + output otherwise.
    pub kv_len: u32,
    /// Memory one TP unit needs: its weight shard plus its KV cache, bytes.
    pub memory_per_unit_bytes: f64,
    /// Usable memory of one TP unit, bytes.
    pub usable_memory_per_unit_bytes: f64,
    pub fits: bool,
    /// Largest batch whose KV cache fits beside the weights (0 when the weights alone do
    /// not fit).
    pub max_batch: u32,
}

/// The deployment a static-batch target describes (compiled length, compiled batch,
/// context-encoding batch and buckets at their defaults where the target leaves them).
pub fn deployment(profile: &Profile, target: &Target) -> Deployment {
    let b = target.batch.max(1);
    let input = target.input_len.max(1);
    let output = target.output_len.max(1);
    let seq_len = match (profile.runtime.static_shapes, target.compiled_seq_len) {
        (Some(_), Some(n)) => n.max(input + output),
        (Some(s), None) => compiled_seq_len(input, output, s.seq_len_multiple),
        (None, _) => input + output,
    };
    let max_num_seqs = target.max_num_seqs.unwrap_or(b).max(b);
    Deployment {
        tp: target.tp.max(1),
        dp: 1,
        ep: target.ep,
        max_num_seqs,
        seq_len,
        ctx_batch_size: target.ctx_batch_size.unwrap_or(b).clamp(1, max_num_seqs),
        buckets: target.buckets.clone(),
        chunked_prefill: false,
        max_num_batched_tokens: DEFAULT_MAX_NUM_BATCHED_TOKENS,
        dtype: target.dtype,
    }
}

/// Projects TTFT, TPOT and memory for `target` on `profile` with parameters `p`.
pub fn estimate(
    cfg: &Architecture,
    profile: &Profile,
    p: &LatencyParams,
    target: &Target,
) -> Estimate {
    let dep = deployment(profile, target);
    let m = StepModel::new(cfg, profile, p, &dep);
    let b = target.batch.max(1);
    let input = target.input_len.max(1);
    let output = target.output_len.max(1);
    let kv_len = dep.seq_len;
    let padded = m.ctx_bucket(input).unwrap_or(m.max_prompt().max(input));

    // Prefill: with static shapes ⌈b / ctx_batch_size⌉ calls of the compiled
    // context-encoding batch; otherwise the whole batch at once.
    let ttft_s = if m.static_shapes {
        let calls = b.div_ceil(dep.ctx_batch_size) as f64;
        calls * m.prefill_s(dep.ctx_batch_size as f64, padded as f64)
    } else {
        m.prefill_s(b as f64, padded as f64)
    };

    // Decode: the compiled batch with static shapes, the batch otherwise.
    let rows = if m.static_shapes { dep.max_num_seqs } else { b } as f64;
    let step_s = |a: f64| m.decode_rows_s(rows, a);
    let buckets = m.static_shapes.then_some(m.tkg_buckets.as_slice());
    let tpot_s = mean_step_s(input, output, buckets, step_s);

    let weights = m.weight_bytes();
    let kv_per_seq = m.kv_bytes_seq(kv_len);
    let memory = weights + rows * kv_per_seq;
    let max_batch = if weights >= m.unit.memory || kv_per_seq <= 0.0 {
        0
    } else {
        ((m.unit.memory - weights) / kv_per_seq)
            .floor()
            .min(u32::MAX as f64) as u32
    };
    let ttft_ms = ttft_s * 1e3;
    let tpot_ms = tpot_s * 1e3;
    Estimate {
        ttft_ms,
        tpot_ms,
        e2e_ms: ttft_ms + (output - 1) as f64 * tpot_ms,
        padded_input_len: padded,
        kv_len,
        memory_per_unit_bytes: memory,
        usable_memory_per_unit_bytes: m.unit.memory,
        fits: memory <= m.unit.memory,
        max_batch,
    }
}

/// Mean decode-step time over steps `j = 1 … output−1`, step `j` attending over
/// `input + j` tokens (or their bucket). Steps sharing a bucket cost the same, so they are
/// counted per bucket; without buckets the range is cut into at most 64 slices evaluated at
/// their middle (exact for the linear part, off by a hair near the roofline kink).
fn mean_step_s(
    input: u32,
    output: u32,
    buckets: Option<&[u32]>,
    step_s: impl Fn(f64) -> f64,
) -> f64 {
    let first = input as u64 + 1;
    if output <= 1 {
        let a = buckets
            .and_then(|bk| bk.iter().copied().find(|&b| b as u64 >= first))
            .map_or(first as f64, |b| b as f64);
        return step_s(a);
    }
    let last = input as u64 + output as u64 - 1;
    let n = (last - first + 1) as f64;
    let mut total = 0.0;
    match buckets {
        Some(bk) => {
            let mut lo = first;
            for &b in bk {
                let hi = (b as u64).min(last);
                if hi >= lo {
                    total += (hi - lo + 1) as f64 * step_s(b as f64);
                    lo = hi + 1;
                }
            }
            if lo <= last {
                // Context beyond the largest bucket: attention over the whole context.
                total += (last - lo + 1) as f64 * step_s(((lo + last) as f64) / 2.0);
            }
        }
        None => {
            let slices = 64u64.min(last - first + 1);
            let width = (last - first + 1) as f64 / slices as f64;
            for k in 0..slices {
                let mid = first as f64 + (k as f64 + 0.5) * width - 0.5;
                total += width * step_s(mid);
            }
        }
    }
    total / n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::model_cost::ModelCost;
    use crate::projection::profile::tests::GOOD;
    use std::path::Path;

    fn profile(text: &str) -> Profile {
        Profile::parse(text, Path::new("test-profile.toml")).unwrap()
    }

    fn cfg_7b() -> Architecture {
        Architecture::dense(crate::model::config::LlamaConfig {
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 32,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: None,
            max_position_embeddings: 4096,
            tie_word_embeddings: false,
        })
    }

    fn target(input: u32, output: u32) -> Target {
        Target::new(2, 1, input, output, WeightsDtype::Bf16)
    }

    #[test]
    fn decode_step_matches_hand_computation() {
        // GPU-like profile: no buckets, no overheads, huge link, so one step is
        // max(compute, memory) + 2·L·α·⌈log₂ 2⌉.
        let text = GOOD
            .replace("[runtime.static_shapes]\nbucket_min = { value = 128, source = \"doc\" }\nseq_len_multiple = { value = 128, source = \"doc\" }\n", "")
            .replace("value = 3.0, source", "value = 0.0, source")
            .replace("kind = \"neuron\"", "kind = \"gpu\"");
        let p = profile(&text);
        let cfg = cfg_7b();
        let t = target(100, 2); // one decode step, attending over 101 tokens
        let e = estimate(&cfg, &p, &p.latency, &t);
        let cost = ModelCost::new(&cfg, 2, WeightsDtype::Bf16);
        let bw = 820.0 * GIB / 2.0 * 0.5;
        let mem = (cost.weight_bytes_per_step(1.0) + cost.kv_bytes(101.0)) / bw;
        let link = 192e9 / 2.0;
        let coll = 2.0 * 32.0 * (20e-6 + 2.0 * 0.5 * 4096.0 * 2.0 / link);
        let want_ms = (mem + coll) * 1e3;
        assert!(
            (e.tpot_ms - want_ms).abs() / want_ms < 1e-9,
            "{} vs {want_ms}",
            e.tpot_ms
        );
        assert_eq!(e.kv_len, 102);
    }

    const GIB: f64 = 1073741824.0;

    #[test]
    fn static_shapes_pad_the_prompt_to_its_bucket() {
        let p = profile(GOOD);
        let cfg = cfg_7b();
        let a = estimate(&cfg, &p, &p.latency, &target(129, 64));
        let b = estimate(&cfg, &p, &p.latency, &target(256, 64));
        assert_eq!(a.padded_input_len, 256);
        assert!((a.ttft_ms - b.ttft_ms).abs() < 1e-9);
        let c = estimate(&cfg, &p, &p.latency, &target(128, 64));
        assert!(c.ttft_ms < a.ttft_ms);
        // KV sized for the compiled length 129 + 64 -> 256
        assert_eq!(a.kv_len, 256);
    }

    #[test]
    fn tpot_grows_with_context_and_batch() {
        let p = profile(GOOD);
        let cfg = cfg_7b();
        let short = estimate(&cfg, &p, &p.latency, &target(128, 128));
        let long = estimate(&cfg, &p, &p.latency, &target(4096, 128));
        assert!(long.tpot_ms > short.tpot_ms);
        let mut t = target(128, 128);
        t.batch = 8;
        let batched = estimate(&cfg, &p, &p.latency, &t);
        assert!(batched.tpot_ms > short.tpot_ms);
        assert!(batched.ttft_ms > short.ttft_ms);
    }

    #[test]
    fn bucketed_mean_counts_each_step_once() {
        // Steps attend over 129..=300; buckets 256 (128 steps: 129..=256) and 512 (44 steps).
        let all = crate::projection::bucket::Buckets::new(128, 512).all();
        let m = mean_step_s(128, 173, Some(&all), |a| a);
        let want = (128.0 * 256.0 + 44.0 * 512.0) / 172.0;
        assert!((m - want).abs() < 1e-9, "{m} vs {want}");
        // Without buckets the mean of a linear cost is the mid context.
        let m = mean_step_s(100, 101, None, |a| a);
        assert!((m - 150.5).abs() < 1e-9, "{m}");
    }

    #[test]
    fn memory_and_max_batch_are_consistent() {
        let p = profile(GOOD);
        let cfg = cfg_7b();
        let e = estimate(&cfg, &p, &p.latency, &target(128, 128));
        assert!(e.fits);
        let mut t = target(128, 128);
        t.batch = e.max_batch;
        assert!(estimate(&cfg, &p, &p.latency, &t).fits);
        t.batch = e.max_batch + 1;
        assert!(!estimate(&cfg, &p, &p.latency, &t).fits);
    }

    #[test]
    fn compiled_batch_and_context_batch_follow_static_shapes() {
        let text = GOOD.replace(
            "decode_seq_ms = { value = 0.0",
            "decode_seq_ms = { value = 0.5",
        );
        let p = profile(&text);
        let cfg = cfg_7b();
        let one = estimate(&cfg, &p, &p.latency, &target(128, 128));
        // Batch 1 on a graph compiled for 8 slots pays the 8-row step.
        let mut t = target(128, 128);
        t.max_num_seqs = Some(8);
        let slots = estimate(&cfg, &p, &p.latency, &t);
        t.batch = 8;
        let full = estimate(&cfg, &p, &p.latency, &t);
        assert_eq!(slots.tpot_ms, full.tpot_ms);
        assert!(slots.tpot_ms - one.tpot_ms >= 7.0 * 0.5);
        // KV for every slot at the compiled length.
        assert_eq!(slots.memory_per_unit_bytes, full.memory_per_unit_bytes);
        // Prompts encoded one at a time: TTFT of the batch is 8 single prefills.
        t.ctx_batch_size = Some(1);
        let serial = estimate(&cfg, &p, &p.latency, &t);
        assert!((serial.ttft_ms - 8.0 * one.ttft_ms).abs() < 1e-9 * serial.ttft_ms);
    }
}
