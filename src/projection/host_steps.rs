//! Step costs of the `host` profile read off the real model on this machine: the cost of one
//! more row in a decode step (`decode_seq_ms`), the matmul efficiency of a prompt
//! (`compute_efficiency`) and the memory rate of a decode step against the copy benchmark's
//! (`bandwidth_efficiency`), which the two micro-benchmark rates of
//! [`super::profile::host_profile`] leave out.
//!
//! `profiler run` times, at fixed shapes chosen before any load is seen, one prefill of
//! `prefill_tokens` tokens and one decode step of 1 and of `decode_rows` rows at context
//! `decode_context`. Each parameter is then the value that makes [`super::step::StepModel`]
//! give the measured time (its formulas, inverted):
//! * prefill: `t = max(mm/(F·e_c) + attn/(F·e_a), mem)`, so
//!   `e_c = (mm/F) / (t − attn/(F·e_a))`, capped to (0, 1] (1 when the measured time is at or
//!   below what the roofline allows, i.e. the prompt is not compute-bound);
//! * decode: `t(r) = r·t_seq + max(compute(r), mem(r)/e_bw)`, so with `m(r)` the step at
//!   `t_seq = 0`, `t_seq = ((t_R − t_1) − (m(R) − m(1))) / (R − 1)`, at least 0, and
//!   `e_bw = mem(1) / (t_1 − t_seq)`, capped to (0, 1] (the two solved together).
//!
//! These are measured rates of this machine at those shapes, not fits to any serving load.

use super::dtype::WeightsDtype;
pub use super::measured_decode::MeasuredDecode;
use super::profile::Profile;
use super::step::{Deployment, StepModel, DEFAULT_MAX_NUM_BATCHED_TOKENS};
use crate::model::architecture::Architecture;

/// Step times of the loaded model measured on this machine (best of a few repetitions).
#[derive(Debug, Clone, PartialEq)]
pub struct StepTimes {
    /// Prompt length of the timed prefill (one sequence).
    pub prefill_tokens: u32,
    pub prefill_ms: f64,
    /// Rows of the batched decode step (`R`).
    pub decode_rows: u32,
    /// Position of the one-row decode step (the rows of the batched step are at it and
    /// up to `decode_rows − 1` before it); the model is evaluated at it for every row.
    pub decode_context: u32,
    /// A decode step of one row.
    pub decode_1_ms: f64,
    /// A decode step of `decode_rows` rows.
    pub decode_rows_ms: f64,
    /// Decode steps of each timed row count (1 up to `decode_rows`), `(rows, ms)`, at the
    /// same context; empty when only the two above were timed.
    pub decode_steps_ms: Vec<(u32, f64)>,
}

/// The two parameters derived from [`StepTimes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepParams {
    /// Matmul efficiency of a prompt, in (0, 1].
    pub compute_efficiency: f64,
    /// The memory rate a 1-row decode step achieves, as a fraction of the copy
    /// micro-benchmark's, in (0, 1].
    pub bandwidth_efficiency: f64,
    /// Cost of each row of a decode step beyond the roofline, ms, at least 0.
    pub decode_seq_ms: f64,
}

/// The step model of one replica of `host` serving `rows` slots of `seq_len` positions.
fn step_model(
    arch: &Architecture,
    host: &Profile,
    dtype: WeightsDtype,
    rows: u32,
    seq_len: u32,
) -> StepModel {
    let dep = Deployment {
        tp: 1,
        ep: 1,
        dp: 1,
        max_num_seqs: rows.max(1),
        seq_len: seq_len.max(2),
        ctx_batch_size: 1,
        buckets: None,
        chunked_prefill: false,
        max_num_batched_tokens: DEFAULT_MAX_NUM_BATCHED_TOKENS,
        dtype,
    };
    StepModel::new(arch, host, &host.latency, &dep)
}

/// Derives the parameters from `t` on the host profile `host` (its two rates; its own
/// `compute_efficiency`, `bandwidth_efficiency` and `decode_seq_ms` are replaced). `None` when a time is not
/// positive and finite or `decode_rows` is below 2.
pub fn derive(
    arch: &Architecture,
    host: &Profile,
    dtype: WeightsDtype,
    t: &StepTimes,
) -> Option<StepParams> {
    let ok = |x: f64| x.is_finite() && x > 0.0;
    if !(ok(t.prefill_ms) && ok(t.decode_1_ms) && ok(t.decode_rows_ms))
        || t.decode_rows < 2
        || t.prefill_tokens == 0
    {
        return None;
    }
    let mut base = host.clone();
    base.latency.compute_efficiency = 1.0;
    base.latency.decode_seq_ms = 0.0;
    let seq_len = t.prefill_tokens.max(t.decode_context + 1);
    let m = step_model(arch, &base, dtype, t.decode_rows, seq_len);

    // Prefill: the matmul time at efficiency 1 over the time left to matmuls.
    let (len, c, p) = (t.prefill_tokens as f64, &m.cost, &m.params);
    let mm_s = c.prefill_matmul_flops(1.0, len) / m.unit.flops;
    let attn_s =
        c.attention_flops(1.0, len, len, m.causal) / (m.unit.flops * p.attention_efficiency);
    let left_s = t.prefill_ms * 1e-3 - p.prefill_overhead_ms * 1e-3 - attn_s;
    let compute_efficiency = if left_s > mm_s { mm_s / left_s } else { 1.0 };

    // Decode: two unknowns, the per-row cost `t_seq` and the bandwidth efficiency `e_bw`
    // (the copy micro-benchmark's rate need not be the rate a decode step reads its weights
    // at): `t_seq` is the growth per row beyond the roofline's own growth (at `e_bw`), and
    // `e_bw` makes the 1-row step `t_seq + max(C(1), M(1)/e_bw)` the measured one (1 when
    // that step is no slower than the roofline). The roofline's growth with rows is a few KV
    // bytes, so alternating the two settles within a few rounds.
    base.latency.compute_efficiency = compute_efficiency;
    let (r, a) = (t.decode_rows as f64, t.decode_context.max(1) as f64);
    let (t1, tr) = (t.decode_1_ms * 1e-3, t.decode_rows_ms * 1e-3);
    let (mut e_bw, mut seq_s) = (1.0, 0.0);
    for _ in 0..100 {
        base.latency.bandwidth_efficiency = e_bw;
        let m = step_model(arch, &base, dtype, t.decode_rows, seq_len);
        let growth_s = m.decode_rows_s(r, a) - m.decode_rows_s(1.0, a);
        seq_s = ((tr - t1 - growth_s) / (r - 1.0)).max(0.0);
        let mem1_s = (m.cost.weight_bytes_per_step(1.0) + m.cost.kv_bytes(a)) / m.unit.bandwidth;
        let left_s = t1 - seq_s - m.params.step_overhead_ms * 1e-3;
        let next = if left_s > mem1_s {
            mem1_s / left_s
        } else {
            1.0
        };
        let settled = (next - e_bw).abs() <= 1e-12 * e_bw;
        e_bw = next;
        if settled {
            break;
        }
    }
    Some(StepParams {
        compute_efficiency,
        bandwidth_efficiency: e_bw,
        decode_seq_ms: seq_s * 1e3,
    })
}

/// `host` with the derived parameters in its latency model, their source recorded.
pub fn apply(mut host: Profile, params: &StepParams) -> Profile {
    host.latency.compute_efficiency = params.compute_efficiency;
    host.latency.bandwidth_efficiency = params.bandwidth_efficiency;
    host.latency.decode_seq_ms = params.decode_seq_ms;
    let src = "measured on this machine: the real model's prefill and 1- and R-row decode steps at fixed shapes";
    for f in [
        "latency.compute_efficiency",
        "latency.bandwidth_efficiency",
        "latency.decode_seq_ms",
    ] {
        host.field_sources.insert(f.to_string(), src.to_string());
    }
    host.calibration.note = "host: achieved rates measured by micro-benchmarks; prompt matmul efficiency, decode bandwidth efficiency and per-row decode cost measured on the model at fixed shapes".into();
    host
}

/// `host` pricing its decode steps from the times of `table` (see [`MeasuredDecode`]).
pub fn with_decode_table(mut host: Profile, table: MeasuredDecode) -> Profile {
    host.measured_decode = Some(table);
    host.field_sources.insert(
        "measured_decode".to_string(),
        "measured on this machine: decode steps of each row count up to the slots, on the real model".to_string(),
    );
    host
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::LlamaConfig;
    use crate::projection::model_cost::ModelCost;
    use crate::projection::profile::host_profile;

    /// A small Llama (SmolLM2-135M's shape).
    fn arch() -> Architecture {
        Architecture::dense(LlamaConfig {
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            rope_scaling: None,
            max_position_embeddings: 2048,
            tie_word_embeddings: true,
        })
    }

    fn times() -> StepTimes {
        StepTimes {
            prefill_tokens: 128,
            prefill_ms: 400.0,
            decode_rows: 4,
            decode_context: 128,
            decode_1_ms: 54.0,
            decode_rows_ms: 123.0,
            decode_steps_ms: Vec::new(),
        }
    }

    #[test]
    fn derivation_matches_hand_computation() {
        let host = host_profile(100e9, 10e9, 16 << 30, "test cpu");
        let a = arch();
        let d = WeightsDtype::Fp32;
        let p = derive(&a, &host, d, &times()).unwrap();
        // Prefill: mm = 2·(128·layer params + LM head), attention 4·heads·hd·128² per layer
        // (host prefill attention is not causal), efficiencies 1, no overhead.
        let c = ModelCost::new(&a, 1, d);
        let mm_s = 2.0 * (128.0 * c.active_layer_params() + c.lm_head_params()) / 100e9;
        let attn_s = 4.0 * 9.0 * 64.0 * 128.0 * 128.0 * 30.0 / 100e9;
        let want = mm_s / (0.400 - attn_s);
        assert!(
            (p.compute_efficiency - want).abs() < 1e-12,
            "{} vs {want}",
            p.compute_efficiency
        );
        assert!(p.compute_efficiency > 0.0 && p.compute_efficiency < 1.0);
        // Decode: memory-bound at 1 and 4 rows here, so the roofline grows only by the
        // 3 extra rows' KV reads at 10 GB/s.
        let kv_growth_ms = 3.0 * c.kv_bytes(128.0) / 10e9 * 1e3;
        let compute4 = c.decode_matmul_flops(4.0) / (100e9 * p.compute_efficiency)
            + c.attention_flops(4.0, 1.0, 128.0, false) / 100e9;
        assert!(compute4 < (c.weight_bytes_per_step(4.0) + 4.0 * c.kv_bytes(128.0)) / 10e9);
        let want = (123.0 - 54.0 - kv_growth_ms) / 3.0;
        assert!(
            (p.decode_seq_ms - want).abs() < 1e-9,
            "{} vs {want}",
            p.decode_seq_ms
        );
        assert!(p.decode_seq_ms > 22.0 && p.decode_seq_ms < 23.0);
        // The 1-row step (54 ms) less a row's cost is below the roofline's 54.1 ms: the
        // bandwidth stays the micro-benchmark's.
        assert_eq!(p.bandwidth_efficiency, 1.0);
    }

    /// A copy benchmark faster than the rate a decode step reads at (30 GB/s against a
    /// 1-row step of 50.6 ms for 538 MB): both decode times are memory-bound, so
    /// `t_1 = s + M(1)·u` and `t_R = R·s + M(R)·u` with `u = 1/e_bw`, solved by hand.
    #[test]
    fn a_slow_one_row_step_lowers_the_bandwidth_efficiency() {
        let host = host_profile(100e9, 30e9, 16 << 30, "test cpu");
        let (a, d) = (arch(), WeightsDtype::Fp32);
        let t = StepTimes {
            decode_1_ms: 50.6,
            decode_rows_ms: 71.2,
            ..times()
        };
        let p = derive(&a, &host, d, &t).unwrap();
        let c = ModelCost::new(&a, 1, d);
        let m1 = (c.weight_bytes_per_step(1.0) + c.kv_bytes(128.0)) / 30e9;
        let m4 = (c.weight_bytes_per_step(4.0) + 4.0 * c.kv_bytes(128.0)) / 30e9;
        let u = (4.0 * 0.0506 - 0.0712) / (4.0 * m1 - m4);
        let seq_ms = (0.0506 - m1 * u) * 1e3;
        assert!(
            (p.bandwidth_efficiency - 1.0 / u).abs() < 1e-9,
            "{} vs {}",
            p.bandwidth_efficiency,
            1.0 / u
        );
        assert!(
            (p.decode_seq_ms - seq_ms).abs() < 1e-6,
            "{} vs {seq_ms}",
            p.decode_seq_ms
        );
        assert!(p.bandwidth_efficiency > 0.35 && p.bandwidth_efficiency < 0.5);
        assert!(p.decode_seq_ms > 5.0 && p.decode_seq_ms < 8.0);
    }

    #[test]
    fn the_derived_profile_gives_the_measured_times_back() {
        let host = host_profile(100e9, 10e9, 16 << 30, "test cpu");
        let (a, d, t) = (arch(), WeightsDtype::Fp32, times());
        let p = derive(&a, &host, d, &t).unwrap();
        let h = apply(host, &p);
        let m = step_model(&a, &h, d, 4, 256);
        assert!((m.prefill_s(1.0, 128.0) * 1e3 - 400.0).abs() < 1e-9);
        let growth = (m.decode_rows_s(4.0, 128.0) - m.decode_rows_s(1.0, 128.0)) * 1e3;
        assert!((growth - 69.0).abs() < 1e-9, "{growth}");
        // With the bandwidth efficiency below 1, both decode steps come back as measured.
        let host = host_profile(100e9, 30e9, 16 << 30, "test cpu");
        let t = StepTimes {
            decode_1_ms: 50.6,
            decode_rows_ms: 71.2,
            ..t
        };
        let h = apply(
            host,
            &derive(&a, &host_profile(100e9, 30e9, 16 << 30, "x"), d, &t).unwrap(),
        );
        let m = step_model(&a, &h, d, 4, 256);
        assert!((m.decode_rows_s(1.0, 128.0) * 1e3 - 50.6).abs() < 1e-6);
        assert!((m.decode_rows_s(4.0, 128.0) * 1e3 - 71.2).abs() < 1e-6);
        assert!((m.prefill_s(1.0, 128.0) * 1e3 - 400.0).abs() < 1e-9);
        assert_eq!(
            h.field_sources["latency.decode_seq_ms"],
            h.field_sources["latency.compute_efficiency"]
        );
    }

    #[test]
    fn a_decode_table_prices_each_row_count_as_timed() {
        // Timed: 1 row 37.5 ms, 2 rows 72, 3 rows 71, 4 rows 60 (a 2-row product slower
        // than a 4-row one, as on a CPU whose kernels re-read the weight per row below 4).
        let table = MeasuredDecode::new(128, &[(1, 37.5), (2, 72.0), (3, 71.0), (4, 60.0)]);
        let table = table.unwrap();
        let host = host_profile(100e9, 10e9, 16 << 30, "test cpu");
        let (a, d) = (arch(), WeightsDtype::Fp32);
        let p = derive(&a, &host, d, &times()).unwrap();
        let h = with_decode_table(apply(host.clone(), &p), table.clone());
        let m = step_model(&a, &h, d, 8, 256);
        for (rows, ms) in [(1.0, 37.5), (2.0, 72.0), (3.0, 71.0), (4.0, 60.0)] {
            let got = m.decode_rows_s(rows, 128.0) * 1e3;
            assert!((got - ms).abs() < 1e-9, "{rows} rows: {got} vs {ms}");
        }
        // Beyond the last row count: the last segment falls (71 → 60), so flat at 60 ms;
        // a rising one goes on (1 → 2 rows: 37.5 → 72, so 3 rows 106.5); a lone count is flat.
        assert!((table.step_s(6.0) * 1e3 - 60.0).abs() < 1e-9);
        let two = MeasuredDecode::new(128, &[(1, 37.5), (2, 72.0)]).unwrap();
        assert!((two.step_s(3.0) * 1e3 - 106.5).abs() < 1e-9);
        let one = MeasuredDecode::new(128, &[(1, 40.0)]).unwrap();
        assert_eq!(one.step_s(3.0), 0.040);
        // Other contexts: the KV bytes beyond the timed context at the memory rate (the
        // bandwidth efficiency derived from the 1- and 4-row steps).
        let c = ModelCost::new(&a, 1, d);
        let extra = 2.0 * (c.kv_bytes(200.0) - c.kv_bytes(128.0)) / (10e9 * p.bandwidth_efficiency);
        let got = m.decode_s(&[200, 200]);
        assert!((got - (0.072 + extra)).abs() < 1e-12, "{got}");
        // The steps with prompt work keep the prefill model; the derived profile without a
        // table keeps the per-row cost.
        assert_eq!(
            m.prefill_s(1.0, 128.0),
            step_model(&a, &apply(host, &p), d, 8, 256).prefill_s(1.0, 128.0)
        );
        // A table that does not start at one row, or whose rows do not increase, is refused.
        assert!(MeasuredDecode::new(128, &[(2, 50.0), (4, 60.0)]).is_none());
        assert!(MeasuredDecode::new(128, &[(1, 50.0), (1, 60.0)]).is_none());
        assert!(MeasuredDecode::new(128, &[(1, 0.0)]).is_none());
    }

    #[test]
    fn fast_or_missing_measurements_are_capped_or_refused() {
        let host = host_profile(100e9, 10e9, 16 << 30, "test cpu");
        let (a, d) = (arch(), WeightsDtype::Fp32);
        // A prefill faster than the roofline allows: efficiency 1, not above.
        let fast = StepTimes {
            prefill_ms: 1.0,
            decode_rows_ms: 50.0,
            ..times()
        };
        let p = derive(&a, &host, d, &fast).unwrap();
        assert_eq!(p.compute_efficiency, 1.0);
        // A batched step no slower than one row: no per-row cost, not a negative one.
        assert_eq!(p.decode_seq_ms, 0.0);
        for bad in [
            StepTimes {
                decode_rows: 1,
                ..times()
            },
            StepTimes {
                prefill_ms: f64::NAN,
                ..times()
            },
            StepTimes {
                decode_1_ms: 0.0,
                ..times()
            },
        ] {
            assert_eq!(derive(&a, &host, d, &bad), None);
        }
    }
}
