//! Fused CPU loops for the one-token decode step.
//!
//! At one token per step every elementwise operation of a block touches a few hundred
//! numbers, so libtorch's per-operation cost (dispatch, type promotion, allocation, a
//! thread-pool round trip) outweighs the arithmetic: about twenty such operations per block
//! cost as much as the int4 matmuls themselves. These loops do the RMSNorm, the RoPE
//! rotation with the KV-cache write, the SwiGLU product and the residual adds in one pass
//! each, straight on the tensors' memory. Matmuls stay in libtorch (or MKL, see
//! [`super::mkl`]); f32 attention runs as two batched MKL products around a vectorised
//! softmax ([`attend_one`]), bf16 attention in libtorch's kernel.
//!
//! Numerics follow libtorch's operation by operation (each intermediate rounded to the
//! tensor dtype where libtorch rounds it), so the fused and unfused paths agree to the last
//! bit (RoPE, residual adds) or, where a sum's order or `exp` differs, to an ulp of the
//! stored dtype (norm, SwiGLU); the tests below hold each loop to libtorch.

use super::mkl;
use anyhow::{bail, ensure, Context, Result};
use half::bf16;
use std::ffi::c_int;
use tch::{Device, Kind, Tensor};

/// Element types the loops read and write: f32, and bf16 computed in f32 as libtorch does.
pub(crate) trait Elem: Copy + 'static {
    const KIND: Kind;
    fn get(self) -> f32;
    fn put(v: f32) -> Self;
    /// Rounds an f32 result to this type and back, as a libtorch op storing it would.
    fn round(v: f32) -> f32 {
        Self::put(v).get()
    }
}

impl Elem for f32 {
    const KIND: Kind = Kind::Float;
    fn get(self) -> f32 {
        self
    }
    fn put(v: f32) -> Self {
        v
    }
}

impl Elem for bf16 {
    const KIND: Kind = Kind::BFloat16;
    fn get(self) -> f32 {
        self.to_f32()
    }
    /// Round to nearest even, as libtorch's `c10::BFloat16`.
    fn put(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// Checks that `t` is a contiguous CPU tensor of `T` with `numel` elements.
fn check<T: Elem>(t: &Tensor, numel: usize, what: &str) -> Result<()> {
    ensure!(
        t.device() == Device::Cpu && t.kind() == T::KIND && t.is_contiguous(),
        "fused decode: {what} must be a contiguous CPU {:?} tensor, got {:?} on {:?}",
        T::KIND,
        t.kind(),
        t.device()
    );
    ensure!(
        t.numel() == numel,
        "fused decode: {what} has {} elements, expected {numel}",
        t.numel()
    );
    Ok(())
}

/// The elements of `t` (checked by [`check`]).
fn view<'a, T: Elem>(t: &'a Tensor, numel: usize, what: &str) -> Result<&'a [T]> {
    check::<T>(t, numel, what)?;
    // SAFETY: `t` is a contiguous CPU tensor of `numel` elements of `T` (checked above),
    // alive for the borrow's lifetime. Callers never write to it while this slice lives.
    Ok(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, numel) })
}

/// The elements of `t` for writing (checked by [`check`]).
fn view_mut<'a, T: Elem>(t: &'a mut Tensor, numel: usize, what: &str) -> Result<&'a mut [T]> {
    check::<T>(t, numel, what)?;
    // SAFETY: as in `view`; the `&mut Tensor` borrow, and the distinct-storage check of
    // each caller, keep any other slice of this memory from being alive meanwhile.
    Ok(unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, numel) })
}

/// Refuses two tensors that share memory (an output may not alias an input).
fn distinct(a: &Tensor, b: &Tensor) -> Result<()> {
    if a.data_ptr() == b.data_ptr() {
        bail!("fused decode: output aliases an input");
    }
    Ok(())
}

/// RMSNorm of each row of `x` (`[rows, h]`, residual dtype `R`) times `weight` (`[h]`,
/// `R`), written to `out` in its own dtype: `x * rsqrt(mean(x^2) + eps) * weight` (Zhang &
/// Sennrich 2019, eq. 4), computed in f32. As libtorch, a bf16 input is normalised, rounded
/// to bf16, then multiplied by the weight; f32 is rounded once, by the caller's `to_kind`.
pub(crate) fn rms_norm<R: Elem, O: Elem>(
    x: &Tensor,
    weight: &Tensor,
    eps: f64,
    out: &mut Tensor,
    rows: usize,
    h: usize,
) -> Result<()> {
    distinct(x, out)?;
    let xs = view::<R>(x, rows * h, "norm input")?;
    let w = view::<R>(weight, h, "norm weight")?;
    let o = view_mut::<O>(out, rows * h, "norm output")?;
    for (xr, or) in xs.chunks_exact(h).zip(o.chunks_exact_mut(h)) {
        let ss: f64 = xr.iter().map(|&v| f64::from(v.get()).powi(2)).sum();
        let mean = (ss / h as f64) as f32;
        let r = 1.0 / (mean + eps as f32).sqrt();
        for ((o, &v), &wv) in or.iter_mut().zip(xr).zip(w) {
            *o = O::put(R::round(v.get() * r) * wv.get());
        }
    }
    Ok(())
}

/// Shapes of one decode step's attention inputs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub batch: usize,
    pub q: usize,
    pub kv: usize,
    pub dim: usize,
    /// Cache capacity in positions.
    pub max_len: usize,
    /// Cache column this token goes to, for every row ([`rope_into_cache_at`] takes one
    /// per row instead; the model's decode step always does).
    #[cfg_attr(not(test), allow(dead_code))]
    pub pos: usize,
}

/// Splits `qkv` (`[batch, (q + 2 kv) * dim]`) into heads, rotates queries and keys by the
/// rows' RoPE tables (`cos`, `sin`: `[batch, dim]`, the sine's first half negated, so the
/// rotation is `x * cos + roll(x, dim/2) * sin`; Su et al. 2021, eq. 34), writes the queries
/// to `q_out` (`[batch, q, dim]`) and the keys and values to the caches (`[batch, kv,
/// max_len, dim]`) at column `pos`.
#[cfg(test)]
pub(crate) fn rope_into_cache<T: Elem>(
    qkv: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    s: Heads,
    q_out: &mut Tensor,
    k_cache: &mut Tensor,
    v_cache: &mut Tensor,
) -> Result<()> {
    let cols = vec![s.pos; s.batch];
    rope_into_cache_at::<T>(qkv, cos, sin, s, &cols, q_out, k_cache, v_cache)
}

/// As [`rope_into_cache`], with row `r`'s keys and values written at column `cols[r]`
/// (continuous batching: every slot at its own length); `s.pos` is not used.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rope_into_cache_at<T: Elem>(
    qkv: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    s: Heads,
    cols: &[usize],
    q_out: &mut Tensor,
    k_cache: &mut Tensor,
    v_cache: &mut Tensor,
) -> Result<()> {
    let Heads {
        batch,
        q,
        kv,
        dim,
        max_len,
        ..
    } = s;
    ensure!(
        cols.len() == batch,
        "fused decode: {} columns for {batch} rows",
        cols.len()
    );
    if let Some(pos) = cols.iter().find(|c| **c >= max_len) {
        bail!("fused decode: position {pos} beyond the cache's {max_len}");
    }
    ensure!(dim % 2 == 0, "fused decode: odd head dimension {dim}");
    for o in [&*q_out, &*k_cache, &*v_cache] {
        distinct(qkv, o)?;
    }
    distinct(k_cache, v_cache)?;
    let width = (q + 2 * kv) * dim;
    let x = view::<T>(qkv, batch * width, "qkv")?;
    let c = view::<T>(cos, batch * dim, "cos rows")?;
    let sn = view::<T>(sin, batch * dim, "sin rows")?;
    let qo = view_mut::<T>(q_out, batch * q * dim, "query buffer")?;
    let kc = view_mut::<T>(k_cache, batch * kv * max_len * dim, "key cache")?;
    let vc = view_mut::<T>(v_cache, batch * kv * max_len * dim, "value cache")?;
    let half = dim / 2;
    // x * cos and roll(x) * sin are separate libtorch products, each rounded, then added.
    // roll(x, half) reads x[j + half] in the first half, x[j - half] in the second: two
    // loops without an index modulo, which the compiler vectorises.
    let rotate = |src: &[T], c: &[T], s: &[T], dst: &mut [T]| {
        let (lo, hi) = src.split_at(half);
        for (part, rolled) in [(0, hi), (half, lo)] {
            let out = &mut dst[part..part + half];
            let own = &src[part..part + half];
            let (c, s) = (&c[part..part + half], &s[part..part + half]);
            for ((((d, x), r), c), s) in out.iter_mut().zip(own).zip(rolled).zip(c).zip(s) {
                let a = T::round(x.get() * c.get());
                let b = T::round(r.get() * s.get());
                *d = T::put(a + b);
            }
        }
    };
    for b in 0..batch {
        let row = &x[b * width..(b + 1) * width];
        let (cr, sr) = (&c[b * dim..(b + 1) * dim], &sn[b * dim..(b + 1) * dim]);
        for h in 0..q {
            let src = &row[h * dim..(h + 1) * dim];
            let at = (b * q + h) * dim;
            rotate(src, cr, sr, &mut qo[at..at + dim]);
        }
        let pos = cols[b];
        for h in 0..kv {
            let at = ((b * kv + h) * max_len + pos) * dim;
            let k = &row[(q + h) * dim..(q + h + 1) * dim];
            rotate(k, cr, sr, &mut kc[at..at + dim]);
            let v = &row[(q + kv + h) * dim..(q + kv + h + 1) * dim];
            vc[at..at + dim].copy_from_slice(v);
        }
    }
    Ok(())
}

/// The mask's `[batch, len]` keep-flags (a `[batch, 1, 1, len]` bool tensor, true = attend).
fn mask_flags(mask: &Tensor, batch: usize, len: usize) -> Result<&[bool]> {
    ensure!(
        mask.device() == Device::Cpu
            && mask.kind() == Kind::Bool
            && mask.is_contiguous()
            && mask.numel() == batch * len,
        "fused decode: the attention mask must be a contiguous CPU bool tensor of {batch} x {len}, got {:?} of {:?}",
        mask.size(),
        mask.kind()
    );
    // SAFETY: a contiguous CPU bool tensor of `batch * len` one-byte elements (checked
    // above), alive and unwritten for the borrow.
    Ok(unsafe { std::slice::from_raw_parts(mask.data_ptr() as *const bool, batch * len) })
}

/// `e^x` in f32, branch-free so that a loop of it vectorises (libm's `expf` is a call per
/// element): `x = n ln2 + r` with `|r| ≤ ln2/2`, `e^r` by Cephes' degree-7 minimax
/// polynomial (`expf.c`, S. Moshier), times `2^n` built in the exponent bits. Relative
/// error under 2 ulp; below -87 (and at -∞, a masked position) 0, never a denormal; above
/// 88.5, +∞.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, the first with few significant bits, so that n·LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer (|x·log2e| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.5);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let er = p * r * r + r + 1.0;
    // 2^n as two factors: n reaches 128, and 2^128 is not an f32.
    let half = (n * 0.5).floor();
    let a = f32::from_bits(((half as i32 + 127) as u32) << 23);
    let b = f32::from_bits((((n - half) as i32 + 127) as u32) << 23);
    let y = er * a * b;
    if x < -87.0 {
        0.0
    } else if x > 88.5 {
        f32::INFINITY
    } else {
        y
    }
}

/// Lanes of the partial maxima and sums below: a vector register's worth of f32, so that
/// the compiler vectorises the reductions (a single running total cannot be reordered).
const LANES: usize = 16;

/// Each row of `scores` (`rows` rows of `len` raw products `q·k`) becomes
/// `softmax(scale · row)`, positions with `keep[j] == false` weighted 0. A row with every
/// position masked (never formed: a token always sees itself) becomes zeros, not NaN.
#[inline(always)]
fn softmax_rows(scores: &mut [f32], len: usize, keep: Option<&[bool]>, scale: f32) {
    for row in scores.chunks_exact_mut(len) {
        if let Some(keep) = keep {
            for (sc, k) in row.iter_mut().zip(keep) {
                if !k {
                    *sc = f32::NEG_INFINITY;
                }
            }
        }
        let mut top = [f32::NEG_INFINITY; LANES];
        for c in row.chunks(LANES) {
            for (t, v) in top.iter_mut().zip(c) {
                *t = t.max(*v);
            }
        }
        let top = top.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        if top == f32::NEG_INFINITY {
            row.fill(0.0);
            continue;
        }
        // scale > 0, so the largest product stays the largest after scaling.
        for sc in row.iter_mut() {
            *sc = exp_f32((*sc - top) * scale);
        }
        let mut total = [0f32; LANES];
        for c in row.chunks(LANES) {
            for (t, v) in total.iter_mut().zip(c) {
                *t += v;
            }
        }
        let inv = 1.0 / total.iter().sum::<f32>();
        for sc in row.iter_mut() {
            *sc *= inv;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
fn softmax_rows_avx512(scores: &mut [f32], len: usize, keep: Option<&[bool]>, scale: f32) {
    softmax_rows(scores, len, keep, scale)
}

/// Whether the CPU has the AVX-512 subsets (and FMA) that the `*_avx512` loops here are
/// compiled for: those loops are the plain ones at a wider vector width.
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("fma")
}

/// [`softmax_rows`] at the CPU's vector width (AVX-512 where it has it).
fn softmax(scores: &mut [f32], len: usize, keep: Option<&[bool]>, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has the features the function is compiled for (checked above).
        return unsafe { softmax_rows_avx512(scores, len, keep, scale) };
    }
    softmax_rows(scores, len, keep, scale)
}

/// Attention of one new query per row over the cache's first `len` positions, in f32:
/// `softmax(q kᵀ / √dim) v` (Vaswani et al. 2017, eq. 1) per query head, query head `h`
/// reading key/value head `h / (q / kv)` (grouped-query attention, Ainslie et al. 2023, as
/// `scaled_dot_product_attention(enable_gqa)` and Hugging Face's `repeat_kv` pair them).
/// `q` is `[batch, q, dim]`, the caches `[batch, kv, max_len, dim]`, `mask` (optional)
/// `[batch, 1, 1, len]` bool (true = attend), and `out` `[batch, q · dim]`.
///
/// Per row and key/value head, the scores of its query heads are one small product
/// (`[group, dim] × [dim, len]`) and their weighted values another, all of them in two
/// batched MKL calls that share the products among libtorch's threads. At one query per
/// head libtorch's attention kernel spends more in setting up its blocked, threaded loops
/// than in arithmetic: 87 µs per layer inside a SmolLM2-135M step after a 128-token
/// prompt on a 2-core Xeon, where this makes the whole step 4.0 % shorter (interleaved A/B;
/// 1.4 % at batch 8). Returns `Ok(false)`, having written nothing, when MKL is missing (the
/// caller then uses libtorch's kernel).
pub(crate) fn attend_one(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    s: Heads,
    len: usize,
    mask: Option<&Tensor>,
    out: &mut Tensor,
) -> Result<bool> {
    let Heads {
        batch,
        q: nq,
        kv,
        dim,
        max_len,
        ..
    } = s;
    ensure!(
        (1..=max_len).contains(&len),
        "fused decode: attention over {len} positions with a cache of {max_len}"
    );
    ensure!(
        kv > 0 && nq % kv == 0,
        "fused decode: {nq} query heads do not share {kv} key/value heads evenly"
    );
    let small = |n: usize| c_int::try_from(n).context("fused decode: attention size");
    let (len_i, dim_i, group_i) = (small(len)?, small(dim)?, small(nq / kv)?);
    for i in [q, k_cache, v_cache] {
        distinct(i, out)?;
    }
    let qs = view::<f32>(q, batch * nq * dim, "queries")?;
    let kc = view::<f32>(k_cache, batch * kv * max_len * dim, "key cache")?;
    let vc = view::<f32>(v_cache, batch * kv * max_len * dim, "value cache")?;
    let keep = mask.map(|m| mask_flags(m, batch, len)).transpose()?;
    let o = view_mut::<f32>(out, batch * nq * dim, "attention output")?;
    let group = nq / kv;
    let scale = 1.0 / (dim as f32).sqrt();
    let mut scores = vec![0f32; batch * nq * len];
    // One product per (row, key/value head): column-major, keys and values are `[dim, len]`
    // from `base`, its query heads and their outputs `[dim, group]` from `first`, and its
    // scores `[len, group]` (row-major `[group, len]`) from `first / dim · len`.
    let pairs = || (0..batch).flat_map(|b| (0..kv).map(move |g| (b, g)));
    let base = |(b, g): (usize, usize)| (b * kv + g) * max_len * dim;
    let first = |(b, g): (usize, usize)| (b * nq + g * group) * dim;
    let keys: Vec<*const f32> = pairs().map(|p| kc[base(p)..].as_ptr()).collect();
    let values: Vec<*const f32> = pairs().map(|p| vc[base(p)..].as_ptr()).collect();
    let queries: Vec<*const f32> = pairs().map(|p| qs[first(p)..].as_ptr()).collect();
    // Output pointers from one base each, so that no later borrow of the slice retires them.
    let (out_base, scores_base) = (o.as_mut_ptr(), scores.as_mut_ptr());
    let outs: Vec<*mut f32> = pairs().map(|p| out_base.wrapping_add(first(p))).collect();
    let at = |p| first(p) / dim * len;
    let weights_out: Vec<*mut f32> = pairs().map(|p| scores_base.wrapping_add(at(p))).collect();
    // SAFETY: every pointer is inside its checked slice with room for the matrix that the
    // sizes and leading dimensions describe (keys and values `len · dim ≤ max_len · dim` from
    // `base`, queries and outputs `group · dim` from `first`, scores `group · len`); the
    // outputs are distinct from the inputs (checked above) and from each other.
    let done = unsafe {
        mkl::sgemm_batch(
            true,
            false,
            len_i,
            group_i,
            dim_i,
            &keys,
            dim_i,
            &queries,
            dim_i,
            &weights_out,
            len_i,
        )
    };
    if !done {
        return Ok(false);
    }
    for (b, rows) in scores.chunks_exact_mut(nq * len).enumerate() {
        softmax(rows, len, keep.map(|k| &k[b * len..(b + 1) * len]), scale);
    }
    let read_base = scores.as_ptr();
    let weights: Vec<*const f32> = pairs().map(|p| read_base.wrapping_add(at(p))).collect();
    // SAFETY: as above.
    unsafe {
        mkl::sgemm_batch(
            false, false, dim_i, group_i, len_i, &values, dim_i, &weights, len_i, &outs, dim_i,
        );
    }
    Ok(true)
}

/// `x += y` for the residual stream `x` (in `R`) and a block output `y` (in `T`): libtorch
/// adds in f32 and rounds to `R`, and so does this.
pub(crate) fn add_into<R: Elem, T: Elem>(x: &mut Tensor, y: &Tensor, numel: usize) -> Result<()> {
    distinct(x, y)?;
    let ys = view::<T>(y, numel, "block output")?;
    let xs = view_mut::<R>(x, numel, "residual stream")?;
    for (a, &b) in xs.iter_mut().zip(ys) {
        *a = R::put(a.get() + b.get());
    }
    Ok(())
}

/// SwiGLU: `silu(gate) * up` for `gu` = `[rows, 2 inter]` (gate then up), into `out`
/// (`[rows, inter]`); `silu(x) = x / (1 + exp(-x))` (Shazeer 2020), rounded to `T` before
/// the product as libtorch's two operations do.
pub(crate) fn silu_mul<T: Elem>(
    gu: &Tensor,
    out: &mut Tensor,
    rows: usize,
    inter: usize,
) -> Result<()> {
    distinct(gu, out)?;
    let g = view::<T>(gu, rows * 2 * inter, "gate/up")?;
    let o = view_mut::<T>(out, rows * inter, "SwiGLU output")?;
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU has the features the function is compiled for (checked).
        unsafe { silu_rows_avx512(g, o, inter) };
        return Ok(());
    }
    silu_rows(g, o, inter);
    Ok(())
}

/// The arithmetic of [`silu_mul`] on checked slices.
#[inline(always)]
fn silu_rows<T: Elem>(g: &[T], o: &mut [T], inter: usize) {
    for (r, or) in g.chunks_exact(2 * inter).zip(o.chunks_exact_mut(inter)) {
        let (gate, up) = r.split_at(inter);
        for ((o, &a), &u) in or.iter_mut().zip(gate).zip(up) {
            let a = a.get();
            let s = T::round(a / (1.0 + exp_f32(-a)));
            *o = T::put(s * u.get());
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
fn silu_rows_avx512<T: Elem>(g: &[T], o: &mut [T], inter: usize) {
    silu_rows(g, o, inter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::quant::tests::max_abs;

    fn rand(shape: &[i64], kind: Kind, seed: i64) -> Tensor {
        crate::model::synthetic::seeded(seed, || {
            Tensor::randn(shape, (Kind::Float, Device::Cpu)).to_kind(kind)
        })
    }

    #[test]
    fn rms_norm_matches_libtorch() {
        let x = rand(&[3, 96], Kind::Float, 1) * 4.0;
        let w = rand(&[96], Kind::Float, 2);
        let want = x.rms_norm([96], Some(&w), 1e-5);
        let mut got = Tensor::empty([3, 96], (Kind::Float, Device::Cpu));
        rms_norm::<f32, f32>(&x, &w, 1e-5, &mut got, 3, 96).unwrap();
        assert!(max_abs(&want, &got) < 1e-5, "{}", max_abs(&want, &got));
        // To bf16: libtorch's norm then one rounding; ours may differ by one bf16 ulp at
        // most where the f32 sums differ in their last bit.
        let mut got = Tensor::empty([3, 96], (Kind::BFloat16, Device::Cpu));
        rms_norm::<f32, bf16>(&x, &w, 1e-5, &mut got, 3, 96).unwrap();
        let want = want.to_kind(Kind::BFloat16);
        assert!(within_a_bf16_ulp(&want, &got));
        // bf16 in, bf16 weight, bf16 out (the bf16 model's residual stream).
        let (xb, wb) = (x.to_kind(Kind::BFloat16), w.to_kind(Kind::BFloat16));
        let want = xb.rms_norm([96], Some(&wb), 1e-5);
        let mut got = Tensor::empty([3, 96], (Kind::BFloat16, Device::Cpu));
        rms_norm::<bf16, bf16>(&xb, &wb, 1e-5, &mut got, 3, 96).unwrap();
        assert!(within_a_bf16_ulp(&want, &got));
    }

    /// Every element of `got` within one bf16 rounding step of `want`'s.
    fn within_a_bf16_ulp(want: &Tensor, got: &Tensor) -> bool {
        let want = want.to_kind(Kind::Float);
        let ulp = (want.abs() / 128.0).clamp_min(1e-30);
        let off = ((&want - got.to_kind(Kind::Float)).abs() - ulp)
            .max()
            .double_value(&[]);
        off <= 0.0
    }

    /// The rotation of the unfused path, on the same inputs.
    fn rope_reference(x: &Tensor, c: &Tensor, s: &Tensor, hd: i64) -> Tensor {
        x * c + x.roll([hd / 2], [-1]) * s
    }

    fn rope_case(kind: Kind) {
        let (b, q, kv, hd, max_len, pos) = (2usize, 3usize, 1usize, 8usize, 5usize, 3usize);
        let width = ((q + 2 * kv) * hd) as i64;
        let qkv = rand(&[b as i64, width], kind, 3);
        let c = rand(&[b as i64, hd as i64], kind, 4);
        let s = rand(&[b as i64, hd as i64], kind, 5);
        let opts = (kind, Device::Cpu);
        let mut qo = Tensor::zeros([b as i64, q as i64, hd as i64], opts);
        let cache_shape = [b as i64, kv as i64, max_len as i64, hd as i64];
        let mut kc = Tensor::zeros(cache_shape, opts);
        let mut vc = Tensor::zeros(cache_shape, opts);
        let heads = Heads {
            batch: b,
            q,
            kv,
            dim: hd,
            max_len,
            pos,
        };
        let run = |qo: &mut Tensor, kc: &mut Tensor, vc: &mut Tensor| {
            if kind == Kind::Float {
                rope_into_cache::<f32>(&qkv, &c, &s, heads, qo, kc, vc)
            } else {
                rope_into_cache::<bf16>(&qkv, &c, &s, heads, qo, kc, vc)
            }
        };
        run(&mut qo, &mut kc, &mut vc).unwrap();
        let heads_of = |from: usize, n: usize| {
            qkv.narrow(1, (from * hd) as i64, (n * hd) as i64)
                .view([b as i64, n as i64, hd as i64])
        };
        let (cu, su) = (c.unsqueeze(1), s.unsqueeze(1));
        let hd = hd as i64;
        assert!(qo.equal(&rope_reference(&heads_of(0, q), &cu, &su, hd)));
        let k_want = rope_reference(&heads_of(q, kv), &cu, &su, hd);
        assert!(kc.select(2, pos as i64).equal(&k_want));
        assert!(vc.select(2, pos as i64).equal(&heads_of(q + kv, kv)));
        // Other columns untouched.
        assert_eq!(kc.abs().sum(Kind::Double).double_value(&[]), {
            k_want.abs().sum(Kind::Double).double_value(&[])
        });
    }

    #[test]
    fn rope_matches_libtorch_bit_for_bit() {
        rope_case(Kind::Float);
        rope_case(Kind::BFloat16);
    }

    #[test]
    fn silu_mul_and_residual_add_match_libtorch() {
        for kind in [Kind::Float, Kind::BFloat16] {
            let gu = rand(&[2, 40], kind, 6) * 3.0;
            let want = gu.narrow(1, 0, 20).silu() * gu.narrow(1, 20, 20);
            let mut got = Tensor::empty([2, 20], (kind, Device::Cpu));
            if kind == Kind::Float {
                silu_mul::<f32>(&gu, &mut got, 2, 20).unwrap();
                assert!(max_abs(&want, &got) < 1e-5);
            } else {
                silu_mul::<bf16>(&gu, &mut got, 2, 20).unwrap();
                // exp may differ from libtorch's in the last f32 bit: at most one bf16 ulp.
                assert!(within_a_bf16_ulp(&want, &got));
            }
            let mut x = rand(&[2, 20], Kind::Float, 7);
            let want = &x + &got;
            if kind == Kind::Float {
                add_into::<f32, f32>(&mut x, &got, 40).unwrap();
            } else {
                add_into::<f32, bf16>(&mut x, &got, 40).unwrap();
                // A bf16 residual stream: the sum rounded to bf16, as libtorch's `+=`.
                let mut xb = rand(&[2, 20], Kind::BFloat16, 11);
                let want = &xb + &got;
                add_into::<bf16, bf16>(&mut xb, &got, 40).unwrap();
                assert!(xb.equal(&want));
            }
            assert!(x.equal(&want));
        }
    }

    #[test]
    fn exp_is_within_two_ulp_and_saturates_outside_the_range() {
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-87.5), 0.0);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        let mut worst = 0f64;
        // Normal results: from e^-80 to e^88.5 (f32's largest is about e^88.72).
        for i in 0..=400_000 {
            let x = -80.0 + 168.5 * i as f32 / 400_000.0;
            let want = f64::from(x).exp();
            let got = f64::from(exp_f32(x));
            worst = worst.max((got - want).abs() / want);
        }
        // One f32 ulp is at most 2^-23 of the value.
        assert!(worst < 2.0 * 2f64.powi(-23), "relative error {worst:e}");
    }

    /// Caches of `[batch, kv, max, dim]` whose columns from `len` on hold NaN: a read past
    /// the attended positions would show in the output.
    fn cache_with_poison(batch: i64, kv: i64, max: i64, len: i64, dim: i64, seed: i64) -> Tensor {
        let c = rand(&[batch, kv, max, dim], Kind::Float, seed);
        let _ = c.narrow(2, len, max - len).fill_(f64::NAN);
        c
    }

    #[test]
    fn attention_matches_libtorch_with_grouped_heads_and_a_mask() {
        let (b, nq, kv, dim, max, len) = (2i64, 6i64, 2i64, 64i64, 50i64, 37i64);
        let q = rand(&[b, nq, dim], Kind::Float, 11);
        let k = cache_with_poison(b, kv, max, len, dim, 12);
        let v = cache_with_poison(b, kv, max, len, dim, 13);
        let heads = Heads {
            batch: b as usize,
            q: nq as usize,
            kv: kv as usize,
            dim: dim as usize,
            max_len: max as usize,
            pos: len as usize - 1,
        };
        // Row 0 sees everything; row 1 has its first five positions masked (left padding).
        let keep = Tensor::arange(len, (Kind::Int64, Device::Cpu))
            .view([1, len])
            .ge_tensor(&Tensor::from_slice(&[0i64, 5]).view([2, 1]))
            .view([b, 1, 1, len]);
        for mask in [None, Some(&keep)] {
            let want = Tensor::scaled_dot_product_attention(
                &q.view([b, nq, 1, dim]),
                &k.narrow(2, 0, len),
                &v.narrow(2, 0, len),
                mask,
                0.0,
                false,
                None,
                true,
            )
            .reshape([b, nq * dim]);
            let mut got = Tensor::empty([b, nq * dim], (Kind::Float, Device::Cpu));
            assert!(attend_one(&q, &k, &v, heads, len as usize, mask, &mut got).unwrap());
            let err = max_abs(&want, &got);
            assert!(err < 1e-5, "mask {}: {err}", mask.is_some());
        }
        // Row 1 with every position masked: zeros, not NaN.
        let none = Tensor::from_slice(&[true, false])
            .view([2, 1, 1, 1])
            .expand([b, 1, 1, len], false)
            .contiguous();
        let mut got = Tensor::empty([b, nq * dim], (Kind::Float, Device::Cpu));
        assert!(attend_one(&q, &k, &v, heads, len as usize, Some(&none), &mut got).unwrap());
        assert_eq!(got.get(1).abs().max().double_value(&[]), 0.0);
        assert!(got.get(0).isfinite().all().int64_value(&[]) == 1);
    }

    #[test]
    fn attention_refuses_what_it_cannot_read() {
        let (q, k, v) = (
            rand(&[1, 4, 8], Kind::Float, 14),
            rand(&[1, 2, 10, 8], Kind::Float, 15),
            rand(&[1, 2, 10, 8], Kind::Float, 16),
        );
        let heads = Heads {
            batch: 1,
            q: 4,
            kv: 2,
            dim: 8,
            max_len: 10,
            pos: 3,
        };
        let mut out = Tensor::empty([1, 32], (Kind::Float, Device::Cpu));
        // More positions than the cache holds, none at all, heads that do not group.
        assert!(attend_one(&q, &k, &v, heads, 11, None, &mut out).is_err());
        assert!(attend_one(&q, &k, &v, heads, 0, None, &mut out).is_err());
        let odd = Heads { kv: 3, ..heads };
        assert!(attend_one(&q, &k, &v, odd, 4, None, &mut out).is_err());
        // A mask of the wrong length or dtype, an output aliasing the queries.
        let short = Tensor::ones([1, 1, 1, 3], (Kind::Bool, Device::Cpu));
        assert!(attend_one(&q, &k, &v, heads, 4, Some(&short), &mut out).is_err());
        let ints = Tensor::ones([1, 1, 1, 4], (Kind::Int64, Device::Cpu));
        assert!(attend_one(&q, &k, &v, heads, 4, Some(&ints), &mut out).is_err());
        let mut alias = q.view([1, 32]);
        assert!(attend_one(&q, &k, &v, heads, 4, None, &mut alias).is_err());
        // bf16 caches are not this function's.
        let kb = k.to_kind(Kind::BFloat16);
        assert!(attend_one(&q, &kb, &v, heads, 4, None, &mut out).is_err());
    }

    #[test]
    fn wrong_inputs_are_refused_not_read() {
        let x = rand(&[2, 8], Kind::Float, 8);
        let w = rand(&[8], Kind::Float, 9);
        let mut out = Tensor::empty([2, 8], (Kind::BFloat16, Device::Cpu));
        // Wrong dtype for the output type asked for.
        assert!(rms_norm::<f32, f32>(&x, &w, 1e-5, &mut out, 2, 8).is_err());
        // Wrong size.
        assert!(rms_norm::<f32, bf16>(&x, &w, 1e-5, &mut out, 3, 8).is_err());
        // Not contiguous.
        let xt = rand(&[8, 2], Kind::Float, 10).transpose(0, 1);
        assert!(rms_norm::<f32, bf16>(&xt, &w, 1e-5, &mut out, 2, 8).is_err());
        // Aliasing.
        let mut same = x.shallow_clone();
        assert!(add_into::<f32, f32>(&mut same, &x, 16).is_err());
    }
}
