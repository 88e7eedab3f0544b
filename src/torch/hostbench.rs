//! Micro-benchmarks of the local device through tch, for the host self-check: the same
//! projection method that predicts cloud instances predicts this machine from these two
//! numbers, and the run shows how far that prediction is from the measurement.

//!
//! [`measure_steps`] also times the loaded model's own steps at fixed shapes, from which
//! [`crate::projection::host_steps`] derives the `host` profile's prompt matmul efficiency,
//! decode bandwidth efficiency and per-row decode cost for `simulate --device host
//! --host-check`.

use crate::engine::{Engine, MatmulPrecision};
use crate::generate::sync;
use crate::model::bf16x3::SplitWeight;
use crate::projection::host_steps::StepTimes;
use anyhow::Result;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Measured peak rates of the device the model runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRates {
    /// Dense matmul rate at the run's dtype and matmul precision, FLOP/s.
    pub matmul_flops_per_s: f64,
    /// Copy bandwidth (bytes read plus bytes written per second).
    pub memory_bytes_per_s: f64,
    /// The model's own step times ([`measure_steps`]); `Err` says why they are missing.
    pub steps: Result<StepTimes, String>,
}

/// Prompt length of the prefill [`measure_steps`] times: a fixed shape, chosen before any
/// workload is seen (shorter when the model's context window is).
pub const STEP_PROMPT_TOKENS: usize = 128;

/// Rows of the batched decode step [`measure_steps`] times for a run of `batch` rows: 4
/// (the slots `scripts/bench --serve` serves with), or the batch up to 16 when larger.
pub fn step_rows(batch: usize) -> usize {
    batch.clamp(4, 16)
}

/// Row counts timed one by one up to this many; beyond it only the batch itself.
const TABLE_ROWS: usize = 8;

/// Times the loaded model's steps with the run's device, dtype and threads, the way
/// continuous batching runs them ([`crate::batching`]): one prefill of `prompt` tokens into
/// one row of a cache (best of `reps`, at least `rows`, after one warm-up), then, with every
/// row of the cache filled to `prompt` tokens, decode steps of 1, 2, … up to [`TABLE_ROWS`]
/// rows and of `rows` rows at positions `prompt`, `prompt − 1`, …
/// ([`crate::model::llama::Llama::forward_slots`], the greedy token read back), timed in
/// turn (best of `reps` each, after a warm-up of each). Allocates a KV cache of `rows` ×
/// (`prompt` + 1) positions beside the run's.
pub fn measure_steps(
    engine: &Engine,
    rows: usize,
    prompt: usize,
    reps: usize,
) -> Result<StepTimes> {
    let _g = tch::no_grad_guard();
    let model = &engine.model;
    let cfg = model.config();
    let device = model.device();
    let prompt = prompt
        .min(cfg.max_position_embeddings.saturating_sub(1))
        .max(1);
    let rows = rows.max(2);
    let cache = model.new_cache(rows, prompt + 1)?;
    let vocab = cfg.vocab_size.max(1) as i64;
    let ids: Vec<i64> = (0..prompt as i64).map(|i| (i * 31 + 7) % vocab).collect();
    let tokens = Tensor::from_slice(&ids)
        .view([1, prompt as i64])
        .to_device(device);
    let positions = Tensor::arange(prompt as i64, (Kind::Int64, device)).view([1, prompt as i64]);
    let prefill = |row: usize| -> Result<f64> {
        let mut view = cache.rows(row, 1)?;
        let t = Instant::now();
        let _ = model.forward(&tokens, &positions, None, &mut view)?;
        sync(device);
        Ok(t.elapsed().as_secs_f64())
    };
    prefill(0)?;
    let mut prefill_s = f64::INFINITY;
    for k in 0..reps.max(rows) {
        prefill_s = prefill_s.min(prefill(k % rows)?);
    }
    let step = |n: usize| -> Result<f64> {
        let mut view = cache.rows(0, n)?;
        let toks = vec![ids[prompt - 1]; n];
        // Rows at different positions, as slots usually are when serving (the step then
        // writes each row's K and V on its own and masks each row's columns).
        let cols: Vec<usize> = (0..n).map(|r| prompt.saturating_sub(r)).collect();
        let t = Instant::now();
        let logits = model.forward_slots(&toks, &cols, &mut view)?;
        let _ = logits.argmax(-1, false).to_device(Device::Cpu);
        sync(device);
        Ok(t.elapsed().as_secs_f64())
    };
    // Every row count up to `TABLE_ROWS`, and `rows`: a CPU's matrix kernels need not grow
    // linearly with the rows (see `host_steps::MeasuredDecode`). Interleaved, so that a
    // slow spell of the machine does not fall on one row count alone.
    let counts: Vec<usize> = (1..=rows.min(TABLE_ROWS))
        .chain((rows > TABLE_ROWS).then_some(rows))
        .collect();
    for &n in &counts {
        step(n)?;
    }
    let mut best = vec![f64::INFINITY; counts.len()];
    for _ in 0..reps.max(1) {
        for (b, &n) in best.iter_mut().zip(&counts) {
            *b = b.min(step(n)?);
        }
    }
    let at = |n: usize| {
        counts
            .iter()
            .position(|&c| c == n)
            .map_or(f64::NAN, |i| best[i])
    };
    Ok(StepTimes {
        prefill_tokens: prompt as u32,
        prefill_ms: prefill_s * 1e3,
        decode_rows: rows as u32,
        decode_context: prompt as u32,
        decode_1_ms: at(1) * 1e3,
        decode_rows_ms: at(rows) * 1e3,
        decode_steps_ms: counts
            .iter()
            .zip(&best)
            .map(|(&n, &t)| (n as u32, t * 1e3))
            .collect(),
    })
}

/// Best of `reps` timings of `f`, in seconds (best-of suppresses interference).
fn best_of(reps: usize, device: Device, mut f: impl FnMut()) -> f64 {
    f();
    sync(device);
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        sync(device);
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

/// Measures matmul FLOP/s (square `n`×`n` matmuls, 2n³ FLOPs each) and copy bandwidth
/// (a `bytes`-sized buffer copied, counting read and write). Takes well under a second on
/// a CPU with the defaults used by `run` (n = 1024, 256 MiB). With `precision` high (f32
/// on a CPU) the matmuls are the model's bf16x3 products, the input's split included.
pub fn measure(
    device: Device,
    kind: Kind,
    precision: MatmulPrecision,
    n: i64,
    bytes: i64,
) -> HostRates {
    let _g = tch::no_grad_guard();
    let a = Tensor::randn([n, n], (kind, device));
    let b = Tensor::randn([n, n], (kind, device));
    let c = Tensor::zeros([n, n], (kind, device));
    let split = (precision == MatmulPrecision::High)
        .then(|| SplitWeight::new(&b).ok())
        .flatten();
    let t_mm = best_of(5, device, || match &split {
        Some(w) => {
            let _ = w.matmul(&a);
        }
        None => {
            let _ = a.matmul_out(&c, &b);
        }
    });
    let elems = bytes / 4;
    let src = Tensor::ones([elems], (Kind::Float, device));
    let mut dst = Tensor::zeros([elems], (Kind::Float, device));
    let t_copy = best_of(5, device, || {
        dst.copy_(&src);
    });
    HostRates {
        matmul_flops_per_s: 2.0 * (n as f64).powi(3) / t_mm,
        memory_bytes_per_s: 2.0 * (elems * 4) as f64 / t_copy,
        steps: Err("not measured".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_positive_and_finite() {
        let r = measure(
            Device::Cpu,
            Kind::Float,
            MatmulPrecision::Highest,
            128,
            1 << 20,
        );
        assert!(r.matmul_flops_per_s.is_finite() && r.matmul_flops_per_s > 0.0);
        let r = measure(
            Device::Cpu,
            Kind::Float,
            MatmulPrecision::High,
            128,
            1 << 20,
        );
        assert!(r.matmul_flops_per_s.is_finite() && r.matmul_flops_per_s > 0.0);
        assert!(r.memory_bytes_per_s.is_finite() && r.memory_bytes_per_s > 0.0);
    }
}
