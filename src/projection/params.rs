//! The parameters of the latency model that are fitted (or assumed) per profile.
//! Each is physical: an efficiency relative to a published peak, or a fixed latency.

use serde::{Deserialize, Serialize};

/// Latency-model parameters of one profile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyParams {
    /// Fraction of peak memory bandwidth reached streaming weights and KV cache.
    pub bandwidth_efficiency: f64,
    /// Fraction of peak dense FLOP/s reached by the matrix multiplies of a prefill.
    pub compute_efficiency: f64,
    /// Fraction of peak dense FLOP/s reached by attention (Q·Kᵀ, softmax, A·V).
    pub attention_efficiency: f64,
    /// Fixed cost of one decode step (launch, host sampling, synchronisation), ms.
    pub step_overhead_ms: f64,
    /// Fixed cost of one prefill (context-encoding graph launch, first sampling), ms.
    pub prefill_overhead_ms: f64,
    /// Latency of one step of a tensor-parallel all-reduce, µs; an all-reduce over `tp`
    /// units takes ⌈log₂ tp⌉ steps plus its bytes over the link.
    pub collective_latency_us: f64,
    /// Cost of one decode step per sequence row of the step, ms: the per-row work (sampling,
    /// KV-cache update, padding of the row's attention) that grows with the batch however
    /// small the weights read. The published inf2 batch 1/4/8 runs show a TPOT growing far
    /// faster with the batch than the bytes read.
    pub decode_seq_ms: f64,
}

/// Names of the parameters, in the order of [`LatencyParams::get`]'s index.
pub const PARAM_NAMES: [&str; 7] = [
    "bandwidth_efficiency",
    "compute_efficiency",
    "attention_efficiency",
    "step_overhead_ms",
    "prefill_overhead_ms",
    "collective_latency_us",
    "decode_seq_ms",
];

impl LatencyParams {
    /// The parameter called `name`, if any.
    pub fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "bandwidth_efficiency" => self.bandwidth_efficiency,
            "compute_efficiency" => self.compute_efficiency,
            "attention_efficiency" => self.attention_efficiency,
            "step_overhead_ms" => self.step_overhead_ms,
            "prefill_overhead_ms" => self.prefill_overhead_ms,
            "collective_latency_us" => self.collective_latency_us,
            "decode_seq_ms" => self.decode_seq_ms,
            _ => return None,
        })
    }

    /// Sets the parameter called `name`; false when there is none.
    pub fn set(&mut self, name: &str, v: f64) -> bool {
        let slot = match name {
            "bandwidth_efficiency" => &mut self.bandwidth_efficiency,
            "compute_efficiency" => &mut self.compute_efficiency,
            "attention_efficiency" => &mut self.attention_efficiency,
            "step_overhead_ms" => &mut self.step_overhead_ms,
            "prefill_overhead_ms" => &mut self.prefill_overhead_ms,
            "collective_latency_us" => &mut self.collective_latency_us,
            "decode_seq_ms" => &mut self.decode_seq_ms,
            _ => return false,
        };
        *slot = v;
        true
    }

    /// Whether `name` is an efficiency (bounded to (0, 1]) rather than a latency (≥ 0).
    pub fn is_efficiency(name: &str) -> bool {
        name.ends_with("_efficiency")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_set_round_trip_every_name() {
        let mut p = LatencyParams {
            bandwidth_efficiency: 0.1,
            compute_efficiency: 0.2,
            attention_efficiency: 0.3,
            step_overhead_ms: 4.0,
            prefill_overhead_ms: 5.0,
            collective_latency_us: 6.0,
            decode_seq_ms: 7.0,
        };
        for (i, n) in PARAM_NAMES.iter().enumerate() {
            assert!(p.set(n, i as f64 + 10.0));
            assert_eq!(p.get(n), Some(i as f64 + 10.0));
        }
        assert!(!p.set("nope", 1.0));
        assert!(LatencyParams::is_efficiency("compute_efficiency"));
        assert!(!LatencyParams::is_efficiency("step_overhead_ms"));
    }
}
