//! f32 matrix products as three bf16 products ("bf16x3": Henry, Tang & Heinecke,
//! "Leveraging the bfloat16 Artificial Intelligence Datatype For Higher-Precision
//! Computations", ARITH 2019). Each f32 number is split into a bf16 high part and a bf16 low
//! part (`x ≈ hi + lo`, 16 significant bits), and `a·b ≈ a_hi·b_hi + a_hi·b_lo + a_lo·b_hi`,
//! accumulated in f32 by MKL's `cblas_gemm_bf16bf16f32` (bundled in libtorch), which runs
//! on AMX / AVX512-BF16.
//!
//! This is what PyTorch's `set_float32_matmul_precision("high")` permits ("treat each
//! float32 number as the sum of two bfloat16 numbers"), but libtorch does not implement it
//! on CPUs. For prompt-sized inputs the three bf16 products (two MKL calls, see
//! [`SplitWeight`]) cost about two thirds of one f32 product on a CPU with bf16 matrix
//! instructions; the error is about 2^-17 of `Σ|a||b|` per output, against 2^-24 for an
//! f32 product and 2^-9 for a bf16 one.

use anyhow::{bail, Result};
use std::ffi::c_int;
use tch::{Device, Kind, Tensor};

use super::mkl::{self, CBLAS_NO_TRANS, CBLAS_ROW_MAJOR, CBLAS_TRANS};

/// Whether this CPU has bf16 matrix instructions (AVX512-BF16; AMX-BF16 CPUs have it too).
fn cpu_has_bf16_math() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `Ok` when bf16x3 products are available and pay off here: libtorch carries MKL's bf16
/// GEMM and the CPU has bf16 matrix instructions (without them MKL emulates bf16 and the
/// three products cost more than one f32 product).
pub fn check_available() -> Result<()> {
    if !mkl::custom_kernels() {
        bail!("--matmul-precision high runs on this project's MKL bf16 kernel, which --kernels libtorch turns off");
    }
    if mkl::gemm_bf16().is_none() {
        bail!("this libtorch has no usable MKL bf16 GEMM (cblas_gemm_bf16bf16f32), needed for --matmul-precision high: {}", mkl::describe(false));
    }
    if !cpu_has_bf16_math() {
        bail!("--matmul-precision high needs a CPU with bf16 matrix instructions (AVX512-BF16 or AMX); this one has none, so it would be slower than highest");
    }
    Ok(())
}

/// Rounds f32 to the nearest bf16 (ties to even), as its bit pattern. Finite inputs only
/// (activations and weights are).
#[inline(always)]
fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// Splits each row of `x` (`rows` rows of `k`) into `out`'s row `[hi | lo]` (`2k` bf16 bit
/// patterns) with `x ≈ hi + lo`.
#[inline(always)]
fn split_rows_into(x: &[f32], k: usize, out: &mut [u16]) {
    for (row, dst) in x.chunks_exact(k).zip(out.chunks_exact_mut(2 * k)) {
        let (hi, lo) = dst.split_at_mut(k);
        for ((v, h), l) in row.iter().zip(hi.iter_mut()).zip(lo.iter_mut()) {
            let hb = bf16_bits(*v);
            *h = hb;
            *l = bf16_bits(*v - f32::from_bits(u32::from(hb) << 16));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn split_rows_avx512(x: &[f32], k: usize, out: &mut [u16]) {
    split_rows_into(x, k, out)
}

/// [`split_rows_into`], as a vector loop where the CPU has AVX-512 (every CPU with bf16
/// matrix instructions has).
fn split_rows(x: &[f32], k: usize, out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw") {
        // SAFETY: the CPU has the features the function is compiled for (checked above).
        return unsafe { split_rows_avx512(x, k, out) };
    }
    split_rows_into(x, k, out)
}

/// An f32 weight `[out, in]` split into bf16 parts for [`SplitWeight::matmul`], stored as
/// `[out, 2·in]` with each row `[lo | hi]`: against an input row `[hi | lo]` one product
/// over `2·in` gives `x_hi·w_lo + x_lo·w_hi`, and the right half alone `x_hi·w_hi`.
pub struct SplitWeight {
    lo_hi: Tensor,
    out: i64,
    inp: i64,
}

impl SplitWeight {
    /// Splits a 2-D f32 CPU weight `[out, in]`.
    pub fn new(w: &Tensor) -> Result<Self> {
        let size = w.size();
        let [out, inp] = size[..] else {
            bail!("bf16x3: weight must be 2-D, got {size:?}");
        };
        if w.kind() != Kind::Float || w.device() != Device::Cpu {
            bail!(
                "bf16x3: weight must be f32 on the CPU, got {:?} on {:?}",
                w.kind(),
                w.device()
            );
        }
        if i32::try_from(2 * out.max(inp)).is_err() {
            bail!("bf16x3: weight {size:?} is too large for MKL's 32-bit sizes");
        }
        let hi = w.f_to_kind(Kind::BFloat16)?;
        let lo = (w - hi.f_to_kind(Kind::Float)?).f_to_kind(Kind::BFloat16)?;
        let lo_hi = Tensor::f_cat(&[lo, hi], 1)?.f_contiguous()?;
        Ok(SplitWeight { lo_hi, out, inp })
    }

    /// `x @ w.T` for an f32 CPU `x` of shape `[rows, in]`, in f32 (see the module doc), or
    /// `None` when `x` is not such a tensor or MKL's bf16 GEMM is missing.
    pub fn matmul(&self, x: &Tensor) -> Option<Tensor> {
        let size = x.size();
        let [rows, inp] = size[..] else { return None };
        if inp != self.inp || x.kind() != Kind::Float || x.device() != Device::Cpu {
            return None;
        }
        let gemm_bf16 = mkl::gemm_bf16()?;
        let (m, n, k) = (
            c_int::try_from(rows).ok()?,
            self.out as c_int,
            self.inp as c_int,
        );
        let x = x.contiguous();
        let (numel, ku) = ((rows * inp) as usize, inp as usize);
        let mut hi_lo = vec![0u16; 2 * numel];
        // SAFETY: `x` is a contiguous f32 CPU tensor of `numel` elements, alive and not
        // written to while the slice lives.
        let xs = unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, numel) };
        split_rows(xs, ku, &mut hi_lo);
        let out = Tensor::empty([rows, self.out], (Kind::Float, Device::Cpu));
        let w = self.lo_hi.data_ptr() as *const u16;
        let c = out.data_ptr() as *mut f32;
        // SAFETY: every buffer is contiguous, row-major and as large as the sizes and
        // leading dimensions passed say: input `[m, 2k]`, weight `[n, 2k]` (read
        // transposed; its right half starts `k` elements in), output `[m, n]` f32. They live
        // until the calls return.
        unsafe {
            mkl::use_torch_threads();
            // Products over the first `depth` columns of both (leading dimension 2k).
            let gemm = |depth: c_int, b: *const u16, beta: f32| {
                gemm_bf16(
                    CBLAS_ROW_MAJOR,
                    CBLAS_NO_TRANS,
                    CBLAS_TRANS,
                    m,
                    n,
                    depth,
                    1.0,
                    hi_lo.as_ptr(),
                    2 * k,
                    b,
                    2 * k,
                    beta,
                    c,
                    n,
                )
            };
            // x_hi·w_lo + x_lo·w_hi, then + x_hi·w_hi.
            gemm(2 * k, w, 0.0);
            gemm(k, w.add(k as usize), 1.0);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(shape: &[i64], seed: i64) -> Tensor {
        crate::model::synthetic::seeded(seed, || Tensor::randn(shape, (Kind::Float, Device::Cpu)))
    }

    /// Largest `|got - exact| / Σ|a||w|` over the outputs, the exact product in f64.
    fn relative_error(got: &Tensor, a: &Tensor, w: &Tensor) -> f64 {
        let (a, w) = (a.to_kind(Kind::Double), w.to_kind(Kind::Double));
        let exact = a.matmul(&w.tr());
        let scale = a.abs().matmul(&w.abs().tr());
        ((got.to_kind(Kind::Double) - exact).abs() / scale)
            .max()
            .double_value(&[])
    }

    #[test]
    fn split_rounds_to_nearest_even_and_keeps_16_bits() {
        // 1 + 2^-8 + 2^-9 rounds up to 1 + 2^-7; exactly half way (1 + 2^-8) rounds to even 1.
        let xs = [
            1.0f32 + 2f32.powi(-8) + 2f32.powi(-9),
            1.0 + 2f32.powi(-8),
            -3.3e-5,
            0.0,
        ];
        let mut both = [0u16; 8];
        split_rows(&xs, 4, &mut both);
        let (hi, lo) = both.split_at(4);
        let f = |b: u16| f32::from_bits(u32::from(b) << 16);
        assert_eq!(f(hi[0]), 1.0 + 2f32.powi(-7));
        assert_eq!(f(hi[1]), 1.0);
        for (i, x) in xs.iter().enumerate() {
            assert_eq!(hi[i], half::bf16::from_f32(*x).to_bits(), "hi of {x}");
            let back = f(hi[i]) + f(lo[i]);
            assert!(
                (back - x).abs() <= x.abs() * 2f32.powi(-16),
                "{x} -> {back}"
            );
        }
    }

    #[test]
    fn product_is_near_f32_and_far_better_than_bf16() {
        let (a, w) = (rand(&[70, 300], 1), rand(&[130, 300], 2));
        let got = SplitWeight::new(&w)
            .unwrap()
            .matmul(&a)
            .expect("MKL bf16 GEMM");
        assert_eq!(got.size(), [70, 130]);
        let x3 = relative_error(&got, &a, &w);
        let f32_err = relative_error(&a.matmul(&w.tr()), &a, &w);
        let bf16 = a
            .to_kind(Kind::BFloat16)
            .matmul(&w.to_kind(Kind::BFloat16).tr());
        let bf16_err = relative_error(&bf16, &a, &w);
        // Two 8-bit halves leave about 2^-17 per factor; one bf16 rounding is 2^-9.
        assert!(x3 < 2f64.powi(-15), "bf16x3 error {x3:e}");
        assert!(x3 > f32_err, "bf16x3 {x3:e} cannot beat f32 {f32_err:e}");
        assert!(bf16_err > 50.0 * x3, "bf16 {bf16_err:e} vs bf16x3 {x3:e}");
    }

    #[test]
    fn wrong_inputs_are_refused() {
        let w = SplitWeight::new(&rand(&[8, 16], 3)).unwrap();
        assert!(w.matmul(&rand(&[4, 15], 4)).is_none());
        assert!(w.matmul(&rand(&[4, 16], 4).to_kind(Kind::Double)).is_none());
        assert!(w.matmul(&rand(&[2, 4, 16], 4)).is_none());
        assert!(SplitWeight::new(&rand(&[8], 5)).is_err());
        assert!(SplitWeight::new(&rand(&[8, 16], 5).to_kind(Kind::BFloat16)).is_err());
        // A non-contiguous input is made contiguous, not misread.
        let a = rand(&[16, 4], 6).tr();
        let got = w.matmul(&a).unwrap();
        assert!(relative_error(&got, &a, &w_f32(&w)) < 2f64.powi(-15));
    }

    fn w_f32(w: &SplitWeight) -> Tensor {
        let part = |start| w.lo_hi.narrow(1, start, w.inp).to_kind(Kind::Float);
        part(0) + part(w.inp)
    }
}
