//! Micro-benchmarks of the local device through tch, for the host self-check: the same
//! projection method that predicts cloud instances predicts this machine from these two
//! numbers, and the run shows how far that prediction is from the measurement.

use crate::engine::MatmulPrecision;
use crate::generate::sync;
use crate::model::bf16x3::SplitWeight;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Measured peak rates of the device the model runs on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostRates {
    /// Dense matmul rate at the run's dtype and matmul precision, FLOP/s.
    pub matmul_flops_per_s: f64,
    /// Copy bandwidth (bytes read plus bytes written per second).
    pub memory_bytes_per_s: f64,
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
