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
//! * `TTFT = t_prefill + max(compute, weights(B·s) + KV writes) + collectives` over the prompt,
//!   padded to its bucket where the runtime has static shapes;
//! * one decode step at context `c` = `t_step + max(compute, weights(B) + B·kv(a)) + collectives`
//!   where `a` is the attention length: `c`, or its token-generation bucket with static shapes;
//!   `weights(n)` is what a step over `n` tokens reads (the experts it touches, see
//!   [`ModelCost::weight_bytes_per_step`]) and `kv(a)` a sequence's cache at `a` tokens
//!   (windowed layers capped, see [`ModelCost::kv_bytes`]);
//!   TPOT is the mean over the output as the context grows.

use super::bucket::{compiled_seq_len, Buckets};
use super::dtype::WeightsDtype;
use super::model_cost::ModelCost;
use super::params::LatencyParams;
use super::profile::Profile;
use crate::model::architecture::Architecture;
use serde::Serialize;

/// One deployment target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub tp: u32,
    pub batch: u32,
    pub input_len: u32,
    pub output_len: u32,
    pub dtype: WeightsDtype,
    /// Compiled sequence length when known (static shapes); derived from the lengths when
    /// `None`.
    pub compiled_seq_len: Option<u32>,
}

/// What the model projects for a target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
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

/// Per-unit hardware rates at the target's dtype.
struct Unit {
    flops: f64,
    bandwidth: f64,
    link: f64,
    memory: f64,
}

fn unit(profile: &Profile, dtype: WeightsDtype) -> Unit {
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

/// Seconds of one all-reduce of `bytes` over `tp` units.
fn allreduce_s(tp: u32, bytes: f64, link: f64, alpha_us: f64) -> f64 {
    if tp <= 1 {
        return 0.0;
    }
    let steps = (tp as f64).log2().ceil();
    let t = tp as f64;
    alpha_us * 1e-6 * steps + 2.0 * (t - 1.0) / t * bytes / link
}

/// Projects TTFT, TPOT and memory for `target` on `profile` with parameters `p`.
pub fn estimate(
    cfg: &Architecture,
    profile: &Profile,
    p: &LatencyParams,
    target: &Target,
) -> Estimate {
    let cost = ModelCost::new(cfg, target.tp, target.dtype);
    let u = unit(profile, target.dtype);
    let b = target.batch.max(1) as f64;
    let input = target.input_len.max(1);
    let output = target.output_len.max(1);
    let shapes = profile.runtime.static_shapes;
    let kv_len = match (shapes, target.compiled_seq_len) {
        (Some(_), Some(n)) => n.max(input + output),
        (Some(s), None) => compiled_seq_len(input, output, s.seq_len_multiple),
        (None, _) => input + output,
    };
    let buckets = shapes.map(|s| Buckets::new(s.bucket_min, kv_len));
    let padded = buckets.map_or(input, |bk| bk.bucket_for(input));

    let compute_s = |mm: f64, attn: f64| {
        mm / (u.flops * p.compute_efficiency) + attn / (u.flops * p.attention_efficiency)
    };
    let mem_s = |bytes: f64| bytes / (u.bandwidth * p.bandwidth_efficiency);
    let collectives_s = |tokens: f64| {
        2.0 * cost.layers
            * allreduce_s(
                target.tp,
                cost.allreduce_bytes(tokens),
                u.link,
                p.collective_latency_us,
            )
    };

    // Prefill over the (padded) prompt.
    let s = padded as f64;
    let causal = profile.runtime.causal_prefill_attention;
    let prefill_compute = compute_s(
        cost.prefill_matmul_flops(b, s),
        cost.attention_flops(b, s, s, causal),
    );
    let prefill_mem = mem_s(cost.weight_bytes_per_step(b * s) + b * cost.kv_bytes(s));
    let ttft_s =
        p.prefill_overhead_ms * 1e-3 + prefill_compute.max(prefill_mem) + collectives_s(b * s);

    // One decode step attending over `a` cached tokens.
    let step_s = |a: f64| {
        let compute = compute_s(
            cost.decode_matmul_flops(b),
            cost.attention_flops(b, 1.0, a, false),
        );
        let mem = mem_s(cost.weight_bytes_per_step(b) + b * cost.kv_bytes(a));
        p.step_overhead_ms * 1e-3 + compute.max(mem) + collectives_s(b)
    };
    let tpot_s = mean_step_s(input, output, buckets, step_s);

    let weights = cost.weight_bytes();
    let kv_per_seq = cost.kv_bytes(kv_len as f64);
    let memory = weights + b * kv_per_seq;
    let max_batch = if weights >= u.memory || kv_per_seq <= 0.0 {
        0
    } else {
        ((u.memory - weights) / kv_per_seq)
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
        usable_memory_per_unit_bytes: u.memory,
        fits: memory <= u.memory,
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
    buckets: Option<Buckets>,
    step_s: impl Fn(f64) -> f64,
) -> f64 {
    let first = input as u64 + 1;
    if output <= 1 {
        let a = buckets.map_or(first as f64, |b| b.bucket_for(first as u32) as f64);
        return step_s(a);
    }
    let last = input as u64 + output as u64 - 1;
    let n = (last - first + 1) as f64;
    let mut total = 0.0;
    match buckets {
        Some(bk) => {
            let mut lo = first;
            for b in bk.all() {
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
        Target {
            tp: 2,
            batch: 1,
            input_len: input,
            output_len: output,
            dtype: WeightsDtype::Bf16,
            compiled_seq_len: None,
        }
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
        let bk = Some(Buckets::new(128, 512));
        let m = mean_step_s(128, 173, bk, |a| a);
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
}
